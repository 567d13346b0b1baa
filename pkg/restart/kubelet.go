package restart

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"
	"github.com/prometheus/procfs"
	"golang.org/x/sys/unix"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/certctl/certctl/pkg/failpoint"
	"github.com/certctl/certctl/pkg/kubelet"
	"github.com/certctl/certctl/pkg/pki"
)

// KubeletRestarter restarts this node's kubelet, wherever certctl runs (on the node, or in a pod with
// hostPID and the host at --root). The kubelet is found as the process whose --config is the
// node's config.yaml (the same file, compared by device and inode), never by name; then:
//
//   - a kubelet in the systemd unit kubelet.service (kubeadm's packages) is restarted by
//     systemd: `systemctl restart kubelet` on the host, or the same request on systemd's private
//     D-Bus socket (/proc/1/root/run/systemd/private) from a container, which has no systemctl;
//   - a kubelet whose parent is a supervisor (runit, s6, supervisord, the labs' loop: any live
//     parent that is not PID 1) gets SIGTERM through a pidfd, and certctl waits for the
//     supervisor to start a new one with the same config;
//   - a kubelet nothing would start again is not touched: the error says so.
//
// Restart returns once a new kubelet process runs; kubelet.WaitHealthy says when it serves.
type KubeletRestarter struct {
	Layout  pki.Layout
	Proc    string        // default /proc
	Timeout time.Duration // for the new kubelet to appear; default 1m
	// Node is the kubelet already found by its static pods (FindNode), if any; otherwise it
	// is found by the layout's config.yaml, or by the manifests dir when that file is absent.
	Node *Node
}

var _ kubelet.Restarter = KubeletRestarter{}

// ErrUnsupervised says the kubelet would not come back if certctl stopped it.
var ErrUnsupervised = errors.New("the kubelet is neither a systemd unit nor run by a supervisor")

// Restart restarts the node's kubelet (see KubeletRestarter).
func (k KubeletRestarter) Restart(ctx context.Context) error {
	if k.Proc == "" {
		k.Proc = "/proc"
	}
	if k.Timeout <= 0 {
		k.Timeout = time.Minute
	}
	find := k.finder()
	n := k.Node
	if n == nil {
		var err error
		if n, err = find(); err != nil {
			var none *ErrNoKubelet
			if errors.As(err, &none) && (k.Layout.Root == "" || k.Layout.Root == "/") {
				// No kubelet running at all on this machine: systemd may still start one.
				return kubelet.Systemd{Root: "/"}.Restart(ctx)
			}
			return err
		}
	}
	how, err := k.manager(n)
	if err != nil {
		return err
	}
	if _, err := failpoint.BeforeRestart(ctx, k.Layout, "kubelet"); err != nil {
		return err
	}
	switch how {
	case "systemd":
		if err := k.systemd(ctx); err != nil {
			return err
		}
	default:
		if err := signalPID(k.Proc, n.PID, n.StartTime, unix.SIGTERM); err != nil {
			return fmt.Errorf("stop the kubelet (pid %d): %w", n.PID, err)
		}
	}
	var last string
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, k.Timeout, true, func(context.Context) (bool, error) {
		m, err := find()
		if err != nil {
			last = err.Error()
			return false, nil
		}
		if m.PID == n.PID && m.StartTime == n.StartTime {
			last = fmt.Sprintf("the old kubelet (pid %d) still runs", n.PID)
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("no new kubelet within %s after restarting it through %s: %s", k.Timeout, how, last)
	}
	return nil
}

// finder finds the node's kubelet: by its static pods when Node came from FindNode, else by
// the layout's config.yaml, else by the manifests dir.
func (k KubeletRestarter) finder() func() (*Node, error) {
	if k.Node != nil && k.Node.ManifestsDir != "" {
		return func() (*Node, error) { return FindNode(k.Proc, k.Node.ManifestsDir) }
	}
	config := filepath.Join(k.Layout.KubeletDir, "config.yaml")
	if _, err := os.Stat(config); err != nil && k.Layout.ManifestsDir != "" {
		if _, err := os.Stat(k.Layout.ManifestsDir); err == nil {
			return func() (*Node, error) { return FindNode(k.Proc, k.Layout.ManifestsDir) }
		}
	}
	return func() (*Node, error) { return FindKubelet(k.Proc, config) }
}

// manager says what restarts the kubelet n: "systemd" or "supervisor".
func (k KubeletRestarter) manager(n *Node) (string, error) {
	fs, err := procfs.NewFS(k.Proc)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", k.Proc, err)
	}
	p, err := fs.Proc(n.PID)
	if err != nil {
		return "", fmt.Errorf("read the kubelet (pid %d): %w", n.PID, err)
	}
	if cgs, err := p.Cgroups(); err == nil {
		for _, cg := range cgs {
			if strings.HasSuffix(cg.Path, "/kubelet.service") {
				return "systemd", nil
			}
		}
	}
	st, err := p.Stat()
	if err != nil {
		return "", fmt.Errorf("read the kubelet (pid %d): %w", n.PID, err)
	}
	if st.PPID > 1 {
		if parent, err := procStat(k.Proc, st.PPID); err == nil && parent.State != "Z" {
			return "supervisor", nil
		}
	}
	return "", fmt.Errorf("%w (pid %d, parent %d): certctl will not stop it (nothing would start it again): restart the kubelet yourself, however this node runs it, and rerun with --no-restart", ErrUnsupervised, n.PID, st.PPID)
}

// systemd restarts kubelet.service: systemctl when certctl shares the host's mount namespace,
// systemd's private D-Bus socket (reached through PID 1's root) from a container.
func (k KubeletRestarter) systemd(ctx context.Context) error {
	self, err1 := os.Readlink(filepath.Join(k.Proc, "self/ns/mnt"))
	host, err2 := os.Readlink(filepath.Join(k.Proc, "1/ns/mnt"))
	if err1 == nil && err2 == nil && self == host {
		return kubelet.Systemd{Root: "/"}.Restart(ctx)
	}
	socket := filepath.Join(k.Proc, "1/root/run/systemd/private")
	conn, err := sddbus.NewConnection(func() (*godbus.Conn, error) {
		c, err := godbus.Dial("unix:path=" + socket)
		if err != nil {
			return nil, err
		}
		if err := c.Auth([]godbus.Auth{godbus.AuthExternal(strconv.Itoa(os.Getuid()))}); err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	})
	if err != nil {
		return fmt.Errorf("connect to systemd at %s (the pod needs hostPID and root): %w", socket, err)
	}
	defer conn.Close()
	done := make(chan string, 1)
	if _, err := conn.RestartUnitContext(ctx, "kubelet.service", "replace", done); err != nil {
		return fmt.Errorf("systemd: restart kubelet.service: %w", err)
	}
	select {
	case r := <-done:
		if r != "done" {
			return fmt.Errorf("systemd: restart kubelet.service: %s (journalctl -u kubelet on the node says why)", r)
		}
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// signalPID sends sig to pid through a pidfd, after checking the PID still names the process
// that started at start (a PID reused in between is never signalled).
func signalPID(proc string, pid int, start uint64, sig unix.Signal) error {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if st, err := procStat(proc, pid); err != nil || st.Starttime != start {
		return fmt.Errorf("pid %d is no longer the process found", pid)
	}
	return unix.PidfdSendSignal(fd, sig, nil, 0)
}
