package cli

import (
	"strings"
	"testing"

	"github.com/certctl/certctl/pkg/sandbox"
)

func TestKubeletServingBadInput(t *testing.T) {
	root := sandboxTree(t, sandbox.Options{})
	tests := []struct {
		args   []string
		stderr string
	}{
		{[]string{"kubelet-serving", "status", "-o", "xml"}, `unknown output format "xml"`},
		{[]string{"kubelet-serving", "issue", "--node", "master-1"}, "give the node's IP with --ip"},
		{[]string{"kubelet-serving", "issue", "--node", "master-1", "--ip", "10.2.1.300"}, `invalid argument "10.2.1.300" for "--ip" flag`},
		{[]string{"kubelet-serving", "issue", "--node", "master-1", "--ip", "10.2.1.151", "--dns", "bad_name"}, `invalid argument "bad_name" for "--dns" flag`},
		{[]string{"kubelet-serving", "issue", "--node", "master-1", "--ip", "10.2.1.151", "--key-algorithm", "dsa"}, `unknown key algorithm "dsa"`},
		{[]string{"kubelet-serving", "approve"}, "name the CSRs to decide, or pass --all"},
		{[]string{"kubelet-serving", "approve", "--all", "--kubeconfig", "/nope.conf"}, "no kubeconfig found (tried " + root + "/nope.conf)"},
	}
	for _, tc := range tests {
		code, out, errOut := run(t, append([]string{"--root", root}, tc.args...)...)
		if code != ExitError || !strings.Contains(errOut, tc.stderr) {
			t.Errorf("%v: exit %d, stderr %q, stdout %q; want 3 and %q", tc.args, code, errOut, out, tc.stderr)
		}
	}
	// issue on the sandbox works end to end through the command line (no restart here).
	code, out, errOut := run(t, "--root", root, "kubelet-serving", "issue", "--node", "master-1", "--ip", "10.2.1.151", "--dns", "master-1", "--no-restart")
	if code != ExitOK || !strings.Contains(out, "kubelet-server-certctl.crt") || !strings.Contains(out, "serverTLSBootstrap is true") {
		t.Fatalf("issue: exit %d\n%s\n%s", code, out, errOut)
	}
}
