package kubeconfig

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

func TestNormalizeServer(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		bad      bool
	}{
		{in: "10.2.1.139:6443", want: "https://10.2.1.139:6443"},
		{in: "10.2.1.139", want: "https://10.2.1.139:6443"},
		{in: "https://lb.example.com:443/", want: "https://lb.example.com:443"},
		{in: "[fd00::1]:6443", want: "https://[fd00::1]:6443"},
		{in: "http://10.2.1.139:6443", bad: true},
		{in: "https://10.2.1.139:6443/some/path", bad: true},
		{in: "https://user@10.2.1.139:6443", bad: true},
		{in: "", bad: true},
	} {
		got, err := NormalizeServer(tc.in)
		if tc.bad != (err != nil) || got != tc.want {
			t.Errorf("NormalizeServer(%q) = %q, %v; want %q (error: %v)", tc.in, got, err, tc.want, tc.bad)
		}
	}
}

// TestMoveServerFile: only the entries on the old server move; the file keeps its mode; the old
// bytes are kept beside it; a file with nothing to move is not written; a malformed file is an
// error naming it and stays as it was.
func TestMoveServerFile(t *testing.T) {
	dir := t.TempDir()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["prod"] = &clientcmdapi.Cluster{Server: "https://10.2.1.151:6443"}
	cfg.Clusters["other"] = &clientcmdapi.Cluster{Server: "https://192.0.2.7:6443"}
	path := filepath.Join(dir, "config")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)
	moved, err := MoveServerFile(path, "10.2.1.151:6443", "https://10.2.1.139:6443")
	if err != nil || len(moved) != 1 || moved[0] != "prod" {
		t.Fatalf("moved %v, %v; want [prod]", moved, err)
	}
	got, err := clientcmd.LoadFromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.Clusters["prod"].Server != "https://10.2.1.139:6443" || got.Clusters["other"].Server != "https://192.0.2.7:6443" {
		t.Errorf("servers after the move: prod %s, other %s", got.Clusters["prod"].Server, got.Clusters["other"].Server)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640", st.Mode().Perm())
	}
	baks, _ := filepath.Glob(path + ".certctl-*")
	if len(baks) != 1 {
		t.Fatalf("backups %v, want one", baks)
	}
	if b, _ := os.ReadFile(baks[0]); string(b) != string(before) {
		t.Errorf("the backup is not the old file")
	}
	if moved, err := MoveServerFile(path, "10.2.1.151:6443", "https://10.2.1.139:6443"); err != nil || len(moved) != 0 {
		t.Errorf("second move: %v %v, want nothing", moved, err)
	}
	bad := filepath.Join(dir, "bad")
	os.WriteFile(bad, []byte("clusters: [not: a: kubeconfig"), 0o600)
	if _, err := MoveServerFile(bad, "a:1", "b:2"); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("malformed kubeconfig: %v", err)
	}
}
