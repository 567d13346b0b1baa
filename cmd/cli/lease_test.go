package cli

import (
	"strings"
	"testing"

	"github.com/certctl/certctl/pkg/sandbox"
)

// TestLeaseFlags: bad --lease input is refused before anything is read or changed, and the
// manifest passes the Lease to every CronJob.
func TestLeaseFlags(t *testing.T) {
	root := sandboxTree(t, sandbox.Options{})
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{"--lease without a namespace", []string{"--root", root, "renew", "--yes", "--lease", "certctl-renew"}, ExitError, "", "want NAMESPACE/NAME"},
		{"--lease with a bad name", []string{"--root", root, "renew", "--yes", "--lease", "kube-system/Certctl_Renew"}, ExitError, "", `name "Certctl_Renew"`},
		{"negative --lease-wait", []string{"--root", root, "renew", "--yes", "--lease", "kube-system/certctl-renew", "--lease-wait", "-1s"}, ExitError, "", "--lease-wait -1s: must not be negative"},
		{"manifest: negative --lease-wait", []string{"schedule", "manifest", "--image", "r/c:v1", "--node", "cp-1", "--lease-wait", "-1m"}, ExitError, "", "--lease-wait -1m0s: must not be negative"},
		{"manifest: the lease and its RBAC", []string{"schedule", "manifest", "--image", "r/c:v1", "--node", "cp-1", "--lease-wait", "10m"}, ExitOK, `- "--lease"
            - "kube-system/certctl-renew"
            - "--lease-wait"
            - "10m0s"`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := run(t, tc.args...)
			if code != tc.code || !strings.Contains(out, tc.stdout) || !strings.Contains(errOut, tc.stderr) {
				t.Fatalf("exit %d (want %d)\nstdout:\n%s\nstderr:\n%s", code, tc.code, out, errOut)
			}
		})
	}
}
