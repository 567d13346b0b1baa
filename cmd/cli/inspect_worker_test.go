package cli

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/sandbox"
)

// TestInspectWorkerExitsOK: on a worker as kubeadm join leaves it (pki/ca.crt only,
// kubelet.conf, an empty manifests dir), inspect says "worker" and exits 0: monitoring that
// alerts on exit codes stays quiet.
func TestInspectWorkerExitsOK(t *testing.T) {
	root := sandboxTree(t, sandbox.Options{})
	l := pki.NewLayout(pki.LayoutOptions{Root: root, Home: "/root"})
	testenv.ToWorker(t, l)

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
