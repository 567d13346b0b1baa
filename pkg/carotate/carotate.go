// Package carotate is the CA rotation of one node: the state machine that takes a kubeadm
// node from an old CA (ca, etcd-ca or front-proxy-ca) to a new one in three phases, each
// resumable, each with a dry-run plan, each undone by Rollback:
//
//   - trust: a new CA beside the old one (generated, or the one the first control-plane node
//     generated, carried as files); every place on this node that verifies with that CA
//     (static-pod flags, the kubelet's clientCAFile, kubeconfigs' certificate-authority-data)
//     gets a bundle of old + new. Signing is still the old CA.
//   - issue: the new CA becomes ca.crt/ca.key (the old pair stays in the rotation directory)
//     and every leaf it signed is re-issued by the new CA through pkg/renew; verification
//     stays on the bundle.
//   - drop: verification back to kubeadm's defaults (ca.crt, now the new CA alone), refused
//     while any certificate under the root is still signed by the old CA.
//
// Each phase is one backup (pkg/backup) and journaled writes (pkg/txn) under the node lock;
// the rotation's state is a small JSON file in the rotation directory. Restarting the
// components is the caller's job: every Result says which need it. The package never prints.
package carotate

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/certctl/certctl/pkg/backup"
	"github.com/certctl/certctl/pkg/kubeletclient"
	"github.com/certctl/certctl/pkg/pki"
)

// Phases, in order.
const (
	PhaseTrust = "trust"
	PhaseIssue = "issue"
	PhaseDrop  = "drop"
)

// Phases lists the phases in the order they run.
var Phases = []string{PhaseTrust, PhaseIssue, PhaseDrop}

// CAs are the CAs a node can rotate, in the order "all" takes them; the last is the
// service-account key pair (SA), which is no CA but rotates the same way.
var CAs = []string{"ca", "etcd-ca", "front-proxy-ca", SA}

// Validity limits of the new CA, in days.
const (
	DefaultDays     = 3650 // kubeadm's ten years
	MaxDays         = 36500
	DefaultLeafDays = 365 // what phase issue gives re-issued leaves, as kubeadm certs renew
)

// File names in a rotation directory.
const (
	NewCertName = "new.crt"
	NewKeyName  = "new.key"
	BundleName  = "bundle.crt" // old + new, what verifiers read between trust and drop
	OldCertName = "old.crt"
	OldKeyName  = "old.key"
	StateName   = "state.json"
	// CrossName is the new CA cross-signed by the old (phase issue): served after the
	// re-issued serving certificates, for clients that loaded only the old CA.
	CrossName = "cross.crt"
)

// flagRef is a static-pod flag that names a file of CAs to verify with.
type flagRef struct {
	component string // manifest.Files key
	flag      string
}

// caDef is what rotating one CA touches.
type caDef struct {
	name  string
	base  string // pki-relative name without extension: ca, etcd/ca, front-proxy-ca
	flags []flagRef
	// cluster: the cluster CA, trusted also by the kubelet (clientCAFile) and by kubeconfigs.
	cluster bool
	// keyPair: a key pair without certificates (SA): base.pub and base.key.
	keyPair bool
}

var defs = map[string]caDef{
	"ca": {name: "ca", base: "ca", cluster: true, flags: []flagRef{
		{"apiserver", "client-ca-file"}, {"apiserver", "kubelet-certificate-authority"},
		{"controller-manager", "root-ca-file"}, {"controller-manager", "client-ca-file"},
		{"scheduler", "client-ca-file"},
	}},
	"etcd-ca": {name: "etcd-ca", base: "etcd/ca", flags: []flagRef{
		{"apiserver", "etcd-cafile"}, {"etcd", "trusted-ca-file"}, {"etcd", "peer-trusted-ca-file"},
	}},
	"front-proxy-ca": {name: "front-proxy-ca", base: "front-proxy-ca", flags: []flagRef{
		{"apiserver", "requestheader-client-ca-file"}, {"controller-manager", "requestheader-client-ca-file"},
		{"scheduler", "requestheader-client-ca-file"},
	}},
	SA: {name: SA, base: "sa", keyPair: true, flags: []flagRef{{"apiserver", "service-account-key-file"}}},
}

func lookup(name string) (caDef, error) {
	d, ok := defs[name]
	if !ok {
		return caDef{}, fmt.Errorf("unknown CA %q: want one of %v (sa: the service-account key pair) or all", name, CAs)
	}
	return d, nil
}

// Paths are the files of one CA's rotation on a node.
type Paths struct {
	CACert, CAKey string // pki/ca.crt, pki/ca.key
	Dir           string // the rotation directory
	NewCert       string
	NewKey        string
	Bundle        string
	OldCert       string
	OldKey        string
	Cross         string
	State         string
}

// PathsOf returns where the rotation of CA name keeps its files on the node at l. The
// rotation directory sits beside the CA (pki/rotation/ca, pki/rotation/front-proxy-ca,
// pki/etcd/rotation/etcd-ca): etcd's static pod mounts only pki/etcd, so etcd's bundle must
// live under it to be readable by etcd.
func PathsOf(l pki.Layout, name string) (Paths, error) {
	d, err := lookup(name)
	if err != nil {
		return Paths{}, err
	}
	dir := filepath.Join(l.PKIDir, filepath.Dir(d.base), "rotation", d.name)
	if d.keyPair {
		return Paths{
			CACert: filepath.Join(l.PKIDir, d.base+".pub"), CAKey: filepath.Join(l.PKIDir, d.base+".key"),
			Dir:     dir,
			NewCert: filepath.Join(dir, NewPubName), NewKey: filepath.Join(dir, NewKeyName),
			Bundle:  filepath.Join(dir, BundlePubName),
			OldCert: filepath.Join(dir, OldPubName), OldKey: filepath.Join(dir, OldKeyName),
			State: filepath.Join(dir, StateName),
		}, nil
	}
	return Paths{
		CACert: filepath.Join(l.PKIDir, d.base+".crt"), CAKey: filepath.Join(l.PKIDir, d.base+".key"),
		Dir:     dir,
		NewCert: filepath.Join(dir, NewCertName), NewKey: filepath.Join(dir, NewKeyName),
		Bundle:  filepath.Join(dir, BundleName),
		OldCert: filepath.Join(dir, OldCertName), OldKey: filepath.Join(dir, OldKeyName),
		Cross: filepath.Join(dir, CrossName),
		State: filepath.Join(dir, StateName),
	}, nil
}

// State is the rotation's record on this node (state.json in the rotation directory).
type State struct {
	CA string `json:"ca"`
	// Phase is the last phase completed on this node.
	Phase string `json:"phase"`
	// OldCA and NewCA are the SHA-256 of the two CA certificates (DER).
	OldCA string `json:"old_ca_sha256"`
	NewCA string `json:"new_ca_sha256"`
	// Steps are the phases applied, each with the backup taken just before it.
	Steps []Step `json:"steps"`
}

// Step is one applied phase.
type Step struct {
	Phase    string    `json:"phase"`
	BackupID string    `json:"backup_id"`
	Time     time.Time `json:"time"`
	Restart  []string  `json:"restart,omitempty"`
	// Links are the kubelet's *-current.pem links phase issue swung to certificates from
	// the new CA, with where they pointed before, for Rollback.
	Links []Link `json:"links,omitempty"`
	// Created are files the phase created outside the backup (the new kubelet PEMs).
	Created []string `json:"created,omitempty"`
}

// Link is a symbolic link and the node path it pointed at before a phase.
type Link struct {
	Path   string `json:"path"` // node path of the link
	Target string `json:"target"`
}

func phaseIndex(p string) int { return slices.Index(Phases, p) }

// unswing points every link of step back at its old target and removes the files the step
// created; it returns what failed.
func unswing(l pki.Layout, step Step) error {
	var errs []error
	for _, k := range step.Links {
		if err := kubeletclient.SwapLink(linkPath(l, k.Path), k.Target); err != nil {
			errs = append(errs, fmt.Errorf("point %s back at %s: %w", k.Path, k.Target, err))
		}
	}
	for _, f := range step.Created {
		if err := os.Remove(l.Resolve(f)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove %s: %w", f, err))
		}
	}
	return errors.Join(errs...)
}

// linkPath is a link's node path on this machine: its directory resolved under the root,
// the link itself not followed.
func linkPath(l pki.Layout, nodePath string) string {
	return filepath.Join(l.Resolve(filepath.Dir(nodePath)), filepath.Base(nodePath))
}

// LoadState reads the state of CA name; nil without error when no rotation was started.
func LoadState(l pki.Layout, name string) (*State, error) {
	p, err := PathsOf(l, name)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(p.State)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p.State, err)
	}
	var s State
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("%s: not a rotation state file: %w (restore it from a backup: certctl backup list)", p.State, err)
	}
	if s.CA != name || phaseIndex(s.Phase) < 0 {
		return nil, fmt.Errorf("%s: says CA %q phase %q; want CA %q and a phase of %v (restore it from a backup: certctl backup list)", p.State, s.CA, s.Phase, name, Phases)
	}
	return &s, nil
}

func marshalState(s *State) ([]byte, error) {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(data, '\n'), nil
}

// Options drive one phase (or Rollback) of one CA on this node.
type Options struct {
	Layout pki.Layout
	// CA is ca, etcd-ca or front-proxy-ca.
	CA string
	// Days is the new CA's validity when it is generated (default DefaultDays).
	Days int
	// LeafDays is the validity of the leaves phase issue re-issues (default DefaultLeafDays).
	LeafDays int
	// NewCA is the new CA made on another node (phase trust); nil: the one already in the
	// rotation directory, or Generate.
	NewCA *NewCA
	// NewCAs are the new CAs by name, for a Run over several CAs (the files certctl cluster
	// ca-rotate's Jobs mount); a CA missing here has none given.
	NewCAs map[string]*NewCA
	// Generate makes the new CA here (phase trust on the first control-plane node).
	Generate bool
	// IgnoreTokens lets phase drop of SA go on while projected tokens of the old key are on
	// the node (their pods get 401 until the kubelet refreshes them).
	IgnoreTokens bool
	// DryRun plans and changes nothing.
	DryRun bool
	// RollbackPhase, for Rollback: undo this phase only, where it is the last one applied; a
	// node where it was not applied has nothing to undo (a cluster-wide rollback of a phase
	// that stopped half-way). "": the last phase applied, whichever.
	RollbackPhase string
	// DeferManifests writes the phase's static-pod manifest edits to
	// Layout.PendingManifestsDir() instead of the manifests dir, for the restart that follows
	// (restart.Run) to install each as it restarts that component: edited in place, the
	// kubelet would restart etcd and the apiserver at once, with no drain and no check of the
	// other etcd members. Both paths are in the phase's backup.
	DeferManifests bool
	// Command is recorded in the backup and the journal.
	Command     string
	LockTimeout time.Duration
	Now         time.Time
	Log         io.Writer // recovery notes; nil discards
}

func (o *Options) defaults() error {
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if o.Days == 0 {
		o.Days = DefaultDays
	}
	if o.LeafDays == 0 {
		o.LeafDays = DefaultLeafDays
	}
	if o.Days < 1 || o.Days > MaxDays {
		return fmt.Errorf("--days %d: the new CA's validity must be 1 to %d days", o.Days, MaxDays)
	}
	if o.LeafDays < 1 || o.LeafDays > MaxDays {
		return fmt.Errorf("leaf validity %d days: must be 1 to %d days", o.LeafDays, MaxDays)
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Command == "" {
		o.Command = "certctl ca rotate " + o.CA
	}
	if o.Generate && o.NewCA != nil {
		return errors.New("--generate and --new-ca-cert exclude each other: generate the new CA on one node, carry it to the others as files")
	}
	_, err := lookup(o.CA)
	return err
}

// NewCA is a new CA given as PEM (what the first control-plane node generated).
type NewCA struct {
	CertPath, KeyPath string // for messages; KeyPath empty on a worker
	CertPEM, KeyPEM   []byte
}

// ReadNewCA reads a new CA's files; keyPath may be empty (a worker needs only the
// certificate).
func ReadNewCA(certPath, keyPath string) (*NewCA, error) {
	n := &NewCA{CertPath: certPath, KeyPath: keyPath}
	var err error
	if n.CertPEM, err = os.ReadFile(certPath); err != nil {
		return nil, fmt.Errorf("read the new CA certificate: %w", err)
	}
	if keyPath != "" {
		if n.KeyPEM, err = os.ReadFile(keyPath); err != nil {
			return nil, fmt.Errorf("read the new CA key: %w", err)
		}
	}
	return n, nil
}

// parsed is a CA certificate with its PEM and, when present, key.
type parsed struct {
	cert *x509.Certificate
	pem  []byte
	key  crypto.Signer
	keyP []byte
}

// parseCA parses a CA certificate (one, a CA) and its key (optional, must match), naming
// the files in errors.
func parseCA(certName string, certPEM []byte, keyName string, keyPEM []byte) (*parsed, error) {
	certs, err := pki.ParseCertificates(certName, certPEM)
	if err != nil {
		return nil, err
	}
	if len(certs) != 1 {
		return nil, fmt.Errorf("%s: holds %d certificates; want exactly the CA", certName, len(certs))
	}
	c := certs[0]
	if !c.IsCA || (c.KeyUsage != 0 && c.KeyUsage&x509.KeyUsageCertSign == 0) {
		return nil, fmt.Errorf("%s: %q is not a CA that may sign certificates", certName, c.Subject)
	}
	p := &parsed{cert: c, pem: pki.EncodeCertificates(c)}
	if keyPEM != nil {
		k, err := pki.ParsePrivateKey(keyName, keyPEM)
		if err != nil {
			return nil, err
		}
		if err := pki.VerifyKeyPair(c.PublicKey, k); err != nil {
			return nil, fmt.Errorf("%s does not belong to %s: %w", keyName, certName, err)
		}
		p.key, p.keyP = k, keyPEM
	}
	return p, nil
}

// readCA reads a CA pair from disk; the key is optional (absent: nil).
func readCA(certPath, keyPath string) (*parsed, error) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", certPath, err)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if errors.Is(err, fs.ErrNotExist) {
		keyPEM = nil
	} else if err != nil {
		return nil, fmt.Errorf("read %s: %w", keyPath, err)
	}
	return parseCA(certPath, certPEM, keyPath, keyPEM)
}

func fingerprint(c *x509.Certificate) string { return backup.Sum(c.Raw) }

// contains reports whether the PEM data holds certificate c.
func contains(data []byte, c *x509.Certificate) bool {
	certs, err := pki.ParseCertificates("", data)
	if err != nil {
		return false
	}
	return slices.ContainsFunc(certs, func(x *x509.Certificate) bool { return bytes.Equal(x.Raw, c.Raw) })
}

// Change is one file a phase changes, and how.
type Change struct {
	Path string
	What string
}

// Result is what a phase did (or, dry-run, would do) for one CA on this node.
type Result struct {
	CA    string
	Phase string // trust, issue, drop, or "rollback <phase>"
	// AlreadyDone: the phase had completed before; nothing was changed.
	AlreadyDone bool
	DryRun      bool
	Changes     []Change
	// Restart are the components that must restart to read the changed files (apiserver,
	// controller-manager, scheduler, etcd, kubelet); the caller restarts them.
	Restart  []string
	BackupID string
	Notes    []string
	// Skipped: the CA is not on this node (an "all" run on a worker: no etcd CA).
	Skipped bool
	// KubeletClientCA, when set, is the file the running kubelet's clientCAFile names (a host
	// path), whose content the phase changed in place with no kubelet restart asked for: a
	// kubelet that reloads it (1.36+, ReloadKubeletClientCAFile) needs none; the caller checks
	// that it did (kubelet.WaitAuthenticates, with a client certificate of the new CA) and
	// restarts it otherwise.
	KubeletClientCA string
}

func (r *Result) restart(components ...string) {
	for _, c := range components {
		if c != "" && !slices.Contains(r.Restart, c) {
			r.Restart = append(r.Restart, c)
		}
	}
	slices.Sort(r.Restart)
}

// afterCompleted is the start of phase trust: when the last rotation of the CA on this node is
// complete (st at drop), a new rotation starts in the same directory. The files the completed
// one left that the new one does not write at once (old.key, cross.crt) are removed, and every
// file of the directory the phase touches is in its backup, so its rollback puts the completed
// rotation back as it was. It returns those removals, the state to go on from (none then) and
// whether a new rotation starts (the directory's new.crt is then no new CA), and notes it on
// res. Otherwise it returns st as it is.
func afterCompleted(p Paths, st *State, res *Result) ([]fileEdit, *State, bool) {
	if st == nil || st.Phase != PhaseDrop {
		return nil, st, false
	}
	var when string
	if n := len(st.Steps); n > 0 {
		when = " on " + st.Steps[n-1].Time.UTC().Format("2006-01-02")
	}
	var edits []fileEdit
	for _, f := range []string{p.OldKey, p.Cross} {
		if f == "" {
			continue
		}
		if _, err := os.Stat(f); err == nil {
			edits = append(edits, fileEdit{path: f, remove: true, what: "removed: left by the rotation completed" + when})
		}
	}
	res.Notes = append(res.Notes, fmt.Sprintf("the rotation completed%s in %s is followed by a new one; its files are in this phase's backup (the rollback puts them back)", when, p.Dir))
	return edits, nil, true
}

// start is the common beginning of a phase: options checked, the CA's definition, its
// paths, an empty result and the rotation state (nil when none was started).
func start(o *Options, phase string) (caDef, Paths, *Result, *State, error) {
	if err := o.defaults(); err != nil {
		return caDef{}, Paths{}, nil, nil, err
	}
	d, _ := lookup(o.CA)
	p, err := PathsOf(o.Layout, o.CA)
	if err != nil {
		return caDef{}, Paths{}, nil, nil, err
	}
	st, err := LoadState(o.Layout, o.CA)
	if err != nil {
		return caDef{}, Paths{}, nil, nil, err
	}
	return d, p, &Result{CA: o.CA, Phase: phase, DryRun: o.DryRun}, st, nil
}
