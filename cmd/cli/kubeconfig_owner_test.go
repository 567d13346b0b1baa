package cli

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/certctl/certctl/pkg/kubeconfig"
	"github.com/certctl/certctl/pkg/sandbox"
)

// TestKubeconfigRefreshKeepsOwner: root refreshes an operator's kubeconfig; the file stays the
// operator's, with its mode, and a new one is created as the operator's.
func TestKubeconfigRefreshKeepsOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown the target to another user")
	}
	const uid, gid = 1000, 1001
	tests := []struct {
		name     string
		existing bool
		wantMode os.FileMode
	}{
		{"existing file, mode 0640", true, 0o640},
		{"new file in the user's home", false, 0o600},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := sandboxTree(t, sandbox.Options{})
			home := filepath.Join(root, "home/ops")
			if err := os.MkdirAll(home, 0o750); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(home, uid, gid); err != nil {
				t.Fatal(err)
			}
			dst := filepath.Join(home, ".kube/config")
			if tc.existing {
				if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.Chown(filepath.Dir(dst), uid, gid); err != nil {
					t.Fatal(err)
				}
				other := clientcmdapi.Config{
					Clusters:       map[string]*clientcmdapi.Cluster{"prod": {Server: "https://127.0.0.9:6443"}},
					AuthInfos:      map[string]*clientcmdapi.AuthInfo{"prod-admin": {Token: "secret"}},
					Contexts:       map[string]*clientcmdapi.Context{"prod": {Cluster: "prod", AuthInfo: "prod-admin"}},
					CurrentContext: "prod",
				}
				if err := clientcmd.WriteToFile(other, dst); err != nil {
					t.Fatal(err)
				}
				if err := os.Chown(dst, uid, gid); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(dst, 0o640); err != nil {
					t.Fatal(err)
				}
			}
			code, out, errOut := run(t, "--root", root, "kubeconfig", "refresh", "--to", "/home/ops/.kube/config")
			if code != ExitOK || !strings.Contains(out, "now uses admin.conf's credentials") {
				t.Fatalf("exit %d\n%s%s", code, out, errOut)
			}
			for _, p := range []string{filepath.Dir(dst), dst} {
				st, err := os.Stat(p)
				if err != nil {
					t.Fatal(err)
				}
				sys := st.Sys().(*syscall.Stat_t)
				if sys.Uid != uid || sys.Gid != gid {
					t.Errorf("%s: owner %d:%d, want %d:%d", p, sys.Uid, sys.Gid, uid, gid)
				}
			}
			st, _ := os.Stat(dst)
			if st.Mode().Perm() != tc.wantMode {
				t.Errorf("%s: mode %o, want %o", dst, st.Mode().Perm(), tc.wantMode)
			}
			cfg, creds, err := kubeconfig.Load(dst)
			if err != nil {
				t.Fatal(err)
			}
			_, admin, err := kubeconfig.Load(filepath.Join(root, "etc/kubernetes/admin.conf"))
			if err != nil {
				t.Fatal(err)
			}
			if tc.existing {
				if _, ok := cfg.Clusters["prod"]; !ok {
					t.Errorf("the other cluster was dropped: %v", cfg.Clusters)
				}
				creds, _ = kubeconfig.CurrentCredentials(dst, &clientcmdapi.Config{Clusters: cfg.Clusters, AuthInfos: cfg.AuthInfos, Contexts: cfg.Contexts, CurrentContext: admin.Context})
			}
			if creds == nil || string(creds.CertData) != string(admin.CertData) {
				t.Errorf("%s does not carry admin.conf's certificate", dst)
			}
		})
	}
}
