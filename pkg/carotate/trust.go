package carotate

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/certctl/certctl/pkg/pki"
)

// Trust is phase 1 for one CA on this node: the new CA is put into the rotation directory
// (new.crt, new.key 0600, bundle.crt = old + new, old.crt) and everything that verifies with
// the CA is pointed at the bundle: the static-pod flags (see defs), and for the cluster CA
// the kubelet's clientCAFile and the certificate-authority-data of every kubeconfig. The CA
// that signs (ca.crt, ca.key, --cluster-signing-*) is still the old one.
//
// The new CA is, in this order: o.NewCA (files from the first control-plane node), the one
// already in the rotation directory, or a new one when o.Generate (same key algorithm and
// subject as the old CA, o.Days of validity). A node that holds the old CA's key needs the
// new CA's key too (phase issue signs with it); a worker needs only the certificate.
func Trust(o Options) (*Result, error) {
	d, p, res, st, err := start(&o, PhaseTrust)
	if err != nil {
		return nil, err
	}
	if o.CA == SA {
		return saTrust(o, d, p, res, st)
	}
	if _, err := os.Stat(p.CACert); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: no %s on this node (%s does not exist)", o.CA, o.CA, p.CACert)
	}
	// fresh: a new rotation, the completed one's new CA is the CA now.
	leftovers, st, fresh := afterCompleted(p, st, res)
	if st != nil {
		if o.NewCA != nil {
			given, err := parseCA(o.NewCA.CertPath, o.NewCA.CertPEM, o.NewCA.KeyPath, nil)
			if err != nil {
				return nil, err
			}
			if fingerprint(given.cert) != st.NewCA {
				return nil, fmt.Errorf("%s: the rotation under %s is already at phase %s with another new CA than %s; roll it back first (certctl ca rotate %s --rollback)", o.CA, p.Dir, st.Phase, o.NewCA.CertPath, o.CA)
			}
		}
		res.AlreadyDone = true
		res.Notes = append(res.Notes, fmt.Sprintf("phase trust already done (the rotation is at phase %s): nothing to do", st.Phase))
		return res, nil
	}
	old, err := readCA(p.CACert, p.CAKey)
	if err != nil {
		return nil, err
	}
	nw, created, err := newCA(o, p, old, fresh)
	if err != nil {
		return nil, err
	}
	if bytes.Equal(nw.cert.Raw, old.cert.Raw) {
		return nil, fmt.Errorf("%s: the new CA is the old one (%s); give the new CA's files", o.CA, p.CACert)
	}
	if old.key != nil && nw.key == nil {
		return nil, fmt.Errorf("%s: this node holds the CA key %s, so phase issue will sign with the new CA: give its key too (--new-ca-key, the new.key of the node that generated it)", o.CA, p.CAKey)
	}
	bundle := append(slices.Clone(old.pem), nw.pem...)
	edits := leftovers
	if nw.key != nil {
		edits = append(edits, fileEdit{path: p.NewKey, data: nw.keyP, mode: 0o600, what: created + " new CA key"})
	}
	edits = append(edits,
		fileEdit{path: p.NewCert, data: nw.pem, mode: 0o644, what: created + " new CA certificate " + describe(nw)},
		fileEdit{path: p.OldCert, data: old.pem, mode: 0o644, what: "copy of the old CA certificate " + describe(old)},
		fileEdit{path: p.Bundle, data: bundle, mode: 0o644, what: "bundle: old + new CA"},
	)
	from, to := o.Layout.NodePath(p.CACert), o.Layout.NodePath(p.Bundle)
	ver, notes, err := verifiers(o.Layout, d, from, to, o.DeferManifests, func(cur []byte) []byte {
		if contains(cur, old.cert) && !bytes.Equal(cur, bundle) {
			return bundle
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if d.cluster && old.key == nil {
		// A worker: no CA key, nothing signs with ca.crt; the kubelet alone verifies with it.
		var done bool
		if ver, done = inPlace(o.Layout, p, ver, bundle, &res.Notes); done {
			res.KubeletClientCA = p.CACert
		}
	}
	edits = append(edits, ver...)
	res.Notes = append(res.Notes, notes...)
	st = &State{CA: o.CA, Phase: PhaseTrust, OldCA: fingerprint(old.cert), NewCA: fingerprint(nw.cert)}
	return res, apply(o, p, res, st, edits)
}

// apply writes a trust or drop phase: backup, the edits and the new state in one journaled
// transaction. Dry-run: only the report.
func apply(o Options, p Paths, res *Result, st *State, edits []fileEdit) error {
	report(res, edits)
	res.Changes = append(res.Changes, Change{Path: p.State, What: "rotation state: phase " + st.Phase})
	if o.DryRun {
		return nil
	}
	paths := append(pathsOf(edits), p.State)
	r, err := begin(o, p.Dir, paths)
	if err != nil {
		return err
	}
	defer r.end()
	st.Steps = append(st.Steps, Step{Phase: st.Phase, BackupID: r.bk.ID, Time: o.Now.UTC(), Restart: res.Restart})
	data, err := marshalState(st)
	if err != nil {
		return err
	}
	edits = append(edits, fileEdit{path: p.State, data: data, mode: 0o600})
	if err := r.replace([]string{o.CA + " " + st.Phase}, edits); err != nil {
		return err
	}
	res.BackupID = r.bk.ID
	return nil
}

// newCA finds or makes the new CA; created says which ("generated", "installed", "kept").
// fresh: the rotation directory holds a completed rotation, whose new.crt is no new CA.
func newCA(o Options, p Paths, old *parsed, fresh bool) (*parsed, string, error) {
	if o.NewCA != nil {
		n, err := parseCA(o.NewCA.CertPath, o.NewCA.CertPEM, o.NewCA.KeyPath, o.NewCA.KeyPEM)
		if o.NewCA.KeyPath != "" && o.NewCA.KeyPEM == nil && err == nil {
			err = fmt.Errorf("%s: empty key file", o.NewCA.KeyPath)
		}
		return n, "install", err
	}
	if _, err := os.Stat(p.NewCert); err == nil && !fresh {
		// Put there by hand (copied from the first node) before phase trust.
		n, err := readCA(p.NewCert, p.NewKey)
		return n, "keep", err
	}
	if !o.Generate {
		return nil, "", fmt.Errorf("%s: no new CA: on the first control-plane node pass --generate; on the others pass --new-ca-cert/--new-ca-key with the first node's %s and %s (a worker needs only --new-ca-cert)", o.CA, p.NewCert, p.NewKey)
	}
	if old.key == nil {
		return nil, "", fmt.Errorf("%s: --generate needs the CA key %s on this node: generate the new CA on a control-plane node and give it here with --new-ca-cert", o.CA, p.CAKey)
	}
	alg := pki.KeyAlgorithm(old.cert.PublicKey)
	if !slices.Contains(pki.KeyAlgorithms, alg) {
		return nil, "", fmt.Errorf("%s: the old CA key is %s, which certctl cannot generate", o.CA, alg)
	}
	key, err := pki.GenerateKey(alg)
	if err != nil {
		return nil, "", err
	}
	cert, err := pki.NewCA(key, old.cert, o.Now.Add(-5*time.Minute), o.Now.Add(time.Duration(o.Days)*24*time.Hour))
	if err != nil {
		return nil, "", err
	}
	keyPEM, err := pki.EncodePrivateKey(key)
	if err != nil {
		return nil, "", err
	}
	return &parsed{cert: cert, pem: pki.EncodeCertificates(cert), key: key, keyP: keyPEM}, "generate", nil
}

// inPlace turns phase trust's edits of a worker's kubelet (clientCAFile moved to the bundle,
// kubelet.conf's CA set to it: both read at start, so a restart) into what a running kubelet
// takes without one: the bundle written into the file its clientCAFile names, ca.crt, which it
// reloads (1.36+; the caller checks, and restarts an older one); kubelet.conf's CA set to the
// bundle, read at the kubelet's next restart (phase issue's, or drop's): until drop every
// apiserver's certificate verifies with the old CA alone, through the new CA cross-signed by
// the old that phase issue serves after it. A kubelet whose clientCAFile names another file
// keeps the edits as they were; done says which. The kubelet config is not read again: edits
// holds its clientCAFile moved (kubeletClientCA) exactly when that names ca.crt.
func inPlace(l pki.Layout, p Paths, edits []fileEdit, bundle []byte, notes *[]string) (_ []fileEdit, done bool) {
	config := l.Resolve(filepath.Join(l.KubeletDir, "config.yaml"))
	if !slices.ContainsFunc(edits, func(e fileEdit) bool { return e.path == config }) {
		return edits, false
	}
	var out []fileEdit
	for _, e := range edits {
		switch {
		case e.path == config:
			continue
		case e.component == pki.CompKubelet:
			e.component = ""
			e.what += " (read at the kubelet's next restart: phase issue's or drop's)"
		}
		out = append(out, e)
	}
	*notes = append(*notes, fmt.Sprintf("%s, the kubelet's clientCAFile, holds old + new CA in place: a 1.36+ kubelet reloads it, no restart (an older one is restarted)", p.CACert))
	return append(out, fileEdit{path: p.CACert, data: bundle, mode: modeOr(p.CACert, 0o644), what: "old + new CA, in place (the kubelet's clientCAFile)"}), true
}

func describe(c *parsed) string {
	return fmt.Sprintf("(%s, %s, until %s)", c.cert.Subject, pki.KeyAlgorithm(c.cert.PublicKey), c.cert.NotAfter.UTC().Format("2006-01-02"))
}
