package restart

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/certctl/certctl/pkg/manifest"
	"github.com/certctl/certctl/pkg/pki"
)

// ProcessStopper does what CRI StopContainer with a short timeout does, through the host's
// process table: once the manifest has left the manifests dir (the kubelet has sent SIGTERM),
// it gives the component's process its Grace to exit and then SIGKILLs it, instead of waiting out
// the apiserver's ~30 s drain (shared/LAB.md: 34-37 s down with the drain, 7-8 s without).
// The process is the one whose binary is the component's and whose command line carries the
// manifest's own identifying flag (its port or client URLs), so nothing else is touched. It
// needs the host's PID namespace (certctl on the node, or hostPID in a pod).
type ProcessStopper struct {
	Layout pki.Layout
	Grace  StopGrace // per component, DefaultStopGrace
	Proc   string    // default /proc
}

// binaries are the components' binaries, which are also their container names in kubeadm's
// static pods (the CRI stopper finds containers by them).
var binaries = map[string]string{
	pki.CompEtcd: "etcd", pki.CompAPIServer: "kube-apiserver",
	pki.CompControllerManager: "kube-controller-manager", pki.CompScheduler: "kube-scheduler",
}

// identifying flags: one of these, with the manifest's value, must be on the command line.
var identifying = []string{"secure-port", "listen-client-urls", "listen-peer-urls"}

// Stop finds the component's processes and SIGKILLs those still alive after Grace.
func (s ProcessStopper) Stop(ctx context.Context, component string) error {
	if s.Proc == "" {
		s.Proc = "/proc"
	}
	file, ok := manifest.Files[component]
	if !ok {
		return fmt.Errorf("unknown component %q", component)
	}
	staged := filepath.Join(stagingDir(s.Layout), file)
	pod, err := manifest.Load(staged)
	if err != nil {
		return err
	}
	flags := pod.Flags()
	var want []string
	for _, f := range identifying {
		if v, ok := flags[f]; ok {
			want = append(want, "--"+f+"="+v)
		}
	}
	if len(want) == 0 {
		return fmt.Errorf("%s has no flag that identifies its process", staged)
	}
	pids, err := s.find(binaries[component], want)
	if err != nil {
		return err
	}
	if len(pids) == 0 {
		return fmt.Errorf("no %s process with %s found in %s", binaries[component], strings.Join(want, " "), s.Proc)
	}
	// At least 1 s: without the CRI certctl cannot see when the kubelet noticed the manifest
	// left, and a process gone before that is, to the kubelet, a crash to back off from.
	deadline := time.Now().Add(max(s.Grace.For(component), time.Second))
	for _, pid := range pids {
		for alive(pid) && time.Now().Before(deadline) {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(20 * time.Millisecond):
			}
		}
		if alive(pid) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	return nil
}

func (s ProcessStopper) find(binary string, want []string) ([]int, error) {
	entries, err := os.ReadDir(s.Proc)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", s.Proc, err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(s.Proc, e.Name(), "cmdline"))
		if err != nil || len(raw) == 0 {
			continue
		}
		args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		if filepath.Base(args[0]) != binary {
			continue
		}
		if matchesAll(args[1:], want) {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

func matchesAll(args, want []string) bool {
	for _, w := range want {
		found := false
		for _, a := range args {
			if a == w {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	// A zombie (exited, not yet reaped by its parent) is not running any more.
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	if i := strings.LastIndexByte(string(stat), ')'); i > 0 && i+2 < len(stat) {
		return stat[i+2] != 'Z'
	}
	return true
}
