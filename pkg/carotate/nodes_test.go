package carotate_test

import (
	"bytes"
	"crypto/x509"
	"os"
	"path/filepath"
	"slices"
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
// kubelet's files, and its drop waits until the kubelet's client certificate is the new CA's.
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

	// Worker: the certificate alone.
	ow := opts(wk, "ca")
	ow.NewCA = newCA(t, p1.NewCert, "")
	before := snapshot(t, wk)
	r := mustPhase(t, carotate.PhaseTrust, ow)
	if !slices.Equal(r.Restart, []string{"kubelet"}) {
		t.Errorf("worker trust: restart %v, want [kubelet]", r.Restart)
	}
	pw, _ := carotate.PathsOf(wk, "ca")
	after := snapshot(t, wk)
	for p := range after {
		if before[p] != after[p] && !strings.HasPrefix(p, pw.Dir) && p != filepath.Join(wk.KubeletDir, "config.yaml") && p != filepath.Join(wk.KubeconfigDir, "kubelet.conf") {
			t.Errorf("worker trust changed %s", p)
		}
	}
	if _, err := os.Stat(pw.NewKey); err == nil {
		t.Error("worker trust wrote a CA key")
	}
	if got := kubeletClientCAFile(t, wk); got != wk.NodePath(pw.Bundle) {
		t.Errorf("worker: clientCAFile %s", got)
	}
	r = mustPhase(t, carotate.PhaseIssue, ow)
	if !certs(t, filepath.Join(wk.PKIDir, "ca.crt"))[0].Equal(newCA1) || len(r.Notes) == 0 {
		t.Errorf("worker issue: ca.crt is not the new CA, or no note about the kubelet's certificate (%v)", r.Notes)
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
