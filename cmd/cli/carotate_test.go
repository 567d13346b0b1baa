package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certctl/certctl/pkg/sandbox"
)

// TestCARotateCLI drives certctl ca rotate through the command line on sandbox trees, step
// by step: the refusals, a dry run, the three phases of "all", the re-run of a done phase,
// rollback, and inspect afterwards. The second tree's kubelet serves a certificate of the
// cluster CA (serverTLSBootstrap), which issue re-issues and rollback swings back.
func TestCARotateCLI(t *testing.T) {
	root := sandboxTree(t, sandbox.Options{Faults: []sandbox.Fault{sandbox.FaultKubeletNoIPSANs}})
	bootstrap := sandboxTree(t, sandbox.Options{})
	steps := []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{"no phase", []string{"--root", root, "ca", "rotate", "ca"}, ExitError, "", "give --phase trust, issue or drop"},
		{"unknown CA", []string{"--root", root, "ca", "rotate", "kubelet-ca", "--phase", "trust"}, ExitError, "", `unknown CA "kubelet-ca"`},
		{"unknown phase", []string{"--root", root, "ca", "rotate", "ca", "--phase", "swap"}, ExitError, "", `--phase "swap"`},
		{"--new-ca-key alone", []string{"--root", root, "ca", "rotate", "ca", "--phase", "trust", "--new-ca-key", "/x.key"}, ExitError, "", "--new-ca-key needs --new-ca-cert"},
		{"--new-ca-cert with all", []string{"--root", root, "ca", "rotate", "all", "--phase", "trust", "--new-ca-cert", "/etc/kubernetes/pki/ca.crt"}, ExitError, "", "names one CA's files"},
		{"missing --new-ca-cert file", []string{"--root", root, "ca", "rotate", "ca", "--phase", "trust", "--new-ca-cert", "/nope.crt"}, ExitError, "", "nope.crt: no such file"},
		{"rollback before anything", []string{"--root", root, "ca", "rotate", "ca", "--rollback"}, ExitError, "", "no rotation phase to roll back"},
		{"dry run", []string{"--root", root, "ca", "rotate", "all", "--phase", "trust", "--generate", "--dry-run"}, ExitOK, "would change (dry run, nothing changed)", ""},
		{"trust all", []string{"--root", root, "ca", "rotate", "all", "--phase", "trust", "--generate"}, ExitOK, "restart to use the new files: certctl restart apiserver controller-manager etcd kubelet scheduler", ""},
		{"trust again", []string{"--root", root, "ca", "rotate", "all", "--phase", "trust", "--generate"}, ExitOK, "phase trust already done", ""},
		{"drop too early", []string{"--root", root, "ca", "rotate", "ca", "--phase", "drop"}, ExitError, "", "--phase issue first"},
		{"issue all", []string{"--root", root, "ca", "rotate", "all", "--phase", "issue"}, ExitOK, "apiserver re-issued by the new CA", ""},
		{"rollback all", []string{"--root", root, "ca", "rotate", "all", "--rollback"}, ExitOK, "phase rollback issue changed", ""},
		{"issue all again", []string{"--root", root, "ca", "rotate", "all", "--phase", "issue"}, ExitOK, "etcd-server re-issued by the new CA", ""},
		{"drop all", []string{"--root", root, "ca", "rotate", "all", "--phase", "drop"}, ExitOK, "--client-ca-file: /etc/kubernetes/pki/rotation/ca/bundle.crt -> /etc/kubernetes/pki/ca.crt", ""},
		{"drop again", []string{"--root", root, "ca", "rotate", "all", "--phase", "drop"}, ExitOK, "phase drop already done", ""},

		{"bootstrap: trust", []string{"--root", bootstrap, "ca", "rotate", "ca", "--phase", "trust", "--generate"}, ExitOK, "phase trust changed", ""},
		{"bootstrap: issue", []string{"--root", bootstrap, "ca", "rotate", "ca", "--phase", "issue"}, ExitOK, "kubelet client certificate of master-1 re-issued", ""},
		{"bootstrap: issue again", []string{"--root", bootstrap, "ca", "rotate", "ca", "--phase", "issue"}, ExitOK, "phase issue already done", ""},
		{"bootstrap: rollback", []string{"--root", bootstrap, "ca", "rotate", "ca", "--rollback"}, ExitOK, "kubelet-server-current.pem: points at /var/lib/kubelet/pki/kubelet-server-", ""},
		{"bootstrap: issue after rollback", []string{"--root", bootstrap, "ca", "rotate", "ca", "--phase", "issue"}, ExitOK, "kubelet serving certificate re-issued by the new CA", ""},
		{"bootstrap: drop", []string{"--root", bootstrap, "ca", "rotate", "ca", "--phase", "drop"}, ExitOK, "phase drop changed", ""},
	}
	for _, s := range steps {
		code, out, errOut := run(t, s.args...)
		if code != s.code || !strings.Contains(out, s.stdout) || !strings.Contains(errOut, s.stderr) {
			t.Fatalf("%s: certctl %s: exit %d (want %d)\nstdout:\n%s\nstderr:\n%s\nwant stdout %q, stderr %q", s.name, strings.Join(s.args, " "), code, s.code, out, errOut, s.stdout, s.stderr)
		}
	}
	// After the whole rotation, inspect finds nothing wrong with the trust of either node.
	for _, r := range []string{root, bootstrap} {
		code, out, _ := run(t, "--root", r, "inspect")
		for _, bad := range []string{"not-signed-by-ca", "kubeconfig-ca-mismatch", "ca-rotation-due"} {
			if strings.Contains(out, bad) {
				t.Errorf("inspect after the rotation (exit %d) reports %s:\n%s", code, bad, out)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(root, "etc/kubernetes/pki/rotation/ca/old.key")); err != nil {
		t.Errorf("the old CA key is not kept after drop: %v", err)
	}
}
