package testenv

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/certctl/certctl/pkg/pki"
)

// ToWorker strips a control-plane tree down to what kubeadm join leaves on a worker:
// /etc/kubernetes/pki/ca.crt (no ca.key), kubelet.conf, an empty manifests dir, the kubelet's
// files; no control-plane kubeconfigs, no ~/.kube/config.
func ToWorker(t testing.TB, l pki.Layout) {
	t.Helper()
	entries, err := os.ReadDir(l.PKIDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != "ca.crt" {
			if err := os.RemoveAll(filepath.Join(l.PKIDir, e.Name())); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, f := range []string{"admin.conf", "super-admin.conf", "controller-manager.conf", "scheduler.conf"} {
		if err := os.Remove(filepath.Join(l.KubeconfigDir, f)); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	if err := os.RemoveAll(l.ManifestsDir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(l.ManifestsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Remove(l.UserKubeconfig)
}
