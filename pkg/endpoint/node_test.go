package endpoint_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/backup"
	"github.com/certctl/certctl/pkg/endpoint"
	"github.com/certctl/certctl/pkg/kubeconfig"
)

type failingRestart struct{ calls *int }

func (f failingRestart) Restart(context.Context) error {
	*f.calls++
	return errors.New("no init system here")
}

func snapshot(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, n := range []string{"admin.conf", "super-admin.conf", "kubelet.conf", "controller-manager.conf", "scheduler.conf"} {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		out[n] = b
	}
	return out
}

func server(t *testing.T, path string) string {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(kubeconfig.Servers(cfg), ",")
}

// TestSetServerOnKubeadmTree: on the kubeconfigs the real kubeadm of each release in the
// matrix wrote, a dry run changes nothing; the move points admin.conf, super-admin.conf and
// kubelet.conf at the new server, leaves controller-manager.conf and scheduler.conf (the
// node's own apiserver) alone, backs up first and keeps modes; a kubelet that cannot be
// restarted is an error with the files in place; a second run changes nothing; a malformed
// kubeconfig stops everything before a write. From kubeadm 1.35 on
// (ControlPlaneKubeletLocalMode) kubelet.conf names the node's own apiserver: it stays.
func TestSetServerOnKubeadmTree(t *testing.T) {
	for _, v := range testenv.MatrixVersions {
		t.Run(v, func(t *testing.T) { testSetServer(t, v) })
	}
}

func testSetServer(t *testing.T, version string) {
	tr := testenv.KubeadmTree(t, testenv.TreeOptions{Version: version, Node: true})
	dir := tr.Layout.KubeconfigDir
	before := snapshot(t, dir)
	from := server(t, filepath.Join(dir, "admin.conf"))
	const to = "https://10.2.1.139:6443"
	localMode := testenv.AtLeast(t, version, "v1.35")
	if got := server(t, filepath.Join(dir, "kubelet.conf")); localMode != (got == "https://10.2.1.151:6443") {
		t.Fatalf("kubeadm %s wrote kubelet.conf for %s: local mode expected %v", version, got, localMode)
	}
	moved := []string{"admin.conf", "super-admin.conf", "kubelet.conf"}
	if localMode {
		moved = moved[:2]
	}
	var out bytes.Buffer
	res, err := endpoint.SetServer(context.Background(), endpoint.Options{Layout: tr.Layout, To: "10.2.1.139:6443", DryRun: true, Out: &out})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Changed) != len(moved) || res.From != from {
		t.Fatalf("dry run: %+v (from %s), want %v moved", res, from, moved)
	}
	if localMode {
		if len(res.Unchanged) != 1 || res.Unchanged[0].Local != "https://10.2.1.151:6443" {
			t.Errorf("dry run: kubelet.conf not reported as kept on the node's own apiserver: %+v", res.Unchanged)
		}
	}
	for n, b := range snapshot(t, dir) {
		if !bytes.Equal(b, before[n]) {
			t.Fatalf("the dry run changed %s", n)
		}
	}

	calls := 0
	res, err = endpoint.SetServer(context.Background(), endpoint.Options{Layout: tr.Layout, To: "10.2.1.139:6443", Restart: failingRestart{&calls}, Out: &out})
	if localMode {
		// kubelet.conf is not touched: no restart is needed.
		if err != nil || calls != 0 || res.KubeletRestarted {
			t.Fatalf("local mode: %v (%d restarts), want no kubelet restart", err, calls)
		}
		if !bytes.Equal(snapshot(t, dir)["kubelet.conf"], before["kubelet.conf"]) {
			t.Errorf("kubelet.conf changed: it names the node's own apiserver (ControlPlaneKubeletLocalMode)")
		}
	} else if err == nil || !strings.Contains(err.Error(), "could not be restarted") || calls != 1 {
		t.Fatalf("a kubelet that cannot be restarted: %v (%d calls)", err, calls)
	}
	after := snapshot(t, dir)
	for _, n := range moved {
		if got := server(t, filepath.Join(dir, n)); got != to {
			t.Errorf("%s names %s, want %s", n, got, to)
		}
		st, _ := os.Stat(filepath.Join(dir, n))
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600 kept", n, st.Mode().Perm())
		}
	}
	for _, n := range []string{"controller-manager.conf", "scheduler.conf"} {
		if !bytes.Equal(after[n], before[n]) {
			t.Errorf("%s changed: it names the node's own apiserver", n)
		}
	}
	m, err := backup.Load(tr.Layout, res.BackupID)
	if err != nil || len(m.Files) != len(moved) {
		t.Fatalf("backup %s: %v %+v", res.BackupID, err, m)
	}

	res, err = endpoint.SetServer(context.Background(), endpoint.Options{Layout: tr.Layout, To: to, From: from, NoRestart: true, Out: &out})
	if err != nil || len(res.Changed) != 0 || res.BackupID != "" {
		t.Fatalf("second run: %+v %v, want nothing changed", res, err)
	}

	// Malformed: nothing written, the error names the file.
	if err := os.WriteFile(filepath.Join(dir, "super-admin.conf"), []byte("clusters: [oops"), 0o600); err != nil {
		t.Fatal(err)
	}
	kubeletBefore, _ := os.ReadFile(filepath.Join(dir, "kubelet.conf"))
	_, err = endpoint.SetServer(context.Background(), endpoint.Options{Layout: tr.Layout, To: "10.9.9.9:6443", From: to, NoRestart: true})
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "super-admin.conf")) {
		t.Fatalf("malformed super-admin.conf: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "kubelet.conf")); !bytes.Equal(b, kubeletBefore) {
		t.Errorf("kubelet.conf was written although super-admin.conf did not parse")
	}
	// Bad address.
	if _, err := endpoint.SetServer(context.Background(), endpoint.Options{Layout: tr.Layout, To: "http://x:1"}); err == nil {
		t.Errorf("an http:// server was accepted")
	}
}
