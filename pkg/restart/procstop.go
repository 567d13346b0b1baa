package restart

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/procfs"
	"golang.org/x/sys/unix"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/certctl/certctl/pkg/manifest"
	"github.com/certctl/certctl/pkg/pki"
)

// ProcessStopper does what CRI StopContainer with a short timeout does, through the process
// table: once the manifest has left the manifests dir (the kubelet has sent SIGTERM), it gives
// the component's process its Grace to exit and then SIGKILLs it, instead of waiting out the
// apiserver's ~30 s drain (shared/LAB.md: 34-37 s down with the drain, 7-8 s without).
//
// A process qualifies only when all of these hold, so nothing of another node is touched:
// its binary is the component's; its command line carries the manifest's own identifying flag
// (its port or client URLs); and it belongs to the node's kubelet (Node): it shares the
// kubelet's network namespace, or runs in a cgroup under the kubelet's cgroup root. Several
// nodes may share one PID namespace (the multi-node lab), with identical command lines. The
// kill goes through a pidfd opened after checking the process's start time, so a PID reused in
// between is never signalled. It needs the host's PID namespace (certctl on the node, or
// hostPID in a pod).
type ProcessStopper struct {
	Layout pki.Layout
	Node   *Node     // the node's kubelet (FindNode); required
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

// target is one process to stop, pinned by a pidfd.
type target struct {
	pid   int
	start uint64
	fd    int
}

// Stop finds the component's processes on the node and SIGKILLs those still alive after Grace.
func (s ProcessStopper) Stop(ctx context.Context, component string) error {
	if s.Proc == "" {
		s.Proc = "/proc"
	}
	if s.Node == nil {
		return errors.New("process stopper: no kubelet given (FindNode)")
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
	targets, err := s.find(binaries[component], want)
	if err != nil {
		return err
	}
	defer func() {
		for _, t := range targets {
			unix.Close(t.fd)
		}
	}()
	if len(targets) == 0 {
		return fmt.Errorf("no %s process with %s found on the node of kubelet %d (%s)", binaries[component], strings.Join(want, " "), s.Node.PID, s.Proc)
	}
	// At least 1 s: without the CRI certctl cannot see when the kubelet noticed the manifest
	// left, and a process gone before that is, to the kubelet, a crash to back off from.
	grace := max(s.Grace.For(component), time.Second)
	for _, t := range targets {
		err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, grace, true, func(context.Context) (bool, error) {
			return !s.running(t), nil
		})
		if err != nil && ctx.Err() != nil {
			return ctx.Err()
		}
		if s.running(t) {
			if err := unix.PidfdSendSignal(t.fd, unix.SIGKILL, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("kill %s (pid %d): %w", binaries[component], t.pid, err)
			}
		}
	}
	return nil
}

// running reports whether the target still runs: /proc/PID/stat exists, is not a zombie and
// has the start time it had when it was found.
func (s ProcessStopper) running(t target) bool {
	st, err := procStat(s.Proc, t.pid)
	return err == nil && st.State != "Z" && st.Starttime == t.start
}

// find returns the node's processes of binary whose command line has every want flag, each
// pinned by a pidfd opened before its start time was checked once more.
func (s ProcessStopper) find(binary string, want []string) ([]target, error) {
	fs, err := procfs.NewFS(s.Proc)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", s.Proc, err)
	}
	procs, err := fs.AllProcs()
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", s.Proc, err)
	}
	var out []target
	for _, p := range procs {
		args, err := p.CmdLine()
		if err != nil || len(args) == 0 || filepath.Base(args[0]) != binary || !matchesAll(args[1:], want) {
			continue
		}
		if !s.Node.sameNode(p) {
			continue
		}
		st, err := p.Stat()
		if err != nil || st.State == "Z" {
			continue
		}
		fd, err := unix.PidfdOpen(p.PID, 0)
		if err != nil {
			continue // exited meanwhile
		}
		// The pidfd names whatever process has the PID now: check it is still the one read.
		if now, err := procStat(s.Proc, p.PID); err != nil || now.Starttime != st.Starttime {
			unix.Close(fd)
			continue
		}
		out = append(out, target{pid: p.PID, start: st.Starttime, fd: fd})
	}
	return out, nil
}

func matchesAll(args, want []string) bool {
	for _, w := range want {
		if !slices.Contains(args, w) {
			return false
		}
	}
	return true
}
