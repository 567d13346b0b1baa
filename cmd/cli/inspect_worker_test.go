package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/sandbox"
)

// TestInspectWorkerExitsOK: on a worker as kubeadm join leaves it (pki/ca.crt only,
// kubelet.conf, an empty manifests dir), inspect says "worker" and exits 0: monitoring that
// alerts on exit codes stays quiet.
func TestInspectWorkerExitsOK(t *testing.T) {
	root := sandboxTree(t, sandbox.Options{})
	l := pki.NewLayout(pki.LayoutOptions{Root: root, Home: "/root"})
	entries, err := os.ReadDir(l.PKIDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != "ca.crt" {
			os.RemoveAll(filepath.Join(l.PKIDir, e.Name()))
		}
	}
	for _, f := range []string{"admin.conf", "super-admin.conf", "controller-manager.conf", "scheduler.conf"} {
		os.Remove(filepath.Join(l.KubeconfigDir, f))
	}
	os.RemoveAll(l.ManifestsDir)
	os.MkdirAll(l.ManifestsDir, 0o755)
	os.RemoveAll(filepath.Dir(l.UserKubeconfig))

	code, out, errOut := run(t, "--root", root, "inspect")
	if code != ExitOK || !strings.HasPrefix(out, "Node role: worker (") || !strings.Contains(out, "No findings.") {
		t.Errorf("inspect on a worker: exit %d\n%s\n%s", code, out, errOut)
	}
	code, out, _ = run(t, "--root", root, "inspect", "-o", "json")
	var doc struct{ Role string }
	if err := json.Unmarshal([]byte(out), &doc); err != nil || code != ExitOK || doc.Role != "worker" {
		t.Errorf("inspect -o json on a worker: exit %d, role %q, %v", code, doc.Role, err)
	}
}
