package carotate_test

import (
	"bytes"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/carotate"
	"github.com/certctl/certctl/pkg/kubeletclient"
	"github.com/certctl/certctl/pkg/pki"
)

// TestOtherNodes: the first control-plane node generates the new CA; a second control-plane
// node (same CAs, as kubeadm join --control-plane copies them) takes it as files and ends up
// with the same CA and bundle; a worker takes the certificate alone and changes only the
// kubelet's files (the bundle in place in ca.crt, for its kubelet to reload), and its drop
// waits until the kubelet's client certificate is the new CA's.
func TestOtherNodes(t *testing.T) {
	first := node(t)
	second, wk := clone(t, first), clone(t, first)
	testenv.ToWorker(t, wk)
	if r, _ := pki.DetectRole(wk); r != pki.RoleWorker {
		t.Fatalf("the stripped tree is a %s", r)
	}

	o := opts(first, "ca")
	o.Generate = true
	mustPhase(t, carotate.PhaseTrust, o)
	p1, _ := carotate.PathsOf(first, "ca")

	// Second control-plane node.
	o2 := opts(second, "ca")
	o2.NewCA = newCA(t, p1.NewCert, p1.NewKey)
	mustPhase(t, carotate.PhaseTrust, o2)
	p2, _ := carotate.PathsOf(second, "ca")
	for _, f := range []string{carotate.NewCertName, carotate.NewKeyName, carotate.BundleName} {
		if !bytes.Equal(read(t, filepath.Join(p1.Dir, f)), read(t, filepath.Join(p2.Dir, f))) {
			t.Errorf("second node: %s differs from the first node's", f)
		}
	}
	// The same files again are "already done"; another new CA is refused.
	if r := mustPhase(t, carotate.PhaseTrust, o2); !r.AlreadyDone {
		t.Error("second node: trust again with the same CA is not a no-op")
	}
	other := opts(second, "ca")
	crt, key := caFiles(t, second, t.TempDir(), "other")
	other.NewCA = newCA(t, crt, key)
	if _, err := carotate.Trust(other); err == nil || !strings.Contains(err.Error(), "another new CA") {
		t.Errorf("second node: trust with a different new CA: %v", err)
	}
	o.Generate = false
	mustPhase(t, carotate.PhaseIssue, o)
	mustPhase(t, carotate.PhaseIssue, o2)
	newCA1 := certs(t, filepath.Join(first.PKIDir, "ca.crt"))[0]
	if !certs(t, filepath.Join(second.PKIDir, "ca.crt"))[0].Equal(newCA1) {
		t.Error("second node: ca.crt is not the first node's new CA")
	}
	if c := certs(t, filepath.Join(second.PKIDir, "apiserver.crt"))[0]; c.CheckSignatureFrom(newCA1) != nil {
		t.Error("second node: apiserver.crt is not signed by the shared new CA")
	}

	// Worker: the certificate alone. Its kubelet's clientCAFile, ca.crt, gets the bundle in
	// place (a 1.36+ kubelet reloads it; the caller checks), kubelet.conf the bundle for the
	// kubelet's next restart: no restart asked for.
	ow := opts(wk, "ca")
	ow.NewCA = newCA(t, p1.NewCert, "")
	pw, _ := carotate.PathsOf(wk, "ca")
	caCrt := filepath.Join(wk.PKIDir, "ca.crt")
	oldCA := read(t, caCrt)
	before := snapshot(t, wk)
	trustWorker := func() {
		t.Helper()
		r := mustPhase(t, carotate.PhaseTrust, ow)
		if len(r.Restart) != 0 || r.KubeletClientCA != caCrt {
			t.Errorf("worker trust: restart %v, kubelet client CA in place %q; want none, %s", r.Restart, r.KubeletClientCA, caCrt)
		}
		after := snapshot(t, wk)
		for p := range after {
			if before[p] != after[p] && !strings.HasPrefix(p, pw.Dir) && p != caCrt && p != filepath.Join(wk.KubeconfigDir, "kubelet.conf") {
				t.Errorf("worker trust changed %s", p)
			}
		}
		if _, err := os.Stat(pw.NewKey); err == nil {
			t.Error("worker trust wrote a CA key")
		}
		if got := kubeletClientCAFile(t, wk); got != "/etc/kubernetes/pki/ca.crt" {
			t.Errorf("worker trust: clientCAFile %s, want it left on ca.crt", got)
		}
		if !bytes.Equal(read(t, caCrt), read(t, pw.Bundle)) {
			t.Error("worker trust: ca.crt is not the bundle")
		}
		if ca, _ := kubeconfigCA(t, filepath.Join(wk.KubeconfigDir, "kubelet.conf")); len(ca) != 2 {
			t.Errorf("worker trust: kubelet.conf trusts %d certificates, want the bundle's 2", len(ca))
		}
	}
	trustWorker()
	// Its rollback puts ca.crt back in place: the kubelet reloads it again.
	back := ow
	back.RollbackPhase = carotate.PhaseTrust
	if r, err := carotate.Rollback(back); err != nil || r.KubeletClientCA != caCrt || len(r.Restart) != 0 {
		t.Fatalf("worker rollback of trust: %v; kubelet client CA in place %q, restart %v", err, r.KubeletClientCA, r.Restart)
	}
	if !bytes.Equal(read(t, caCrt), oldCA) {
		t.Error("worker rollback of trust: ca.crt is not the old CA again")
	}
	trustWorker()
	r := mustPhase(t, carotate.PhaseIssue, ow)
	if cs := certs(t, caCrt); len(cs) != 1 || !cs[0].Equal(newCA1) || len(r.Notes) == 0 {
		t.Errorf("worker issue: ca.crt is not the new CA alone, or no note about the kubelet's certificate (%v)", r.Notes)
	}
	if r.KubeletClientCA != caCrt {
		t.Errorf("worker issue: kubelet client CA in place %q, want %s", r.KubeletClientCA, caCrt)
	}
	if _, err := carotate.Drop(ow); err == nil || !strings.Contains(err.Error(), "kubelet.conf") || !strings.Contains(err.Error(), "certctl kubelet-client renew") {
		t.Fatalf("worker drop with the kubelet's certificate from the old CA: %v", err)
	}
	// What the kubelet's CSR (signed by the controller-manager with the new CA) brings.
	newKey, err := pki.ParsePrivateKey(p1.NewKey, read(t, p1.NewKey))
	if err != nil {
		t.Fatal(err)
	}
	issued, err := kubeletclient.Issue(kubeletclient.IssueOptions{Layout: wk, Node: "master-1", CA: &pki.Item{Certs: []*x509.Certificate{newCA1}, Key: newKey}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kubeletclient.Install(wk, issued.Pair, "test: kubelet rotation", issued.Cert.NotBefore); err != nil {
		t.Fatal(err)
	}
	mustPhase(t, carotate.PhaseDrop, ow)
	if got := kubeletClientCAFile(t, wk); got != "/etc/kubernetes/pki/ca.crt" {
		t.Errorf("worker drop: clientCAFile %s, want kubeadm's /etc/kubernetes/pki/ca.crt", got)
	}
	if ca, _ := kubeconfigCA(t, filepath.Join(wk.KubeconfigDir, "kubelet.conf")); !sameCerts(ca, []*x509.Certificate{newCA1}) {
		t.Errorf("worker drop: kubelet.conf trusts %d certificates, want the new CA alone", len(ca))
	}
}
