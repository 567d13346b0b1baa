package carotate_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certctl/certctl/pkg/carotate"
	"github.com/certctl/certctl/pkg/kubeletclient"
	"github.com/certctl/certctl/pkg/pki"
)

// TestDryRunAndRollback: before each phase, a dry run plans the files the phase then really
// changes and changes nothing; after each phase, Rollback brings every byte (and the
// kubelet-client-current.pem link) back to what it was before the phase; the phase then runs
// again. The tree's kubelet.conf reads kubelet-client-current.pem, as after kubeadm's
// kubelet-finalize, so phase issue also re-issues the kubelet's client certificate.
func TestDryRunAndRollback(t *testing.T) {
	base := node(t)
	for _, ca := range carotate.CAs {
		t.Run(ca, func(t *testing.T) {
			l := clone(t, base)
			if ca == "ca" {
				kubeletFinalize(t, l)
			}
			o := opts(l, ca)
			o.Generate = true
			for _, phase := range carotate.Phases {
				before := snapshot(t, l)
				dry := o
				dry.DryRun = true
				plan := mustPhase(t, phase, dry)
				sameSnapshot(t, phase+" dry run", before, snapshot(t, l))
				if len(plan.Changes) == 0 || !plan.DryRun {
					t.Fatalf("%s dry run: no plan", phase)
				}
				res := mustPhase(t, phase, o)
				after := snapshot(t, l)
				// Every file the plan named is what changed (the kubelet client PEM is a new
				// file beside the link the plan names).
				for _, c := range plan.Changes {
					if before[c.Path] == after[c.Path] {
						t.Errorf("%s: the plan names %s (%s) but it did not change", phase, c.Path, c.What)
					}
				}
				for p := range after {
					if before[p] != after[p] && !planned(plan, p) && !strings.HasPrefix(filepath.Base(p), "kubelet-client-2") {
						t.Errorf("%s: %s changed but the plan did not name it", phase, p)
					}
				}
				rb := o
				r := mustPhase(t, "rollback", rb)
				if r.Phase != "rollback "+phase || r.BackupID != res.BackupID {
					t.Errorf("rollback: %s from backup %s, want rollback %s from %s", r.Phase, r.BackupID, phase, res.BackupID)
				}
				sameSnapshot(t, "rollback of "+phase, before, snapshot(t, l))
				mustPhase(t, phase, o)
				if phase == carotate.PhaseTrust {
					o.Generate = false
				}
			}
			if ca == "ca" {
				if c := kubeletclient.OldCert(l); c == nil || c.CheckSignatureFrom(certs(t, filepath.Join(l.PKIDir, "ca.crt"))[0]) != nil {
					t.Errorf("the kubelet client certificate is not from the new CA after the rotation")
				}
			}
		})
	}
}

func planned(r *carotate.Result, p string) bool {
	for _, c := range r.Changes {
		if c.Path == p {
			return true
		}
	}
	return false
}

// kubeletFinalize does what kubeadm's kubelet-finalize phase leaves on a node: the client
// certificate in /var/lib/kubelet/pki/kubelet-client-<time>.pem, kubelet-client-current.pem
// linking to it, kubelet.conf reading it.
func kubeletFinalize(t *testing.T, l pki.Layout) {
	t.Helper()
	it := pki.Load(l, pki.Default()).Get("kubelet.conf")
	pair, err := kubeletclient.ParsePair("kubelet.conf", append(append([]byte{}, it.Kubeconfig.CertData...), it.Kubeconfig.KeyData...))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kubeletclient.Install(l, pair, "test: kubelet-finalize", it.Cert().NotBefore); err != nil {
		t.Fatal(err)
	}
	if got := pki.Load(l, pki.Default()).Get("kubelet.conf"); got.Kubeconfig.CertFile == "" {
		t.Fatal("kubelet.conf still embeds its certificate")
	}
	if err := os.RemoveAll(l.BackupRoot()); err != nil {
		t.Fatal(err)
	}
}
