package restart_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/restart"
	"k8s.io/apimachinery/pkg/util/wait"
)

const stagedAPIServer = "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: kube-apiserver\n    command: [kube-apiserver, --secure-port=%s]\n"

// stageAPIServer puts an apiserver manifest with port into l's staging dir, as restart does.
func stageAPIServer(t *testing.T, l pki.Layout, port string) {
	t.Helper()
	staging := filepath.Join(l.StateDir(), "staging")
	if err := os.MkdirAll(staging, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(staging, "kube-apiserver.yaml"), []byte(strings.ReplaceAll(stagedAPIServer, "%s", port)), 0o600); err != nil {
		t.Fatal(err)
	}
}

// netns runs argv in a network namespace of its own (unshare -n execs it: same command line).
func netns(argv ...string) *exec.Cmd {
	return exec.Command("unshare", append([]string{"--net", "--"}, argv...)...)
}

// exitedBy waits for cmd and returns the signal that ended it.
func exitedBy(t *testing.T, done <-chan error, cmd *exec.Cmd, within time.Duration) (syscall.Signal, bool) {
	t.Helper()
	select {
	case <-done:
		ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
		return ws.Signal(), ok && ws.Signaled()
	case <-time.After(within):
		return 0, false
	}
}

// TestProcessStopperOnlyItsNode: two fake kube-apiservers with identical command lines (same
// binary, same --secure-port), one in the host's network namespace and one in a namespace of
// its own, as two nodes sharing a PID namespace; the node's kubelet is in one of them. Only
// the apiserver of the kubelet's network namespace is killed, after its grace (it ignores
// SIGTERM, as a draining apiserver), through a pidfd; the other is untouched.
func TestProcessStopperOnlyItsNode(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("unshare --net needs root")
	}
	if err := exec.Command("unshare", "--net", "true").Run(); err != nil {
		t.Skipf("no network namespaces here: %v", err)
	}
	apiserver := testenv.Named(t, "kube-apiserver")
	for _, kubeletInOwnNS := range []bool{false, true} {
		name := map[bool]string{false: "kubelet in the host netns", true: "kubelet in its own netns"}[kubeletInOwnNS]
		t.Run(name, func(t *testing.T) {
			l := tree(t)
			cfg := filepath.Join(t.TempDir(), "config.yaml")
			os.WriteFile(cfg, []byte("staticPodPath: "+l.ManifestsDir+"\n"), 0o644)
			kubeletArgv := []string{testenv.Named(t, "kubelet"), "--config=" + cfg}
			var hostAPI, nsAPI *exec.Cmd
			hostAPI = testenv.StartProcess(t, exec.Command(apiserver, "--secure-port=16443"))
			if kubeletInOwnNS {
				// The kubelet and "its" apiserver share one new namespace: a shell in it starts both.
				sh := netns("sh", "-c", `"$0" "$1" & exec "$2" "$3"`, kubeletArgv[0], kubeletArgv[1], apiserver, "--secure-port=16443")
				nsAPI = testenv.StartProcess(t, sh)
			} else {
				testenv.StartProcess(t, exec.Command(kubeletArgv[0], kubeletArgv[1]))
				nsAPI = testenv.StartProcess(t, netns(apiserver, "--secure-port=16443"))
			}
			ours, other := hostAPI, nsAPI
			if kubeletInOwnNS {
				ours, other = nsAPI, hostAPI
			}
			var node *restart.Node
			var lastErr error
			// The shell may still be starting the kubelet.
			err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
				node, lastErr = restart.FindNode("", l.ManifestsDir)
				return lastErr == nil, nil
			})
			if err != nil {
				t.Fatalf("%v: %v", err, lastErr)
			}
			if kubeletInOwnNS { // the shell's background child: not ours to wait for
				t.Cleanup(func() { syscall.Kill(node.PID, syscall.SIGKILL) })
			}
			stageAPIServer(t, l, "16443")
			waitCmdline(t, ours.Process.Pid, "--secure-port=16443")
			waitCmdline(t, other.Process.Pid, "--secure-port=16443")
			oursDone, otherDone := make(chan error, 1), make(chan error, 1)
			go func() { oursDone <- ours.Wait() }()
			go func() { otherDone <- other.Wait() }()
			start := time.Now()
			s := restart.ProcessStopper{Layout: l, Node: node, Grace: restart.StopGrace{pki.CompAPIServer: 200 * time.Millisecond}}
			if err := s.Stop(context.Background(), pki.CompAPIServer); err != nil {
				t.Fatal(err)
			}
			if sig, ok := exitedBy(t, oursDone, ours, 10*time.Second); !ok || sig != syscall.SIGKILL {
				t.Fatalf("the node's apiserver was not SIGKILLed (signal %v)", sig)
			}
			if d := time.Since(start); d < time.Second {
				t.Errorf("killed after %s, before its grace (at least 1 s)", d)
			}
			if _, ok := exitedBy(t, otherDone, other, 300*time.Millisecond); ok {
				t.Fatal("the other node's apiserver (same command line, other network namespace) was killed")
			}
			// Nothing left on this node: a clear error, and still the other one untouched.
			if err := s.Stop(context.Background(), pki.CompAPIServer); err == nil || !strings.Contains(err.Error(), "no kube-apiserver process with --secure-port=16443 found on the node of kubelet") {
				t.Errorf("second stop: %v", err)
			}
			if _, ok := exitedBy(t, otherDone, other, 100*time.Millisecond); ok {
				t.Fatal("the other node's apiserver was killed by the second stop")
			}
		})
	}
}

// waitCmdline waits until pid runs kube-apiserver with arg: until unshare and the shell have
// exec'd it (their own command lines carry both words too, so only argv[0] tells).
func waitCmdline(t *testing.T, pid int, arg string) {
	t.Helper()
	var b []byte
	err := wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		b, _ = os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
		args := strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
		return filepath.Base(args[0]) == "kube-apiserver" && slices.Contains(args[1:], arg), nil
	})
	if err != nil {
		t.Fatalf("process %d never ran with %s: %q", pid, arg, b)
	}
}
