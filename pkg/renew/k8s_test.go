package renew_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// k8sBinary finds a Kubernetes binary built by hack/build-k8s.sh; it skips loudly (fails
// under CERTCTL_REQUIRE_K8S=1) when it is not there.
// TODO: switch to internal/testenv.Binary once branch testenv lands.
func k8sBinary(t *testing.T, name string) string {
	t.Helper()
	cache := os.Getenv("CERTCTL_CACHE") // as hack/build-k8s.sh
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "certctl")
	}
	p := filepath.Join(cache, "k8s-v1.32.4", "bin", name)
	if _, err := os.Stat(p); err != nil {
		msg := name + " not built: run hack/build-k8s.sh (" + p + ")"
		if os.Getenv("CERTCTL_REQUIRE_K8S") == "1" {
			t.Fatal(msg)
		}
		t.Skip("SKIPPING REAL-KUBEADM TEST: " + msg)
	}
	return p
}

// kubeadmTree makes a node tree with the real kubeadm through the project's script.
// TODO: switch to internal/testenv.KubeadmTree once branch testenv lands.
func kubeadmTree(t *testing.T, kubeadm, dir string) {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "..", "..", "bench", "kubeadm-tree.sh")
	cmd := exec.Command(script, dir)
	cmd.Env = append(os.Environ(), "KUBEADM="+kubeadm)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kubeadm tree: %v\n%s", err, out)
	}
}
