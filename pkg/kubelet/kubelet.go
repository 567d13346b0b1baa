// Package kubelet restarts the kubelet and waits until it is healthy and serves what it
// should. The kubelet is a systemd service on kubeadm nodes; where systemd does not run (a
// container, a copy of a node under --root), Restart says what to do instead.
package kubelet

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"time"

	"github.com/certctl/certctl/pkg/live"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
)

// ErrNoSystemd is returned by Restart when the kubelet cannot be restarted from here.
var ErrNoSystemd = errors.New("no systemd on this node")

// NoRestartNotice is what a command that wrote kubelet files under --no-restart tells the
// operator: the running kubelet keeps what it loaded at start.
func NoRestartNotice(what string) string {
	return fmt.Sprintf("--no-restart: the kubelet was NOT restarted and still uses what it loaded at start; restart it now to pick up %s (systemctl restart kubelet, or however this node runs it)", what)
}

// Restarter restarts the kubelet. Tests and callers on other init systems plug in their own.
type Restarter interface {
	Restart(ctx context.Context) error
}

// Systemd restarts the kubelet through systemctl when systemd runs and root is "/".
type Systemd struct {
	Root string // the --root certctl works under; only "/" is this machine
}

// Restart runs `systemctl restart kubelet`.
func (s Systemd) Restart(ctx context.Context) error {
	if s.Root != "" && s.Root != "/" {
		return fmt.Errorf("%w: certctl works on %s, not on this machine's root: restart the kubelet on that node (systemctl restart kubelet)", ErrNoSystemd, s.Root)
	}
	if _, err := os.Stat("/run/systemd/system"); err != nil {
		return fmt.Errorf("%w (/run/systemd/system is missing): restart the kubelet with this node's init system (e.g. `service kubelet restart`, or kill it and let its supervisor start it), then rerun with --no-restart", ErrNoSystemd)
	}
	out, err := exec.CommandContext(ctx, "systemctl", "restart", "kubelet").CombinedOutput()
	if err != nil {
		return fmt.Errorf("systemctl restart kubelet: %v: %s", err, out)
	}
	return nil
}

// WaitOptions say what "healthy" means.
type WaitOptions struct {
	HealthzURL  string // default http://127.0.0.1:10248/healthz
	ServingAddr string // default 127.0.0.1:10250
	// Serving, when set, must accept the chain served on ServingAddr (signed by the cluster
	// CA and covering the node's addresses, say).
	Serving func(chain []*x509.Certificate) error
	Timeout time.Duration // default 2m
	Poll    time.Duration // default 500ms
	// Self, when set (certctl runs in a pod on the node: a node Job), must be listed by the
	// kubelet's pod-resources API at PodResources: the restarted kubelet's sync loop runs and
	// has its pods again (see NotSyncingError). certctl's own container ending before that
	// costs the node seconds: the new kubelet's cAdvisor, meeting a container whose cgroup is
	// still there but whose task is gone, retries it for 3.1 s before the kubelet's sync loop
	// starts (measured on the lab; docs/cluster.md).
	Self         *PodRef
	PodResources string
}

// WaitHealthy polls the kubelet's healthz and its serving endpoint until both are as
// wanted or the deadline passes; the error then says what it last saw.
func WaitHealthy(ctx context.Context, o WaitOptions) error {
	if o.HealthzURL == "" {
		o.HealthzURL = "http://127.0.0.1:10248/healthz"
	}
	if o.ServingAddr == "" {
		o.ServingAddr = "127.0.0.1:10250"
	}
	if o.Timeout == 0 {
		o.Timeout = 2 * time.Minute
	}
	if o.Poll == 0 {
		o.Poll = 500 * time.Millisecond
	}
	client := &http.Client{Timeout: 2 * time.Second}
	var last error
	err := wait.PollUntilContextTimeout(ctx, o.Poll, o.Timeout, true, func(ctx context.Context) (bool, error) {
		err := check(ctx, client, o)
		// A check cut short by the deadline says nothing: report the last one that finished.
		// The dial's own timer can fire at the deadline before the context's does, so the
		// deadline itself decides, not only ctx.Err.
		if err != nil && (last == nil || !cutByDeadline(ctx)) {
			last = err
		}
		return err == nil, nil
	})
	if err != nil {
		if last == nil {
			last = err
		}
		return fmt.Errorf("kubelet not ready after %s: %w", o.Timeout, last)
	}
	return nil
}

// cutByDeadline says whether ctx has ended or reached its deadline.
func cutByDeadline(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	d, ok := ctx.Deadline()
	return ok && !time.Now().Before(d)
}

func check(ctx context.Context, client *http.Client, o WaitOptions) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, o.HealthzURL, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("healthz: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthz: HTTP %d", resp.StatusCode)
	}
	chain, err := live.Served(ctx, o.ServingAddr, "", nil, 2*time.Second)
	if err != nil {
		return fmt.Errorf("serving endpoint: %w", err)
	}
	if o.Serving != nil {
		if err := o.Serving(chain); err != nil {
			return fmt.Errorf("serving certificate: %w", err)
		}
	}
	if o.Self != nil && o.PodResources != "" {
		return syncing(ctx, o.PodResources, *o.Self)
	}
	return nil
}

// NodeReadyOptions say which Node to wait for and since when.
type NodeReadyOptions struct {
	Node string
	// Since: the Ready condition must have been reported after this instant (its heartbeat,
	// or the node's Lease renewal), so a Ready left over from before a restart does not count.
	Since   time.Time
	Timeout time.Duration // default 2m
	Poll    time.Duration // default 1s
}

// WaitNodeReady polls the Node until its Ready condition is True and fresh (see Since). cs
// may be an admin's client or the node's own (the Node authorizer lets a kubelet read its
// Node and Lease).
func WaitNodeReady(ctx context.Context, cs kubernetes.Interface, o NodeReadyOptions) error {
	if o.Timeout == 0 {
		o.Timeout = 2 * time.Minute
	}
	if o.Poll == 0 {
		o.Poll = time.Second
	}
	var last error
	err := wait.PollUntilContextTimeout(ctx, o.Poll, o.Timeout, true, func(ctx context.Context) (bool, error) {
		n, err := cs.CoreV1().Nodes().Get(ctx, o.Node, metav1.GetOptions{})
		if err != nil {
			last = fmt.Errorf("get node %s: %w", o.Node, err)
			return false, nil
		}
		var ready *corev1.NodeCondition
		for i := range n.Status.Conditions {
			if n.Status.Conditions[i].Type == corev1.NodeReady {
				ready = &n.Status.Conditions[i]
			}
		}
		switch {
		case ready == nil:
			last = fmt.Errorf("node %s has no Ready condition yet", o.Node)
			return false, nil
		case ready.Status != corev1.ConditionTrue:
			last = fmt.Errorf("node %s is not Ready: %s %s", o.Node, ready.Reason, ready.Message)
			return false, nil
		case !ready.LastHeartbeatTime.Time.Before(o.Since.Truncate(time.Second)):
			return true, nil
		}
		lease, err := cs.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(ctx, o.Node, metav1.GetOptions{})
		if err == nil && lease.Spec.RenewTime != nil && !lease.Spec.RenewTime.Time.Before(o.Since) {
			return true, nil
		}
		last = fmt.Errorf("node %s is Ready, but its kubelet has not reported since %s", o.Node, o.Since.UTC().Format(time.RFC3339))
		return false, nil
	})
	if err != nil {
		if last == nil {
			last = err
		}
		return fmt.Errorf("node not Ready after %s: %w", o.Timeout, last)
	}
	return nil
}
