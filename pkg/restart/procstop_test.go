package restart_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/restart"
)

// TestProcessStopperTargetsOnlyItsProcess: of two processes named kube-apiserver, only the
// one carrying the staged manifest's --secure-port is killed, and only after the grace
// period (it ignores SIGTERM here, like an apiserver draining).
func TestProcessStopperTargetsOnlyItsProcess(t *testing.T) {
	dir := t.TempDir()
	// A process named kube-apiserver: a copy of the shell, ignoring SIGTERM and sleeping.
	bin := filepath.Join(dir, "kube-apiserver")
	sh, err := os.ReadFile("/bin/sh")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(bin, sh, 0o755)
	start := func(port string) *exec.Cmd {
		cmd := exec.Command(bin, "-c", "trap '' TERM; while :; do sleep 1; done", "--secure-port="+port)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return cmd
	}
	ours, other := start("16443"), start("26443")
	l := pki.NewLayout(pki.LayoutOptions{Root: dir})
	staging := filepath.Join(l.StateDir(), "staging")
	os.MkdirAll(staging, 0o755)
	os.WriteFile(filepath.Join(staging, "kube-apiserver.yaml"), []byte("apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: kube-apiserver\n    command: [kube-apiserver, --secure-port=16443]\n"), 0o600)
	done := make(chan error, 1)
	go func() { done <- ours.Wait() }()
	if err := (restart.ProcessStopper{Layout: l, Grace: restart.StopGrace{"apiserver": 200 * time.Millisecond}}).Stop(context.Background(), "apiserver"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if ws, ok := ours.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
			t.Errorf("our process ended with %v, want SIGKILL", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("our process was not killed")
	}
	if err := other.Process.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("the other kube-apiserver (another port) was touched: %v", err)
	}
	os.WriteFile(filepath.Join(staging, "kube-apiserver.yaml"), []byte("apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: kube-apiserver\n    command: [kube-apiserver, --secure-port=36443]\n"), 0o600)
	if err := (restart.ProcessStopper{Layout: l}).Stop(context.Background(), "apiserver"); err == nil || !strings.Contains(err.Error(), "no kube-apiserver process with --secure-port=36443") {
		t.Errorf("no matching process: %v", err)
	}
}
