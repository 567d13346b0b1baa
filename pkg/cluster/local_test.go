package cluster_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/cluster"
)

// TestLocal: the operator's kubeconfigs (here copies of admin.conf written by the real
// kubeadm) follow the cluster: found once each under the root, moved to the new endpoint,
// made to trust the new bundle; each change said, nothing said when nothing changed.
func TestLocal(t *testing.T) {
	tr := testenv.KubeadmTree(t, testenv.TreeOptions{})
	admin := filepath.Join(tr.Layout.KubeconfigDir, "admin.conf")
	data, err := os.ReadFile(admin)
	if err != nil {
		t.Fatal(err)
	}
	user := filepath.Join(tr.Root, "root", ".kube", "config")
	if err := os.MkdirAll(filepath.Dir(user), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(user, data, 0o600); err != nil {
		t.Fatal(err)
	}
	rel := func(p string) string { return "/" + strings.TrimPrefix(p, tr.Root+"/") }
	l := cluster.LocalKubeconfigs(tr.Root, rel(admin), "", rel(user), rel(admin), "/nowhere/config")
	if len(l.Kubeconfigs) != 2 || l.Kubeconfigs[0] != admin || l.Kubeconfigs[1] != user {
		t.Fatalf("kubeconfigs %v, want %s and %s", l.Kubeconfigs, admin, user)
	}
	cfg, err := clientcmd.Load(data)
	if err != nil {
		t.Fatal(err)
	}
	var from string
	var ca []byte
	for _, c := range cfg.Clusters {
		from, ca = c.Server, c.CertificateAuthorityData
	}
	said, err := l.MoveServer(from, "https://10.2.1.139:6443")
	if err != nil || len(said) != 2 || !strings.Contains(said[1], "now https://10.2.1.139:6443") {
		t.Fatalf("move: %v, %q", err, said)
	}
	if said, err := l.MoveServer(from, "https://10.2.1.139:6443"); err != nil || len(said) != 0 {
		t.Errorf("move again: %v, %q (want nothing to say)", err, said)
	}
	bundle := append(append([]byte{}, ca...), ca...)
	said, err = l.Trust(ca, bundle)
	if err != nil || len(said) != 2 || !strings.Contains(said[0], "trust what the cluster serves now") {
		t.Fatalf("trust: %v, %q", err, said)
	}
	for _, p := range l.Kubeconfigs {
		got, err := clientcmd.LoadFromFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for name, c := range got.Clusters {
			if c.Server != "https://10.2.1.139:6443" || string(c.CertificateAuthorityData) != string(bundle) {
				t.Errorf("%s: cluster %s: server %s, CA %d bytes", p, name, c.Server, len(c.CertificateAuthorityData))
			}
		}
	}
	// A kubeconfig that no longer parses: named, with what was done before it.
	if err := os.WriteFile(user, []byte("apiVersion: v1\nclusters: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if said, err := l.Trust(bundle, ca); err == nil || !strings.Contains(err.Error(), user) || len(said) != 1 {
		t.Errorf("a broken kubeconfig: %v, %q", err, said)
	}
}
