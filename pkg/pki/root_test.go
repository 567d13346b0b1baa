package pki_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/sandbox"
)

// The kubelet writes absolute links (kubelet-client-current.pem ->
// /var/lib/kubelet/pki/kubelet-client-<date>.pem) and kubelet.conf names the link by its
// absolute node path. Under --root both must be read inside the root, not in the filesystem
// certctl runs in.
func TestLoadFollowsAbsoluteLinksUnderRoot(t *testing.T) {
	root := t.TempDir()
	l, err := sandbox.Create(sandbox.Options{Dir: root, KeyAlgorithm: pki.AlgECDSAP256})
	if err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(l.KubeletDir, "pki", "kubelet-client-current.pem")
	target, err := os.Readlink(link)
	if err != nil {
		t.Fatal(err)
	}
	if !filepath.IsAbs(target) || strings.HasPrefix(target, root) {
		t.Fatalf("sandbox link %s -> %s: want an absolute node path as the kubelet writes", link, target)
	}
	inv := pki.Load(l, pki.Default())
	for _, name := range []string{"kubelet-client", "kubelet.conf"} {
		it := inv.Get(name)
		if it == nil {
			t.Fatalf("%s: not in the inventory", name)
		}
		if it.Missing || it.CertErr != nil || it.KeyErr != nil || it.Cert() == nil || it.Key == nil {
			t.Errorf("%s: missing=%v certErr=%v keyErr=%v: want the certificate and key read through the link under the root", name, it.Missing, it.CertErr, it.KeyErr)
			continue
		}
		if want := filepath.Join(root, target); it.KeyPath != want {
			t.Errorf("%s: key read from %s, want %s", name, it.KeyPath, want)
		}
		if got := it.Cert().Subject.CommonName; !strings.HasPrefix(got, "system:node:") {
			t.Errorf("%s: CN %q, want the kubelet's client certificate", name, got)
		}
	}
}

// Links and ".." never lead out of the root, whatever they name.
func TestUnderRootStaysInside(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir() // a real directory outside the root, which links try to reach
	mustLink := func(target, name string) {
		t.Helper()
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "var/lib/kubelet/pki"), 0o755); err != nil {
		t.Fatal(err)
	}
	mustLink("/var/lib/kubelet/pki/kubelet-client-2026.pem", "var/lib/kubelet/pki/kubelet-client-current.pem")
	mustLink(outside, "etc/kubernetes")                          // absolute, to a directory that exists on this machine
	mustLink("../../../../../../../../"+outside, "srv/up")       // relative, climbing past "/"
	mustLink("/var/lib/kubelet/pki", "var/lib/kubelet/pki-link") // absolute link to a directory in the node
	tests := []struct{ in, want string }{
		{"/var/lib/kubelet/pki/kubelet-client-current.pem", "/var/lib/kubelet/pki/kubelet-client-2026.pem"},
		{"/etc/kubernetes/pki/ca.crt", outside + "/pki/ca.crt"},
		{"/srv/up/x", outside + "/x"},
		{"/var/lib/kubelet/pki-link/kubelet.crt", "/var/lib/kubelet/pki/kubelet.crt"},
		{"../../etc", "/etc"},
		{"/../../etc/passwd", "/etc/passwd"},
		{"relative/../../../x", "/x"},
		{root + "/var/lib/kubelet/pki/kubelet-client-current.pem", "/var/lib/kubelet/pki/kubelet-client-2026.pem"},
	}
	for _, tc := range tests {
		got := pki.UnderRoot(root, tc.in)
		if want := filepath.Join(root, tc.want); got != want {
			t.Errorf("UnderRoot(root, %q) = %q, want %q", tc.in, got, want)
		}
		if again := pki.UnderRoot(root, got); again != got {
			t.Errorf("UnderRoot twice: %q, then %q", got, again)
		}
	}
	// Every path a layout derives from flags stays inside the root too.
	l := pki.NewLayout(pki.LayoutOptions{Root: root, PKIDir: "../../etc/pki", KubeconfigDir: "/../../k", ManifestsDir: "../m",
		KubeletDir: "/var/../../../kubelet", UserKubeconfig: "../../../home/ops/.kube/config", Home: "/home/ops"})
	for _, p := range []string{l.PKIDir, l.KubeconfigDir, l.ManifestsDir, l.KubeletDir, l.UserKubeconfig, l.BackupRoot(), l.StateDir()} {
		if !strings.HasPrefix(p, root+string(filepath.Separator)) {
			t.Errorf("layout path %s is outside the root %s", p, root)
		}
	}
}
