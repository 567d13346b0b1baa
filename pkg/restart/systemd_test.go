package restart_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/restart"
	"k8s.io/apimachinery/pkg/util/wait"
)

// bootSystemd boots the machine's systemd as PID 1 of new PID, mount, UTS, cgroup and network
// namespaces, with a unit directory of its own (default.target wanting kubelet.service, whose
// ExecStart is execStart) over /etc/systemd/system and an empty one over the distribution's
// units, so nothing of the host starts. It returns systemd's PID (as the host sees it); the
// namespaces die with it at cleanup.
func bootSystemd(t *testing.T, execStart string) int {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("booting systemd in namespaces needs root")
	}
	if _, err := os.Stat("/lib/systemd/systemd"); err != nil {
		t.Skip("no systemd binary: apt-get install systemd")
	}
	cgroupRoot := "/sys/fs/cgroup/systemd" // cgroup v1's name=systemd hierarchy
	if _, err := os.Stat(filepath.Join(cgroupRoot, "cgroup.procs")); err != nil {
		t.Skipf("no cgroup v1 name=systemd hierarchy at %s (a cgroup v2 machine wants the unified mount instead)", cgroupRoot)
	}
	dir := t.TempDir()
	units, empty := filepath.Join(dir, "units"), filepath.Join(dir, "empty")
	os.MkdirAll(units, 0o755)
	os.MkdirAll(empty, 0o755)
	os.WriteFile(filepath.Join(units, "default.target"), []byte("[Unit]\nDescription=certctl test\nWants=kubelet.service\n"), 0o644)
	os.WriteFile(filepath.Join(units, "kubelet.service"), []byte(fmt.Sprintf(
		"[Unit]\nDescription=fake kubelet\nDefaultDependencies=no\n[Service]\nEnvironment=CERTCTL_FAKE_KUBELET_SERVE=1\nExecStart=%s\nKillSignal=SIGKILL\n", execStart)), 0o644)
	// The test's own cgroup becomes the namespace's root, so systemd manages only that subtree.
	cg := filepath.Join(cgroupRoot, "certctl-test-"+strconv.Itoa(os.Getpid())+"-"+strconv.FormatInt(time.Now().UnixNano(), 36))
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Fatal(err)
	}
	script := strings.Join([]string{
		"set -e",
		"mount --make-rprivate /",
		"mount --bind " + units + " /etc/systemd/system",
		"mount --bind " + empty + " /usr/lib/systemd/system",
		"mount -t tmpfs tmpfs /run",
		"mount -t tmpfs tmpfs /sys/fs/cgroup",
		"mkdir /sys/fs/cgroup/systemd",
		"mount -t cgroup -o none,name=systemd cgroup /sys/fs/cgroup/systemd",
		"ip link set lo up",
		"export container=certctl-test",
		"exec /lib/systemd/systemd --system",
	}, "\n")
	cmd := exec.Command("sh", "-c", `echo $$ > "$0"/cgroup.procs && exec unshare --pid --fork --kill-child --mount --mount-proc --uts --cgroup --net sh -c "$1"`, cg, script)
	log := filepath.Join(dir, "boot.log")
	lf, _ := os.Create(log)
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // unshare --kill-child: systemd, and so its namespace, dies too
		_ = cmd.Wait()
		// systemd made init.scope and system.slice/... below it: remove the tree bottom-up
		// once its processes are gone.
		_ = wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
			return removeCgroup(cg) == nil, nil
		})
	})
	// systemd is unshare's child.
	var pid int
	err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(cmd.Process.Pid), "task", strconv.Itoa(cmd.Process.Pid), "children"))
		if err != nil {
			return false, nil
		}
		f := strings.Fields(string(b))
		if len(f) == 0 {
			return false, nil
		}
		pid, _ = strconv.Atoi(f[0])
		exe, _ := os.Readlink(filepath.Join("/proc", f[0], "exe"))
		return strings.HasSuffix(exe, "/systemd"), nil
	})
	if err != nil {
		b, _ := os.ReadFile(log)
		t.Fatalf("systemd did not boot: %v\n%s", err, b)
	}
	return pid
}

// TestRestartKubeletThroughSystemd: `certctl restart kubelet` on a machine whose PID 1 is
// systemd: it finds the kubelet that runs the node's manifests dir (a kubelet.service of that
// systemd), runs systemctl restart kubelet, waits for its healthz and serving port, and checks
// that the kubelet running the manifests dir now is a new process.
func TestRestartKubeletThroughSystemd(t *testing.T) {
	l := tree(t)
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	os.WriteFile(cfg, []byte("staticPodPath: "+l.ManifestsDir+"\n"), 0o644)
	sd := bootSystemd(t, testenv.Named(t, "kubelet")+" --config="+cfg)
	var before *restart.Node
	err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, 20*time.Second, true, func(context.Context) (bool, error) {
		n, err := restart.FindNode("", l.ManifestsDir)
		before = n
		return err == nil, nil
	})
	if err != nil {
		out, _ := exec.Command("nsenter", "-t", strconv.Itoa(sd), "--mount", "--pid", "systemctl", "status", "kubelet", "--no-pager").CombinedOutput()
		t.Fatalf("systemd never started the kubelet:\n%s", out)
	}
	bin := testenv.Certctl(t)
	// certctl on the node: in its namespaces, the node's files named by flags (its root is "/",
	// which kubelet restarts through systemd require).
	out, err := exec.Command("nsenter", "-t", strconv.Itoa(sd), "--mount", "--pid", "--net", "--uts",
		bin, "--kubeconfig-dir", filepath.Dir(l.ManifestsDir), "--manifests-dir", l.ManifestsDir, "--kubelet-dir", l.KubeletDir,
		"restart", "kubelet", "--timeout", "30s").CombinedOutput()
	t.Logf("certctl restart kubelet:\n%s", out)
	if err != nil {
		t.Fatalf("certctl restart kubelet: %v", err)
	}
	after, err := restart.FindNode("", l.ManifestsDir)
	if err != nil {
		t.Fatal(err)
	}
	if after.PID == before.PID || !strings.Contains(string(out), "kubelet healthy") {
		t.Fatalf("the kubelet was not restarted: pid %d before, %d after", before.PID, after.PID)
	}
}

// removeCgroup removes a cgroup directory and the cgroups below it (rmdir, deepest first).
func removeCgroup(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.IsDir() {
			if err := removeCgroup(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	return os.Remove(dir)
}
