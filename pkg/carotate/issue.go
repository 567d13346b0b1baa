package carotate

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"time"

	"github.com/certctl/certctl/pkg/kubeconfig"
	"github.com/certctl/certctl/pkg/kubeletclient"
	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/renew"
)

// Issue is phase 2 for one CA on this node: every leaf the CA signed (and every kubeconfig
// client certificate, and for the cluster CA the kubelet's client certificate when the
// kubelet reads it from kubelet-client-current.pem) is re-issued by the new CA through
// pkg/renew with the new CA as signer (subject, SANs and usages kept; renewed kubeconfigs
// trust the bundle); then ca.crt/ca.key become the new CA and the old pair is kept in the
// rotation directory as old.crt/old.key. Verification stays on the bundle.
//
// On a worker (no CA key on the node) only ca.crt becomes the new CA certificate: the
// kubelet's client certificate is re-issued through its CSR once the controller-manager signs
// with the new CA (or certctl kubelet-client renew).
func Issue(o Options) (*Result, error) {
	_, p, res, st, err := start(&o, PhaseIssue)
	if err != nil {
		return nil, err
	}
	if o.CA == SA {
		return saIssue(o, p, res, st)
	}
	if st == nil {
		return nil, fmt.Errorf("%s: phase trust has not run on this node (no %s): run certctl ca rotate %s --phase trust first", o.CA, p.State, o.CA)
	}
	if phaseIndex(st.Phase) >= phaseIndex(PhaseIssue) {
		res.AlreadyDone = true
		res.Notes = append(res.Notes, fmt.Sprintf("phase issue already done (the rotation is at phase %s): nothing to do", st.Phase))
		return res, nil
	}
	old, err := issueOld(p)
	if err != nil {
		return nil, err
	}
	if fingerprint(old.cert) != st.OldCA {
		return nil, fmt.Errorf("%s: %s is not the CA phase trust recorded as the old one (%s): it was changed by hand; restore it, or roll the rotation back (certctl ca rotate %s --rollback)", o.CA, p.CACert, p.State, o.CA)
	}
	newKeyPEM, err := os.ReadFile(p.NewKey)
	switch {
	case errors.Is(err, fs.ErrNotExist) && old.key != nil:
		return nil, fmt.Errorf("%s: the new CA key %s is missing, and this node signs with %s: copy new.key from the node that generated the new CA into %s and run again", o.CA, p.NewKey, p.CAKey, p.Dir)
	case errors.Is(err, fs.ErrNotExist):
		newKeyPEM = nil
	case err != nil:
		return nil, fmt.Errorf("read %s: %w", p.NewKey, err)
	}
	newCertPEM, err := os.ReadFile(p.NewCert)
	if err != nil {
		return nil, fmt.Errorf("%s: read the new CA certificate: %w", o.CA, err)
	}
	nw, err := parseCA(p.NewCert, newCertPEM, p.NewKey, newKeyPEM)
	if err != nil {
		return nil, err
	}
	if fingerprint(nw.cert) != st.NewCA {
		return nil, fmt.Errorf("%s: %s is not the new CA phase trust installed (%s); restore it, or roll the rotation back (certctl ca rotate %s --rollback)", o.CA, p.NewCert, p.State, o.CA)
	}
	bundle, err := os.ReadFile(p.Bundle)
	if err != nil {
		return nil, fmt.Errorf("%s: read the bundle: %w", o.CA, err)
	}
	caMode := modeOr(p.CACert, 0o644)
	final := []fileEdit{{path: p.CACert, data: nw.pem, mode: caMode, what: "the new CA certificate (the old one is kept as " + p.OldCert + ")"}}
	if old.key == nil {
		if file, err := kubeletClientCAFile(o.Layout); err != nil {
			return nil, err
		} else if file == p.CACert {
			res.KubeletClientCA = file // the bundle phase trust wrote in place, now the new CA alone
		}
		res.Notes = append(res.Notes, "no CA key on this node: only ca.crt changes; the kubelet's client certificate (and a serving certificate from the cluster CA) is re-issued through its CSR once the controller-manager signs with the new CA (or: certctl kubelet-client renew, certctl kubelet-serving enable --approve)")
		report(res, final)
		res.Changes = append(res.Changes, Change{Path: p.State, What: "rotation state: phase issue"})
		return res, issueApply(o, p, res, st, issueWork{final: final})
	}
	// The new CA cross-signed by the old, served after the re-issued serving certificates:
	// a client that read the old CA once (client-go's in-cluster config reads ca.crt at start,
	// kubernetes#119483) keeps verifying the apiserver until it restarts.
	cross, err := pki.CrossSign(nw.cert, old.cert, old.key)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.CA, err)
	}
	final = append([]fileEdit{
		{path: p.CAKey, data: nw.keyP, mode: 0o600, what: "the new CA key (the old one is kept as " + p.OldKey + ")", component: pki.CompControllerManager},
		{path: p.OldKey, data: old.keyP, mode: 0o600, what: "copy of the old CA key"},
		{path: p.Cross, data: pki.EncodeCertificates(cross), mode: 0o644, what: fmt.Sprintf("the new CA cross-signed by the old, until %s: served after the re-issued serving certificates, for clients that loaded only the old CA", cross.NotAfter.UTC().Format("2006-01-02"))},
	}, final...)

	// The leaves, through renew with the new CA as signer.
	inv := pki.Load(o.Layout, pki.Default())
	var names []string
	for _, n := range append(slices.Clone(renew.All), "kubelet.conf") {
		it := inv.Get(n)
		if it == nil || it.Spec.CAName != o.CA || it.Absent || it.Missing {
			continue
		}
		if it.Spec.Kind == pki.KindKubeconfig && (it.Kubeconfig == nil || !it.Kubeconfig.Embedded()) {
			continue
		}
		names = append(names, n)
	}
	var plan *renew.Plan
	if len(names) > 0 {
		plan, err = renew.NewPlan(o.Layout, renew.Options{
			Names: names, Days: o.LeafDays, Now: o.Now,
			Signers: map[string]renew.Signer{o.CA: {Cert: nw.cert, Key: nw.key, TrustPEM: bundle, Source: p.NewCert, Chain: []*x509.Certificate{cross}}},
		})
		if err != nil {
			return nil, err
		}
		for _, row := range plan.Renewing() {
			if row.KeyPath != row.Path {
				res.Changes = append(res.Changes, Change{Path: row.KeyPath, What: fmt.Sprintf("%s: new key (%s)", row.Name, row.KeyAction)})
			}
			res.Changes = append(res.Changes, Change{Path: row.Path, What: fmt.Sprintf("%s re-issued by the new CA, until %s", row.Name, row.NewExpiry.UTC().Format("2006-01-02"))})
			res.restart(row.Components...)
		}
	}
	// The kubelet's rotating client certificate, when kubelet.conf reads it from a file.
	var kc *kubeletClient
	if o.CA == "ca" {
		if kc, err = planKubeletClient(o, inv, old.cert); err != nil {
			return nil, err
		}
		if kc != nil {
			res.Changes = append(res.Changes, Change{Path: kubeletclient.CurrentPath(o.Layout), What: "kubelet client certificate of " + kc.node + " re-issued by the new CA (a new kubelet-client-<time>.pem, the link swung to it)"})
			res.restart(pki.CompKubelet)
		}
	}
	// The kubelet's serving certificate, when the old cluster CA signed it.
	var ks *kubeletServing
	if o.CA == "ca" {
		if ks, err = planKubeletServing(o.Layout, inv, old.cert); err != nil {
			return nil, err
		}
		if ks != nil && ks.link != "" {
			res.Changes = append(res.Changes, Change{Path: ks.link, What: "kubelet serving certificate re-issued by the new CA (a new kubelet-server-<time>.pem, the link swung to it)"})
			res.restart(pki.CompKubelet)
		}
		if ks != nil {
			e, err := ks.edits(nw, o.Now, o.LeafDays)
			if err != nil {
				return nil, err
			}
			final = append(e, final...)
		}
	}
	adminConf := o.Layout.AdminConf()
	userCopy := plan != nil && plan.Renews("admin.conf") && kubeconfig.CopiesAdmin(adminConf, o.Layout.UserKubeconfig)
	if userCopy {
		res.Changes = append(res.Changes, Change{Path: o.Layout.UserKubeconfig, What: "a copy of admin.conf: refreshed from the new admin.conf (certctl kubeconfig refresh)"})
	}
	report(res, final)
	res.Changes = append(res.Changes, Change{Path: p.State, What: "rotation state: phase issue"})
	return res, issueApply(o, p, res, st, issueWork{plan: plan, kc: kc, ks: ks, userCopy: userCopy, final: final, nw: nw})
}

type kubeletClient struct {
	node string
	link string // where kubelet-client-current.pem points now (node path)
}

// planKubeletClient decides whether the kubelet's client certificate is to be re-issued:
// kubelet.conf reads kubelet-client-current.pem and its certificate is the old CA's.
func planKubeletClient(o Options, inv *pki.Inventory, oldCA *x509.Certificate) (*kubeletClient, error) {
	it := inv.Get("kubelet.conf")
	if it == nil || it.Absent || it.Kubeconfig == nil || it.Kubeconfig.CertFile == "" || it.Cert() == nil {
		return nil, nil
	}
	if it.Cert().CheckSignatureFrom(oldCA) != nil {
		return nil, nil
	}
	node, err := kubeletclient.NodeName(o.Layout, "")
	if err != nil {
		return nil, err
	}
	link, _ := os.Readlink(kubeletclient.CurrentPath(o.Layout))
	return &kubeletClient{node: node, link: link}, nil
}

// issueApply writes phase issue: backup; the leaves (renew.Apply under this run's lock);
// the kubelet client certificate; ~/.kube/config when it copies admin.conf; then ca.crt,
// ca.key, old.key and the state as one transaction. A failure puts the backup back.
// issueWork is what phase issue writes, decided before anything is.
type issueWork struct {
	plan     *renew.Plan     // the leaves; nil when none
	kc       *kubeletClient  // the kubelet client certificate; nil when not re-issued
	ks       *kubeletServing // the kubelet serving certificate; nil when not re-issued
	userCopy bool            // ~/.kube/config copies admin.conf
	final    []fileEdit      // ca.crt, ca.key, old.key, a tlsCertFile pair
	nw       *parsed         // the new CA; nil on a worker
}

func issueApply(o Options, p Paths, res *Result, st *State, w issueWork) error {
	plan, kc, ks, userCopy, final, nw := w.plan, w.kc, w.ks, w.userCopy, w.final, w.nw
	if o.DryRun {
		return nil
	}
	paths := append(pathsOf(final), p.State)
	if plan != nil {
		for _, row := range plan.Renewing() {
			paths = append(paths, row.Path, row.KeyPath)
		}
	}
	if userCopy {
		paths = append(paths, o.Layout.UserKubeconfig)
	}
	if kc != nil {
		paths = append(paths, kubeletclient.KubeletConfPath(o.Layout))
	}
	r, err := begin(o, p.Dir, paths)
	if err != nil {
		return err
	}
	defer r.end()
	step := Step{Phase: PhaseIssue, BackupID: r.bk.ID, Time: o.Now.UTC(), Restart: res.Restart}
	fail := func(cause error) error {
		if err := unswing(o.Layout, step); err != nil {
			cause = fmt.Errorf("%w; %v", cause, err)
		}
		return r.undo(cause)
	}
	if plan != nil && !plan.Empty() {
		if _, err := renew.Apply(plan, renew.ApplyOptions{Command: o.Command, Log: o.Log, Locked: true}); err != nil {
			return fail(err)
		}
	}
	if kc != nil && nw != nil {
		issued, err := kubeletclient.Issue(kubeletclient.IssueOptions{Layout: o.Layout, Node: kc.node, Now: o.Now,
			Validity: timeDays(o.LeafDays), CA: &pki.Item{Certs: []*x509.Certificate{nw.cert}, Key: nw.key}})
		if err != nil {
			return fail(err)
		}
		ir, err := kubeletclient.Install(o.Layout, issued.Pair, o.Command, o.Now)
		if ir != nil {
			step.Created = append(step.Created, o.Layout.NodePath(ir.Path))
			if kc.link != "" {
				step.Links = append(step.Links, Link{Path: o.Layout.NodePath(kubeletclient.CurrentPath(o.Layout)), Target: kc.link})
			}
		}
		if err != nil {
			return fail(err)
		}
	}
	if ks != nil && ks.link != "" {
		if err := ks.swing(o.Layout, nw, o.Now, o.LeafDays, &step); err != nil {
			return fail(err)
		}
	}
	if userCopy {
		adminConf := o.Layout.AdminConf()
		if _, err := kubeconfig.Refresh(kubeconfig.RefreshOptions{Src: adminConf, Dst: o.Layout.UserKubeconfig}); err != nil {
			return fail(err)
		}
	}
	st.Phase = PhaseIssue
	st.Steps = append(st.Steps, step)
	data, err := marshalState(st)
	if err != nil {
		return fail(err)
	}
	if err := r.replace([]string{o.CA + " issue"}, append(final, fileEdit{path: p.State, data: data, mode: 0o600})); err != nil {
		return fail(err)
	}
	res.BackupID = r.bk.ID
	return nil
}

func timeDays(d int) time.Duration { return time.Duration(d) * 24 * time.Hour }

// issueOld reads the CA phase issue replaces: ca.crt with its key, or, on a worker where phase
// trust wrote the bundle into ca.crt in place, the old CA trust kept in old.crt (caCert).
func issueOld(p Paths) (*parsed, error) {
	name, data, err := caCert(p)
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(p.CAKey)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		keyPEM = nil
	case err != nil:
		return nil, fmt.Errorf("read %s: %w", p.CAKey, err)
	case name != p.CACert:
		return nil, fmt.Errorf("%s holds the rotation's bundle (%s), but this node has the CA key %s: put the CA certificate back (old.crt in %s)", p.CACert, p.Bundle, p.CAKey, p.Dir)
	}
	return parseCA(name, data, p.CAKey, keyPEM)
}

func modeOr(path string, def os.FileMode) os.FileMode {
	if st, err := os.Stat(path); err == nil {
		return st.Mode().Perm()
	}
	return def
}
