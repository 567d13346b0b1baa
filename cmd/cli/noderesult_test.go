package cli

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/certctl/certctl/pkg/noderesult"
	"github.com/certctl/certctl/pkg/sandbox"
)

// TestSetServerResultFile: the node command of `cluster endpoint` leaves its typed result in
// --result-file (outside --root, where a Job's termination message is), and the orchestrator's
// decision (wait for the kubelet or not) comes from its fields, not from the command's words.
func TestSetServerResultFile(t *testing.T) {
	root := sandboxTree(t, sandbox.Options{})
	for _, tc := range []struct {
		name string
		args []string
	}{
		// kubelet.conf on the node's own apiserver (ControlPlaneKubeletLocalMode): admin.conf
		// moves, no kubelet restart.
		{"local mode", []string{"kubeconfig", "set-server", "10.9.9.9:6443", "--no-restart"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := filepath.Join(t.TempDir(), "termination-log")
			code, out, errOut := run(t, append([]string{"--root", root, "--result-file", res}, tc.args...)...)
			if code != 0 {
				t.Fatalf("exit %d: %s %s", code, out, errOut)
			}
			data, err := os.ReadFile(res)
			if err != nil {
				t.Fatal(err)
			}
			r, err := noderesult.Parse(string(data))
			if err != nil {
				t.Fatal(err)
			}
			if r.Command != "kubeconfig set-server" || r.KubeletRestarted {
				t.Fatalf("result %+v, want set-server without a kubelet restart", r)
			}
		})
	}
}
