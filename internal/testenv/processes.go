package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

var (
	sleeperOnce sync.Once
	sleeperDir  string
	sleeperErr  error
	sleeperOut  []byte
)

// Named returns the path of a binary called name that takes any arguments and sleeps until
// SIGKILL (it ignores SIGTERM): a process that looks, in /proc, like a node's kubelet or
// kube-apiserver. It is built once per test process (testdata/sleeper); RemoveCertctl deletes it.
func Named(t testing.TB, name string) string {
	t.Helper()
	sleeperOnce.Do(func() {
		sleeperDir, sleeperErr = os.MkdirTemp("", "certctl-procs-")
		if sleeperErr != nil {
			return
		}
		sleeperOut, sleeperErr = goBuild(filepath.Join(sleeperDir, "sleeper"), "./internal/testenv/testdata/sleeper")
	})
	if sleeperErr != nil {
		t.Fatalf("build the sleeper: %v\n%s", sleeperErr, sleeperOut)
	}
	dir := filepath.Join(sleeperDir, name)
	bin := filepath.Join(dir, name)
	if _, err := os.Stat(bin); err != nil {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Link(filepath.Join(sleeperDir, "sleeper"), bin); err != nil && !os.IsExist(err) {
			t.Fatal(err)
		}
	}
	return bin
}

// StartProcess starts cmd (from Named) and kills it at cleanup. It returns once the process
// shows its command line in /proc: exec.Cmd.Start returns when the child has left its old
// memory (vfork) or closed its close-on-exec pipe, both before the kernel has set up the new
// program's arguments, and until then /proc/PID/cmdline reads empty: a process table read in
// that window (certctl's node discovery) does not see a kubelet yet.
func StartProcess(t testing.TB, cmd *exec.Cmd) *exec.Cmd {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	if err := WaitCmdline(cmd.Process.Pid, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	return cmd
}

// WaitCmdline waits until the process pid has a command line in /proc (its exec done), at
// most timeout.
func WaitCmdline(pid int, timeout time.Duration) error {
	path := fmt.Sprintf("/proc/%d/cmdline", pid)
	var last error
	err := wait.PollUntilContextTimeout(context.Background(), 5*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		b, err := os.ReadFile(path)
		last = err
		return err == nil && len(b) > 0, nil
	})
	if err != nil {
		return fmt.Errorf("process %d shows no command line in %s after %s (%v)", pid, path, timeout, last)
	}
	return nil
}

// StartFakeKubelet starts a process named kubelet whose --config (a KubeletConfiguration
// written into a temp dir) has staticPodPath manifestsDir and the given extra lines, as a
// node's kubelet looks to certctl's node discovery. It runs until cleanup.
func StartFakeKubelet(t testing.TB, manifestsDir string, configLines ...string) *exec.Cmd {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	data := fmt.Sprintf("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nstaticPodPath: %s\n", manifestsDir)
	for _, l := range configLines {
		data += l + "\n"
	}
	if err := os.WriteFile(cfg, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return StartProcess(t, exec.Command(Named(t, "kubelet"), "--config="+cfg))
}
