// Package renew re-issues a kubeadm node's leaf certificates and kubeconfig client
// certificates from their own CAs: NewPlan decides and validates everything without
// touching a file, Apply writes the result crash-safely (backup, journal, staged files,
// renames) under a lock, and Recover completes or rolls back a renewal that was killed.
package renew

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/certctl/certctl/pkg/backup"
	"github.com/certctl/certctl/pkg/kubeconfig"
	"github.com/certctl/certctl/pkg/pki"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Key modes.
const (
	KeyRotate = "rotate" // a new private key per certificate (kubeadm's behaviour, the default)
	KeyReuse  = "reuse"  // keep the existing private key
)

// Validity limits for --days.
const (
	DefaultDays = 365
	MaxDays     = 36500
)

// BackdateBy is how far before now a renewed certificate's NotBefore is set, for clocks
// that lag a little.
const BackdateBy = 5 * time.Minute

// All is what `certctl renew all` (or no name) renews: every leaf and every kubeconfig
// with an embedded client certificate, as `kubeadm certs renew all`.
var All = []string{
	"apiserver", "apiserver-kubelet-client", "apiserver-etcd-client", "front-proxy-client",
	"etcd-server", "etcd-peer", "etcd-healthcheck-client",
	"admin.conf", "super-admin.conf", "controller-manager.conf", "scheduler.conf",
}

// Options is what to renew and how.
type Options struct {
	// Names are inventory names; empty or "all" means All.
	Names []string
	// SANs (already validated, e.g. by pki.ParseSANs) are added to the apiserver
	// certificate, or to every named leaf when Names are given.
	SANs []string
	// Days of validity from now (1..MaxDays), capped at the issuing CA's expiry.
	Days int
	// KeyMode is KeyRotate (default) or KeyReuse.
	KeyMode string
	// KeyAlgorithm for rotated keys (pki.KeyAlgorithms); empty keeps each old key's.
	KeyAlgorithm string
	// IfExpiringWithin, when > 0, renews only what expires within that window.
	IfExpiringWithin time.Duration
	// CSROnly writes new keys and certificate requests for an external CA instead of
	// signing; nothing in the tree changes.
	CSROnly bool
	// Now is the time of the renewal (zero: time.Now()).
	Now time.Time
	// Signers replace a CA of the tree by name ("ca", "etcd-ca", "front-proxy-ca") as the
	// issuer of its leaves: a CA rotation re-issues every leaf from the new CA before the new
	// CA becomes ca.crt. Nil: the tree's CAs sign.
	Signers map[string]Signer
	// KubeadmConfig, when set and SANs are given for apiserver, etcd-server or etcd-peer,
	// also records them in kube-system/kubeadm-config (see KubeadmConfigStep).
	KubeadmConfig *KubeadmConfigOptions
}

// Actions of a plan row.
const (
	ActionRenew = "renew"
	ActionCSR   = "csr"
	ActionSkip  = "skip"
)

// Row is one line of the plan.
type Row struct {
	Name       string
	Kind       pki.Kind
	Action     string // renew, csr or skip
	Path       string
	KeyPath    string // equal to Path for kubeconfigs
	OldExpiry  time.Time
	NewExpiry  time.Time
	Capped     bool     // NewExpiry was capped at the CA's expiry
	SANsAdded  []string // SANs the new certificate gains
	KeyAction  string   // "rotate (ecdsa-p256)", "reuse (rsa-2048)"
	Note       string
	Components []string // what reads the files, to restart after renewal
}

// Plan is the validated renewal. Nothing has been written when it exists.
type Plan struct {
	Layout  pki.Layout
	Options Options
	Rows    []Row
	// KubeadmConfig is the kube-system/kubeadm-config step for --san, or nil.
	KubeadmConfig *KubeadmConfigStep
	work          []*work
}

// work is what Apply needs for one row that changes.
type work struct {
	idx      int // its row in Plan.Rows
	spec     pki.Spec
	old      *x509.Certificate
	oldKey   crypto.Signer
	alg      string // for a rotated key
	reuse    bool
	ca       *x509.Certificate
	caKey    crypto.Signer
	caPEM    []byte // ca.crt as on disk, for certificate-authority-data
	tmpl     pki.Template
	kubecfg  *clientcmdapi.Config
	chain    []*x509.Certificate // written after the leaf in its file
	certMode os.FileMode
	keyMode  os.FileMode
	sums     map[string]string // sha256 of the files at plan time
}

// Renewing returns the rows that change something.
func (p *Plan) Renewing() []Row {
	var out []Row
	for _, w := range p.work {
		out = append(out, p.Rows[w.idx])
	}
	return out
}

// Empty reports that the plan changes nothing (everything skipped).
func (p *Plan) Empty() bool { return len(p.work) == 0 }

// InputError is a problem with the request or the tree, found before anything is touched.
type InputError struct{ Err error }

func (e *InputError) Error() string { return e.Err.Error() }
func (e *InputError) Unwrap() error { return e.Err }

func inputErr(format string, a ...any) error { return &InputError{fmt.Errorf(format, a...)} }

// NewPlan loads the node's inventory and decides, for each requested item, what its renewal
// would be. Every check that can fail (names, days, keys, CA keys, parsing, validity against
// the CA) happens here, so a plan that exists can be applied.
func NewPlan(l pki.Layout, o Options) (*Plan, error) {
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if o.KeyMode == "" {
		o.KeyMode = KeyRotate
	}
	if o.Days <= 0 {
		return nil, inputErr("--days %d: validity must be at least 1 day", o.Days)
	}
	if o.Days > MaxDays {
		return nil, inputErr("--days %d: validity over %d days (100 years) is refused", o.Days, MaxDays)
	}
	if o.KeyMode != KeyRotate && o.KeyMode != KeyReuse {
		return nil, inputErr("--key %q: want rotate or reuse", o.KeyMode)
	}
	if o.KeyAlgorithm != "" {
		if !slices.Contains(pki.KeyAlgorithms, o.KeyAlgorithm) {
			return nil, inputErr("--key-algorithm %q: want one of %v", o.KeyAlgorithm, pki.KeyAlgorithms)
		}
		if o.KeyMode == KeyReuse {
			return nil, inputErr("--key-algorithm applies to new keys; it cannot be combined with --key reuse")
		}
	}
	if o.IfExpiringWithin < 0 {
		return nil, inputErr("--if-expiring-within must not be negative")
	}
	names, explicit, err := expandNames(o.Names)
	if err != nil {
		return nil, err
	}
	sanTargets := map[string]bool{"apiserver": true}
	if explicit {
		sanTargets = map[string]bool{}
		for _, n := range names {
			s, _ := pki.Lookup(pki.Default(), n)
			if s.Kind == pki.KindLeaf {
				sanTargets[n] = true
			}
		}
		if len(o.SANs) > 0 && len(sanTargets) == 0 {
			return nil, inputErr("--san applies to serving certificates (apiserver, etcd-server, etcd-peer, ...), and none is named")
		}
	}
	if _, err := os.Stat(l.PKIDir); err != nil {
		return nil, inputErr("PKI directory %s: %w (is this a control-plane node? see --root and --pki-dir)", l.PKIDir, err)
	}

	inv := pki.Load(l, pki.Default())
	p := &Plan{Layout: l, Options: o}
	cas := map[string]*caInfo{}
	for _, n := range names {
		it := inv.Get(n)
		row := Row{Name: n, Kind: it.Spec.Kind, Path: it.Path, KeyPath: it.KeyPath, Components: slices.Clone(it.Spec.Components)}
		if it.Absent {
			if explicit {
				return nil, inputErr("%s: %s does not exist on this node", n, it.Path)
			}
			row.Action, row.Note = ActionSkip, "not on this node"
			p.Rows = append(p.Rows, row)
			continue
		}
		if it.Missing {
			return nil, inputErr("%s: %s is missing; certctl renews existing certificates (kubeadm init phase certs/kubeconfig recreates missing ones)", n, it.Path)
		}
		if it.CertErr != nil {
			return nil, &InputError{fmt.Errorf("%s: %w", n, it.CertErr)}
		}
		if it.Spec.Kind == pki.KindKubeconfig && it.Kubeconfig != nil && !it.Kubeconfig.Embedded() {
			note := "left alone: its client certificate is not embedded"
			if it.Kubeconfig.CertFile != "" {
				note = "left alone: it points at " + it.Kubeconfig.CertFile + ", which the kubelet rotates itself"
			}
			if it.Kubeconfig.Token {
				note = "left alone: it authenticates with a token, not a certificate"
			}
			if explicit {
				return nil, inputErr("%s (%s): %s", n, it.Path, note)
			}
			row.Action, row.Note = ActionSkip, note
			p.Rows = append(p.Rows, row)
			continue
		}
		old := it.Cert()
		row.OldExpiry = old.NotAfter
		newSANs := false
		if sanTargets[n] && len(o.SANs) > 0 {
			probe := pki.TemplateFrom(old)
			newSANs = len(probe.AddSANs(o.SANs)) > 0
		}
		// A certificate that lacks a requested SAN is renewed whatever its expiry: --san is
		// never silently ignored.
		if o.IfExpiringWithin > 0 && old.NotAfter.Sub(o.Now) > o.IfExpiringWithin && !newSANs {
			row.Action = ActionSkip
			row.Note = fmt.Sprintf("expires %s, not within %s", old.NotAfter.UTC().Format("2006-01-02"), o.IfExpiringWithin)
			p.Rows = append(p.Rows, row)
			continue
		}
		w := &work{spec: it.Spec, old: old, sums: map[string]string{}}
		if it.KeyErr != nil {
			return nil, &InputError{fmt.Errorf("%s: %w", n, it.KeyErr)}
		}
		if it.Key == nil {
			return nil, inputErr("%s: private key %s is missing: a certificate without its key cannot be renewed safely", n, it.KeyPath)
		}
		if err := pki.VerifyKeyPair(old.PublicKey, it.Key); err != nil {
			return nil, inputErr("%s: private key %s does not match certificate %s (%v); fix or restore the pair before renewing", n, it.KeyPath, it.Path, err)
		}
		w.oldKey = it.Key
		ca, err := loadCA(inv, it.Spec.CAName, cas, o.Signers, o.CSROnly)
		if err != nil {
			return nil, err
		}
		w.ca, w.caKey, w.caPEM = ca.cert, ca.key, ca.pem
		if it.Spec.Kind == pki.KindKubeconfig {
			cfg, _, err := kubeconfig.Load(it.Path)
			if err != nil {
				return nil, &InputError{err}
			}
			w.kubecfg = cfg
		}
		for _, f := range []string{it.Path, it.KeyPath} {
			st, err := os.Stat(f)
			if err != nil {
				return nil, inputErr("%s: %w", n, err)
			}
			data, err := os.ReadFile(f)
			if err != nil {
				return nil, inputErr("%s: read %s: %w", n, f, err)
			}
			w.sums[f] = backup.Sum(data)
			if f == it.Path {
				w.certMode = st.Mode().Perm()
			} else {
				w.keyMode = st.Mode().Perm()
			}
		}
		if w.kubecfg == nil {
			w.chain = chainFor(it, ca, o.Now)
			if len(w.chain) > 0 {
				row.Note = joinNote(row.Note, fmt.Sprintf("served with %d CA certificate(s) after it (%s)", len(w.chain), chainText(w.chain)))
			}
		}
		w.tmpl = pki.TemplateFrom(old)
		if sanTargets[n] {
			row.SANsAdded = w.tmpl.AddSANs(o.SANs)
		}
		w.tmpl.NotBefore = o.Now.Add(-BackdateBy).Truncate(time.Second)
		w.tmpl.NotAfter = o.Now.Add(time.Duration(o.Days) * 24 * time.Hour).Truncate(time.Second)
		if w.tmpl.NotAfter.After(ca.cert.NotAfter) {
			w.tmpl.NotAfter = ca.cert.NotAfter
			row.Capped = true
			row.Note = joinNote(fmt.Sprintf("capped at the %s expiry", it.Spec.CAName), row.Note)
		}
		if !w.tmpl.NotAfter.After(o.Now) {
			return nil, inputErr("%s: the issuing CA %s expired on %s; renew the CA before its leaves", n, ca.path, ca.cert.NotAfter.UTC().Format(time.RFC3339))
		}
		row.NewExpiry = w.tmpl.NotAfter
		if o.KeyMode == KeyReuse {
			w.reuse = true
			row.KeyAction = "reuse (" + pki.KeyAlgorithm(old.PublicKey) + ")"
		} else {
			w.alg = o.KeyAlgorithm
			if w.alg == "" {
				w.alg = pki.KeyAlgorithm(old.PublicKey)
				if !slices.Contains(pki.KeyAlgorithms, w.alg) {
					return nil, inputErr("%s: the old key is %s, which certctl cannot generate; pass --key-algorithm", n, w.alg)
				}
			}
			row.KeyAction = "rotate (" + w.alg + ")"
		}
		row.Action = ActionRenew
		if o.CSROnly {
			// The external CA decides the validity.
			row.Action, row.NewExpiry, row.Capped, row.Note = ActionCSR, time.Time{}, false, "CSR for the external CA"
		}
		w.idx = len(p.Rows)
		p.Rows = append(p.Rows, row)
		p.work = append(p.work, w)
	}
	if !o.CSROnly {
		var targets []string
		for _, n := range names {
			if it := inv.Get(n); sanTargets[n] && it != nil && !it.Absent {
				targets = append(targets, n)
			}
		}
		p.KubeadmConfig = planKubeadmConfig(o.KubeadmConfig, targets, o.SANs)
	}
	if !explicit {
		if it := inv.Get("kubelet.conf"); it != nil && !it.Absent && it.Kubeconfig != nil {
			note := ""
			switch {
			case it.Kubeconfig.CertFile != "":
				note = "left alone: it points at " + it.Kubeconfig.CertFile + ", which the kubelet rotates itself"
			case it.Kubeconfig.Embedded():
				note = "not in 'all' (as with kubeadm): its certificate is embedded; name it to renew it"
			}
			if note != "" {
				p.Rows = append(p.Rows, Row{Name: "kubelet.conf", Kind: pki.KindKubeconfig, Action: ActionSkip, Path: it.Path, Note: note})
			}
		}
	}
	return p, nil
}

// Signer is a CA that signs in place of the tree's (Options.Signers).
type Signer struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	// TrustPEM is what a renewed kubeconfig's certificate-authority-data becomes (during a
	// CA rotation, the old and the new CA); nil: Cert.
	TrustPEM []byte
	// Source names where the CA comes from, for errors.
	Source string
	// Chain is written after every serving certificate it signs (during a CA rotation, the
	// new CA cross-signed by the old: clients that loaded only the old CA still verify what
	// the apiserver serves).
	Chain []*x509.Certificate
}

type caInfo struct {
	cert  *x509.Certificate
	key   crypto.Signer
	pem   []byte
	path  string
	chain []*x509.Certificate
}

func loadCA(inv *pki.Inventory, name string, cache map[string]*caInfo, signers map[string]Signer, csrOnly bool) (*caInfo, error) {
	if c, ok := cache[name]; ok {
		return c, nil
	}
	if sg, ok := signers[name]; ok {
		if sg.Key == nil {
			return nil, inputErr("CA %s: the signer %s has no private key", name, sg.Source)
		}
		if err := pki.VerifyKeyPair(sg.Cert.PublicKey, sg.Key); err != nil {
			return nil, inputErr("CA %s: the key of %s does not match its certificate (%v)", name, sg.Source, err)
		}
		c := &caInfo{cert: sg.Cert, key: sg.Key, pem: sg.TrustPEM, path: sg.Source, chain: sg.Chain}
		if c.pem == nil {
			c.pem = pki.EncodeCertificates(sg.Cert)
		}
		cache[name] = c
		return c, nil
	}
	it := inv.Get(name)
	if it == nil || it.Absent || it.Missing {
		p := ""
		if it != nil {
			p = it.Path
		}
		return nil, inputErr("CA %s: certificate %s not found", name, p)
	}
	if it.CertErr != nil {
		return nil, &InputError{fmt.Errorf("CA %s: %w", name, it.CertErr)}
	}
	data, err := os.ReadFile(it.Path)
	if err != nil {
		return nil, inputErr("CA %s: read %s: %w", name, it.Path, err)
	}
	c := &caInfo{cert: it.Cert(), pem: data, path: it.Path}
	if !csrOnly {
		if it.KeyErr != nil {
			return nil, &InputError{fmt.Errorf("CA %s: %w", name, it.KeyErr)}
		}
		if it.KeyAbsent || it.Key == nil {
			return nil, inputErr("CA %s: private key %s is not on this node: the CA is external, so certctl cannot sign; use --csr-only to write keys and certificate requests for your CA to sign", name, it.KeyPath)
		}
		if err := pki.VerifyKeyPair(c.cert.PublicKey, it.Key); err != nil {
			return nil, inputErr("CA %s: private key %s does not match CA certificate %s (%v); restore the CA's real key before renewing", name, it.KeyPath, it.Path, err)
		}
		c.key = it.Key
	}
	cache[name] = c
	return c, nil
}

// expandNames resolves the requested names; explicit is false for "all" or none.
func expandNames(names []string) ([]string, bool, error) {
	if len(names) == 0 || (len(names) == 1 && names[0] == "all") {
		return All, false, nil
	}
	var out []string
	for _, n := range names {
		if n == "all" {
			return nil, false, inputErr("\"all\" cannot be combined with other names")
		}
		s, err := pki.Lookup(pki.Default(), n)
		if err != nil {
			return nil, false, &InputError{err}
		}
		switch s.Kind {
		case pki.KindCA:
			return nil, false, inputErr("%s is a CA: certctl renew re-issues leaves from their CA, not the CA itself", n)
		case pki.KindKeyPair:
			return nil, false, inputErr("%s is a key pair without a certificate: nothing to renew", n)
		case pki.KindKubeletServing, pki.KindKubeletClient:
			return nil, false, inputErr("%s belongs to the kubelet, which renews it itself (see docs/renew.md)", n)
		}
		if s.Loc == pki.LocUser {
			return nil, false, inputErr("%s: copy the renewed admin.conf to ~/.kube/config instead", n)
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out, true, nil
}

// Renews reports whether the plan renews the item called name.
func (p *Plan) Renews(name string) bool {
	for _, r := range p.Renewing() {
		if r.Name == name {
			return true
		}
	}
	return false
}

// chainFor is what follows the renewed leaf of it in its file: the signer's chain for a
// serving certificate; otherwise what followed the old leaf and still links the leaf to its
// CA (a cross-signed copy of the CA, not expired), kept as the old file had it.
func chainFor(it *pki.Item, ca *caInfo, now time.Time) []*x509.Certificate {
	if len(ca.chain) > 0 && slices.Contains(it.Cert().ExtKeyUsage, x509.ExtKeyUsageServerAuth) {
		return ca.chain
	}
	var keep []*x509.Certificate
	for _, c := range it.Certs[1:] {
		pub, ok := c.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
		if ok && pub.Equal(ca.cert.PublicKey) && bytes.Equal(c.RawSubject, ca.cert.RawSubject) && c.IsCA && now.Before(c.NotAfter) {
			keep = append(keep, c)
		}
	}
	return keep
}

func chainText(chain []*x509.Certificate) string {
	var out []string
	for _, c := range chain {
		out = append(out, fmt.Sprintf("%s issued by %s, until %s", c.Subject, c.Issuer, c.NotAfter.UTC().Format("2006-01-02")))
	}
	return strings.Join(out, "; ")
}

func joinNote(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "; " + b
}
