package testenv

import (
	"crypto/x509"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certctl/certctl/pkg/pki"
)

// UploadConfig stores the tree's kubeadm configuration in the control plane's
// kube-system/kubeadm-config ConfigMap the way kubeadm init does: by running the real
// `kubeadm init phase upload-config kubeadm` with the control plane's admin.conf.
func (tr *Tree) UploadConfig(t testing.TB, cp *ControlPlane) {
	t.Helper()
	args := []string{"init", "phase", "upload-config", "kubeadm", "--config", filepath.Join(tr.Root, "kubeadm.yaml"), "--kubeconfig", cp.AdminKubeconfig(t)}
	out, err := exec.Command(tr.kubeadm, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("kubeadm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// CertsFromConfig runs the real `kubeadm init phase certs NAME` in a new root that holds only
// the tree's CAs, with the given ClusterConfiguration document (e.g. the one in the
// kubeadm-config ConfigMap) and the tree's InitConfiguration, and returns the new root's PKI
// dir: what kubeadm would make of that configuration on the next join or init phase.
func (tr *Tree) CertsFromConfig(t testing.TB, clusterConfiguration, name string) string {
	t.Helper()
	cfg, err := os.ReadFile(filepath.Join(tr.Root, "kubeadm.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	initCfg, _, _ := strings.Cut(string(cfg), "---")
	root := t.TempDir()
	pkiDir := filepath.Join(root, "etc", "kubernetes", "pki")
	if err := os.MkdirAll(filepath.Join(pkiDir, "etcd"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"ca.crt", "ca.key", "etcd/ca.crt", "etcd/ca.key", "front-proxy-ca.crt", "front-proxy-ca.key"} {
		data, err := os.ReadFile(filepath.Join(tr.Layout.PKIDir, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(pkiDir, f), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	doc := strings.TrimRight(initCfg, "\n") + "\n---\n" + clusterConfiguration
	if err := os.WriteFile(filepath.Join(root, "kubeadm.yaml"), []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	other := &Tree{Root: root, kubeadm: tr.kubeadm}
	other.Kubeadm(t, "init", "phase", "certs", name)
	return pkiDir
}

// CertFile parses the first certificate of the PEM file at path.
func CertFile(t testing.TB, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := pki.ParseCertificates(path, data)
	if err != nil {
		t.Fatal(err)
	}
	return certs[0]
}
