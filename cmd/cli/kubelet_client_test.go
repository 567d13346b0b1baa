package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certctl/certctl/pkg/sandbox"
)

// TestKubeletClientCLI drives kubelet-client and kubelet-serving manifest through the command
// line on sandbox trees: the wiring, the exit codes, and the messages.
func TestKubeletClientCLI(t *testing.T) {
	root := sandboxTree(t, sandbox.Options{})
	cp2 := sandboxTree(t, sandbox.Options{})
	worker := sandboxTree(t, sandbox.Options{})
	if err := os.Remove(filepath.Join(worker, "etc/kubernetes/pki/ca.key")); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "master-1.pem")
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{"issue needs -o", []string{"--root", root, "kubelet-client", "issue", "master-1"}, ExitError, "", "-o FILE is required"},
		{"issue refuses a bad node name", []string{"--root", root, "kubelet-client", "issue", "Bad_Name", "-o", file}, ExitError, "", `node name "Bad_Name" is not valid`},
		{"issue", []string{"--root", root, "kubelet-client", "issue", "master-1", "-o", file}, ExitOK, "install it on master-1", ""},
		{"install", []string{"--root", root, "kubelet-client", "install", file, "--no-restart", "--no-wait"}, ExitOK, "the kubelet was NOT restarted", ""},
		{"renew on a worker without a token", []string{"--root", worker, "kubelet-client", "renew", "--no-restart"}, ExitError, "", "give --server, --token and --discovery-token-ca-cert-hash"},
		{"renew with a malformed token", []string{"--root", worker, "kubelet-client", "renew", "--server", "127.0.0.1:1", "--token", "x", "--discovery-token-ca-cert-hash", "sha256:00"}, ExitError, "", "--token: not a bootstrap token"},
		{"renew on a control-plane node", []string{"--root", cp2, "kubelet-client", "renew", "--no-restart", "--no-wait"}, ExitOK, "kubelet-client-current.pem -> /var/lib/kubelet/pki/kubelet-client-", ""},
		{"manifest needs an image", []string{"kubelet-serving", "manifest"}, ExitError, "", "--image is required"},
		{"manifest", []string{"kubelet-serving", "manifest", "--image", "registry.example/certctl:v1"}, ExitOK, "kind: Deployment", ""},
		{"approve --leader-elect needs --watch", []string{"--root", root, "kubelet-serving", "approve", "--all", "--leader-elect", "--kubeconfig", "/etc/kubernetes/admin.conf"}, ExitError, "", "go with --watch"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := run(t, tc.args...)
			if code != tc.code || !strings.Contains(out, tc.stdout) || !strings.Contains(errOut, tc.stderr) {
				t.Errorf("exit %d, stdout %q, stderr %q; want %d, %q, %q", code, out, errOut, tc.code, tc.stdout, tc.stderr)
			}
		})
	}
	if st, err := os.Stat(file); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("%s: %v %v, want mode 0600", file, st, err)
	}
}

// TestKubeletServingEnableOnWorker: without admin credentials, enable does the node's part
// and says where the CSR is approved instead of failing with "no kubeconfig found".
func TestKubeletServingEnableOnWorker(t *testing.T) {
	// case A: the kubelet serves a self-signed certificate, serverTLSBootstrap is off.
	worker := sandboxTree(t, sandbox.Options{Faults: []sandbox.Fault{sandbox.FaultKubeletNoIPSANs}})
	for _, f := range []string{"etc/kubernetes/admin.conf", "etc/kubernetes/super-admin.conf", "root/.kube/config"} {
		if err := os.Remove(filepath.Join(worker, f)); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	t.Setenv("HOME", "/root")
	code, out, errOut := run(t, "--root", worker, "kubelet-serving", "enable", "--no-restart")
	if code != ExitOK || !strings.Contains(out, "certctl kubelet-serving approve --node master-1") || !strings.Contains(out, "the kubelet was NOT restarted") {
		t.Errorf("exit %d\n%s\n%s", code, out, errOut)
	}
	cfg, _ := os.ReadFile(filepath.Join(worker, "var/lib/kubelet/config.yaml"))
	if !strings.Contains(string(cfg), "serverTLSBootstrap: true") || !strings.Contains(out, "serverTLSBootstrap: true (backup") {
		t.Errorf("config.yaml not changed:\n%s", cfg)
	}
	// --cluster needs admin credentials: refused.
	code, _, errOut = run(t, "--root", sandboxTree(t, sandbox.Options{}), "kubelet-serving", "enable", "--cluster", "--kubeconfig", "/nope.conf")
	if code != ExitError || !strings.Contains(errOut, "no kubeconfig found") {
		t.Errorf("--cluster with a missing kubeconfig: exit %d, %s", code, errOut)
	}
}

// TestInspectThenRenewKubeletClient: inspect's remedy for a missing kubelet client
// certificate is kubelet-client renew, and running it makes the finding go away.
func TestInspectThenRenewKubeletClient(t *testing.T) {
	root := sandboxTree(t, sandbox.Options{})
	if err := os.Remove(filepath.Join(root, "var/lib/kubelet/pki/kubelet-client-current.pem")); err != nil {
		t.Fatal(err)
	}
	code, out, _ := run(t, "--root", root, "inspect")
	if code != ExitCritical || !strings.Contains(out, "certctl kubelet-client renew (on a worker: certctl kubelet-client renew --server") || strings.Contains(out, "kubeadm reset") {
		t.Fatalf("inspect: exit %d, want 2 and the kubelet-client renew remedy:\n%s", code, out)
	}
	if code, out, errOut := run(t, "--root", root, "kubelet-client", "renew", "--no-restart", "--no-wait"); code != ExitOK {
		t.Fatalf("renew: exit %d\n%s\n%s", code, out, errOut)
	}
	if code, out, _ := run(t, "--root", root, "inspect"); code != ExitOK || strings.Contains(out, "kubelet-client renew") {
		t.Errorf("inspect after renew: exit %d\n%s", code, out)
	}
}
