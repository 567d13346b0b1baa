package carotate

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/certctl/certctl/pkg/backup"
	"github.com/certctl/certctl/pkg/fsutil"
	"github.com/certctl/certctl/pkg/manifest"
	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/restart"
	"github.com/certctl/certctl/pkg/txn"
)

// Drop is phase 3 for one CA on this node: everything that verifies with the CA goes back
// to kubeadm's defaults (the flags and clientCAFile name ca.crt again, which is now the new
// CA alone; kubeconfigs trust the new CA alone). It is refused while any certificate of the
// node's inventory is still signed by the old CA: after drop, nothing would accept it.
func Drop(o Options) (*Result, error) {
	d, p, res, st, err := start(&o, PhaseDrop)
	if err != nil {
		return nil, err
	}
	if o.CA == SA {
		return saDrop(o, d, p, res, st)
	}
	switch {
	case st == nil:
		return nil, fmt.Errorf("%s: no rotation on this node (no %s): phases trust and issue come first", o.CA, p.State)
	case st.Phase == PhaseDrop:
		res.AlreadyDone = true
		res.Notes = append(res.Notes, "phase drop already done: nothing to do")
		return res, nil
	case st.Phase != PhaseIssue:
		return nil, fmt.Errorf("%s: the rotation is at phase %s: run certctl ca rotate %s --phase issue first", o.CA, st.Phase, o.CA)
	}
	oldPEM, err := os.ReadFile(p.OldCert)
	if err != nil {
		return nil, fmt.Errorf("%s: read the old CA: %w", o.CA, err)
	}
	old, err := parseCA(p.OldCert, oldPEM, "", nil)
	if err != nil {
		return nil, err
	}
	cur, err := readCA(p.CACert, p.CAKey)
	if err != nil {
		return nil, err
	}
	if fingerprint(cur.cert) != st.NewCA {
		return nil, fmt.Errorf("%s: %s is not the new CA of this rotation (%s); restore it or roll back (certctl ca rotate %s --rollback)", o.CA, p.CACert, p.State, o.CA)
	}
	if still := signedBy(o.Layout, old.cert); len(still) > 0 {
		return nil, fmt.Errorf("%s: still signed by the old CA, and nothing would accept them after drop: %s; then run drop again", o.CA, strings.Join(still, "; "))
	}
	from, to := o.Layout.NodePath(p.Bundle), o.Layout.NodePath(p.CACert)
	edits, notes, err := verifiers(o.Layout, d, from, to, o.DeferManifests, func(data []byte) []byte {
		if contains(data, cur.cert) && !bytes.Equal(data, cur.pem) {
			return cur.pem
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	res.Notes = append(res.Notes, notes...)
	res.Notes = append(res.Notes, crossServed(o.Layout, old.cert)...)
	res.Notes = append(res.Notes, fmt.Sprintf("the old CA stays in %s (old.crt, old.key) until you remove it; the rollback of this phase does not need it", p.Dir))
	st.Phase = PhaseDrop
	return res, apply(o, p, res, st, edits)
}

// signedBy lists the certificates of the node's inventory (leaves, kubeconfig client
// certificates, the kubelet's) that ca signed.
func signedBy(l pki.Layout, ca *x509.Certificate) []string {
	var out []string
	for _, it := range pki.Load(l, pki.Default()).Items {
		c := it.Cert()
		if it.Spec.IsCA() || c == nil {
			continue
		}
		if bytes.Equal(c.RawIssuer, ca.RawSubject) && c.CheckSignatureFrom(ca) == nil {
			out = append(out, fmt.Sprintf("%s (%s): %s", it.Spec.Name, it.Path, reissue(it.Spec)))
		}
	}
	return out
}

// crossServed notes the serving certificates that still carry the new CA cross-signed by the
// old after their leaf (phase issue put it there): harmless once the old CA is trusted nowhere
// (it only lets a client that trusts the old CA verify the new chain, which that client could
// be given anyway), and it keeps pods that read ca.crt once, before the rotation, talking to
// the apiserver until they restart.
func crossServed(l pki.Layout, old *x509.Certificate) []string {
	var out []string
	for _, it := range pki.Load(l, pki.Default()).Items {
		if it.Spec.IsCA() || len(it.Certs) < 2 {
			continue
		}
		for _, c := range it.Certs[1:] {
			if c.CheckSignatureFrom(old) == nil {
				out = append(out, fmt.Sprintf("%s keeps the new CA cross-signed by the old one after its certificate (until %s): clients that loaded only the old CA (pods started before the rotation: client-go reads ca.crt once) still verify it; certctl renew keeps it until it expires, kubeadm certs renew drops it", it.Path, c.NotAfter.UTC().Format("2006-01-02")))
			}
		}
	}
	return out
}

// reissue says how to get a certificate of the new CA for s.
func reissue(s pki.Spec) string {
	switch {
	case s.Loc == pki.LocUser:
		return "certctl kubeconfig refresh"
	case s.Kind == pki.KindKubeletClient || s.Name == "kubelet.conf":
		return "certctl kubelet-client renew"
	case s.Kind == pki.KindKubeletServing:
		return "certctl kubelet-serving issue (or enable --approve)"
	}
	return "certctl renew " + s.Name
}

// Rollback undoes the last phase applied to CA o.CA on this node: the phase's backup is put
// back (files the phase created are removed, the state file included), and after phase issue
// kubelet-client-current.pem points at the kubelet's previous certificate again. Dry-run: the
// files it would put back. With o.DeferManifests the static-pod manifests it puts back go to
// the pending manifests, for the restart to install each as it restarts that component
// (drained, verified), not in place where the kubelet would restart it at once.
func Rollback(o Options) (*Result, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	p, err := PathsOf(o.Layout, o.CA)
	if err != nil {
		return nil, err
	}
	st, err := LoadState(o.Layout, o.CA)
	if err != nil {
		return nil, err
	}
	if (st == nil || len(st.Steps) == 0) && o.RollbackPhase != "" {
		return &Result{CA: o.CA, Phase: "rollback " + o.RollbackPhase, DryRun: o.DryRun, AlreadyDone: true,
			Notes: []string{"no rotation on this node: phase " + o.RollbackPhase + " was not applied here, nothing to undo"}}, nil
	}
	if st == nil || len(st.Steps) == 0 {
		return nil, fmt.Errorf("%s: no rotation phase to roll back on this node (no %s)", o.CA, p.State)
	}
	step := st.Steps[len(st.Steps)-1]
	if o.RollbackPhase != "" && step.Phase != o.RollbackPhase {
		if phaseIndex(step.Phase) < phaseIndex(o.RollbackPhase) {
			return &Result{CA: o.CA, Phase: "rollback " + o.RollbackPhase, DryRun: o.DryRun, AlreadyDone: true,
				Notes: []string{fmt.Sprintf("phase %s was not applied on this node (its last phase is %s): nothing to undo", o.RollbackPhase, step.Phase)}}, nil
		}
		return nil, fmt.Errorf("%s: the last phase applied on this node is %s, not %s: roll %s back first", o.CA, step.Phase, o.RollbackPhase, step.Phase)
	}
	if o.CA == SA && step.Phase == PhaseTrust && !o.IgnoreTokens {
		if err := newKeyTokens(o.Layout); err != nil {
			return nil, err
		}
	}
	res := &Result{CA: o.CA, Phase: "rollback " + step.Phase, DryRun: o.DryRun, BackupID: step.BackupID}
	m, err := backup.Load(o.Layout, step.BackupID)
	if err != nil {
		return nil, fmt.Errorf("%s: the backup of phase %s: %w", o.CA, step.Phase, err)
	}
	for _, f := range m.Files {
		what := "put back as it was before phase " + step.Phase
		if f.Absent {
			what = "removed (phase " + step.Phase + " created it)"
		}
		res.Changes = append(res.Changes, Change{Path: o.Layout.Resolve(f.Path), What: what})
	}
	for _, k := range step.Links {
		res.Changes = append(res.Changes, Change{Path: linkPath(o.Layout, k.Path), What: "points at " + k.Target + " again"})
	}
	res.restart(step.Restart...)
	if o.DryRun {
		return res, nil
	}
	lock, err := txn.AcquireLock(o.Layout.StateDir(), o.LockTimeout)
	if err != nil {
		return nil, err
	}
	defer lock.Release()
	if err := txn.RecoverLocked(fsutil.OS{}, o.Layout, o.Log); err != nil {
		return nil, err
	}
	var edit func(txn.Change) (txn.Change, bool)
	var extra []txn.Change
	if o.DeferManifests {
		if edit, extra, err = deferManifests(o.Layout, m, p); err != nil {
			return nil, err
		}
	}
	if _, err := backup.RestoreWith(fsutil.OS{}, o.Layout, step.BackupID, edit, extra...); err != nil {
		return nil, err
	}
	if err := unswing(o.Layout, step); err != nil {
		return nil, fmt.Errorf("%s: the files of backup %s are back, but: %w", o.CA, step.BackupID, err)
	}
	// A file put back that the running kubelet's clientCAFile names, with no kubelet restart
	// asked for (phase trust or issue on a worker wrote it in place): the kubelet reloads it.
	if !slices.Contains(res.Restart, pki.CompKubelet) {
		file, err := kubeletClientCAFile(o.Layout)
		if err != nil {
			return nil, fmt.Errorf("%s: the files of backup %s are back, but: %w", o.CA, step.BackupID, err)
		}
		for _, f := range m.Files {
			if file != "" && o.Layout.Resolve(f.Path) == file && !f.Absent {
				res.KubeletClientCA = file
			}
		}
	}
	// An empty rotation directory (and its empty parent) is what phase trust found: none.
	if os.Remove(p.Dir) == nil {
		os.Remove(filepath.Dir(p.Dir))
	}
	return res, nil
}

// deferManifests is how a rollback restores through the restart: a static-pod manifest it
// puts back goes to l's pending manifests (unless the one in place is that already: nothing to
// restart it on), and the files the phase created that the manifests in place still name (the
// rotation's bundles) stay until the restart has put the manifests from before in: their
// removal, with the rotation directory's when it is left empty, goes into the pending removals
// (restart.PendingRemovalsPath), written in the same journaled change (extra).
func deferManifests(l pki.Layout, m *backup.Manifest, p Paths) (edit func(txn.Change) (txn.Change, bool), extra []txn.Change, err error) {
	named, err := namedByManifests(l)
	if err != nil {
		return nil, nil, err
	}
	var later restart.PendingRemovals
	if data, err := os.ReadFile(restart.PendingRemovalsPath(l)); err == nil {
		if err := json.Unmarshal(data, &later); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", restart.PendingRemovalsPath(l), err)
		}
	}
	deferred := map[string]bool{}
	for _, f := range m.Files {
		if path := l.Resolve(f.Path); f.Absent && named[path] {
			deferred[path] = true
			later.Files = append(later.Files, path)
		}
	}
	if len(deferred) > 0 {
		later.Dirs = append(later.Dirs, p.Dir, filepath.Dir(p.Dir))
		data, err := json.Marshal(later)
		if err != nil {
			return nil, nil, err
		}
		extra = append(extra, txn.Change{Path: restart.PendingRemovalsPath(l), Data: data, Mode: 0o600})
	}
	edit = func(c txn.Change) (txn.Change, bool) {
		if c.Remove {
			return c, !deferred[c.Path]
		}
		if filepath.Dir(c.Path) != filepath.Clean(l.ManifestsDir) {
			return c, true
		}
		if cur, err := os.ReadFile(c.Path); err == nil && bytes.Equal(cur, c.Data) {
			return c, false
		}
		c.Path = filepath.Join(l.PendingManifestsDir(), filepath.Base(c.Path))
		return c, true
	}
	return edit, extra, nil
}

// namedByManifests is the set of files (host paths) the flags of the static-pod manifests in
// place name.
func namedByManifests(l pki.Layout) (map[string]bool, error) {
	named := map[string]bool{}
	for _, name := range manifest.Files {
		pod, err := manifest.Load(filepath.Join(l.ManifestsDir, name))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, v := range pod.Flags() {
			if filepath.IsAbs(v) {
				named[l.Resolve(v)] = true
			}
		}
	}
	return named, nil
}
