package carotate_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certctl/certctl/pkg/carotate"
	"github.com/certctl/certctl/pkg/kubeletclient"
	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/renew"
)

// TestIssueFailsCleanly: phase issue fails after the leaves were already re-issued (the
// kubelet client PEM it is about to write exists); the backup is put back, and every file is
// as before the phase. Then the phase runs.
func TestIssueFailsCleanly(t *testing.T) {
	l := clone(t, node(t))
	kubeletFinalize(t, l)
	o := opts(l, "ca")
	o.Generate = true
	mustPhase(t, carotate.PhaseTrust, o)
	o.Generate = false
	o.Now = time.Now().Truncate(time.Second)
	blocker := filepath.Join(kubeletclient.PKIDir(l), "kubelet-client-"+o.Now.Format("2006-01-02-15-04-05")+".pem")
	if err := os.WriteFile(blocker, []byte("in the way"), 0o600); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, l)
	_, err := carotate.Issue(o)
	if err == nil || !strings.Contains(err.Error(), "already exists") || !strings.Contains(err.Error(), "were put back") {
		t.Fatalf("issue with the kubelet PEM in the way: %v", err)
	}
	sameSnapshot(t, "failed issue", before, snapshot(t, l))
	os.Remove(blocker)
	mustPhase(t, carotate.PhaseIssue, o)
}

// TestIssueResumes: a phase issue killed after part of the leaves were re-issued by the new
// CA (simulated by renewing apiserver with the new CA through pkg/renew, as issue does)
// leaves the state at trust; running issue again completes it.
func TestIssueResumes(t *testing.T) {
	l := clone(t, node(t))
	o := opts(l, "ca")
	o.Generate = true
	mustPhase(t, carotate.PhaseTrust, o)
	p, _ := carotate.PathsOf(l, "ca")
	newCA := certs(t, p.NewCert)[0]
	newKey, err := pki.ParsePrivateKey(p.NewKey, read(t, p.NewKey))
	if err != nil {
		t.Fatal(err)
	}
	plan, err := renew.NewPlan(l, renew.Options{Names: []string{"apiserver"}, Days: 365,
		Signers: map[string]renew.Signer{"ca": {Cert: newCA, Key: newKey, TrustPEM: read(t, p.Bundle), Source: p.NewCert}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := renew.Apply(plan, renew.ApplyOptions{Command: "test: half an issue"}); err != nil {
		t.Fatal(err)
	}
	if st, _ := carotate.LoadState(l, "ca"); st.Phase != carotate.PhaseTrust {
		t.Fatalf("state %s, want trust", st.Phase)
	}
	o.Generate = false
	mustPhase(t, carotate.PhaseIssue, o)
	for _, it := range pki.Load(l, pki.Default()).Items {
		if it.Spec.CAName == "ca" && it.Cert() != nil && it.Cert().CheckSignatureFrom(newCA) != nil {
			t.Errorf("%s is not from the new CA after the resumed issue", it.Spec.Name)
		}
	}
	mustPhase(t, carotate.PhaseDrop, o)
}
