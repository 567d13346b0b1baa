package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
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

// StartProcess starts cmd (from Named) and kills it at cleanup.
func StartProcess(t testing.TB, cmd *exec.Cmd) *exec.Cmd {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd
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
