package restart

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/certctl/certctl/pkg/backup"
	"github.com/certctl/certctl/pkg/fsutil"
	"github.com/certctl/certctl/pkg/kubelet"
	"github.com/certctl/certctl/pkg/pki"
)

// Component names Request takes besides the static pods.
const (
	All     = "all"
	Kubelet = pki.CompKubelet
)

// Request is a restart as certctl's command line (or an in-cluster Job) asks for it: the
// components by name, or the renewal to roll out.
type Request struct {
	Layout        pki.Layout
	Timeout       time.Duration // each wait; default 3m
	ReloadTimeout time.Duration // a verify step's wait for a reload; default 30s
	Grace         StopGrace     // nil: DefaultStopGrace
	LockTimeout   time.Duration // default 30s
	Proc          string        // default /proc
	// Kubelet restarts the kubelet; nil: KubeletRestarter (systemd, or its supervisor).
	Kubelet kubelet.Restarter
	// KubeletWait says when the restarted kubelet is healthy (defaults: its healthz and
	// serving ports on loopback).
	KubeletWait kubelet.WaitOptions
	Out         io.Writer // the plan and the summary; nil discards
	Progress    *Progress // nil: plain lines on Out
	// Drain takes the apiserver out of the load balancer before it, or its etcd, is stopped;
	// nil: no.
	Drain *Drain
	// PeerWait bounds the wait for the other etcd members' health before an etcd restart;
	// default DefaultPeerWait.
	PeerWait time.Duration
	// Undo: the restart puts components back on the files from before a change one of them
	// did not come back on (Options.Undo).
	Undo bool
}

// Outcome is what Restart and AfterRenew did.
type Outcome struct {
	Node           *Node    `json:"-"`
	Steps          []Step   `json:"steps"`
	Results        []Result `json:"results"`
	KubeletRestart bool     `json:"kubeletRestarted"`
}

// ParseComponents turns names (etcd, apiserver, controller-manager, scheduler, kubelet, all)
// into steps in the safe order, each a plain restart, and whether the kubelet is asked for.
func ParseComponents(names []string) (steps []Step, withKubelet bool, err error) {
	if len(names) == 0 {
		return nil, false, fmt.Errorf("name the components to restart (or all)")
	}
	add := func(comp string) {
		if !slices.ContainsFunc(steps, func(s Step) bool { return s.Component == comp }) {
			steps = append(steps, Step{Component: comp, Action: ActionRestart, Reasons: []string{"asked"}})
		}
	}
	for _, a := range names {
		switch {
		case a == All:
			for _, comp := range Order {
				add(comp)
			}
		case a == Kubelet:
			withKubelet = true
		case slices.Contains(Order, a):
			add(a)
		default:
			return nil, false, fmt.Errorf("unknown component %q (want etcd, apiserver, controller-manager, scheduler, kubelet or all)", a)
		}
	}
	slices.SortStableFunc(steps, func(a, b Step) int {
		return slices.Index(Order, a.Component) - slices.Index(Order, b.Component)
	})
	return steps, withKubelet, nil
}

// Restart restarts the named components (`certctl restart ...`): the static pods one at a
// time, then the kubelet when asked. It refuses at once when no kubelet runs the layout's
// static pods.
func Restart(ctx context.Context, r Request, names []string) (*Outcome, error) {
	steps, withKubelet, err := ParseComponents(names)
	if err != nil {
		return nil, err
	}
	return r.run(ctx, steps, withKubelet, nil)
}

// AfterRenew rolls a renewal out (`certctl renew --restart`): the plan from the renewed
// items, printed; rollback to the renewal's backup; the kubelet when its files changed. When
// the plan has anything to restart, the node's kubelet is found first: call CheckNode before
// renewing to refuse before anything changes.
func AfterRenew(ctx context.Context, r Request, renewed []string, backupID string) (*Outcome, error) {
	steps, kubeletItems := Plan(renewed)
	w := r.out()
	for _, s := range steps {
		fmt.Fprintf(w, "%s: %s (%s)\n", s.Component, map[string]string{ActionRestart: "restart", ActionVerify: "verify it reloads"}[s.Action], strings.Join(s.Reasons, ", "))
	}
	rollback := func(string) error {
		_, err := backup.Restore(fsutil.OS{}, r.Layout, backupID)
		return err
	}
	return r.run(ctx, steps, len(kubeletItems) > 0, rollback)
}

// CheckNode finds the kubelet that runs the layout's static pods, or says at once that there
// is none (*ErrNoKubelet) or that it is in another network namespace (*ErrOtherNetNS): what
// `renew --restart` checks before it renews anything.
func CheckNode(r Request) (*Node, error) {
	n, err := FindNode(r.Proc, r.Layout.ManifestsDir)
	if err != nil {
		return nil, err
	}
	if err := n.CheckNetNS(r.Proc); err != nil {
		return nil, err
	}
	return n, nil
}

func (r Request) out() io.Writer {
	if r.Out == nil {
		return io.Discard
	}
	return r.Out
}

func (r Request) run(ctx context.Context, steps []Step, withKubelet bool, rollback func(string) error) (*Outcome, error) {
	out := &Outcome{Steps: steps}
	if len(steps) == 0 && !withKubelet {
		return out, nil
	}
	node, err := CheckNode(r)
	if err != nil {
		return out, err
	}
	out.Node = node
	if r.Progress == nil {
		r.Progress = NewProgress(r.out(), false)
	}
	if len(steps) > 0 {
		results, err := Run(ctx, Options{
			Layout: r.Layout, Steps: steps, Timeout: r.Timeout, ReloadTimeout: r.ReloadTimeout,
			Node: node, Proc: r.Proc, Stopper: StopperFor(r.Layout, node, r.Grace, r.Proc),
			Rollback: rollback, LockTimeout: r.LockTimeout, Progress: r.Progress, Drain: r.Drain, PeerWait: r.PeerWait,
			Undo: r.Undo,
		})
		out.Results = results
		r.summary(results)
		if err != nil {
			return out, err
		}
	}
	if withKubelet {
		if err := r.restartKubelet(ctx, node); err != nil {
			return out, err
		}
		out.KubeletRestart = true
	}
	return out, nil
}

// summary prints one line per component.
func (r Request) summary(results []Result) {
	w := r.out()
	for _, res := range results {
		switch {
		case res.Error != "" && res.RolledBack:
			fmt.Fprintf(w, "%-18s FAILED: %s; rolled back: restored the backup and restarted %s on the old files\n", res.Component, res.Error, strings.Join(res.RollbackRestarted, ", "))
		case res.Error != "":
			fmt.Fprintf(w, "%-18s FAILED: %s\n", res.Component, res.Error)
		case !res.Restarted:
			fmt.Fprintf(w, "%-18s reloaded its certificate without a restart (no downtime)\n", res.Component)
		default:
			fmt.Fprintf(w, "%-18s restarted, down %s\n", res.Component, res.Downtime.Round(10*time.Millisecond))
		}
	}
}

// kubeletWait is what WaitHealthy waits for after a kubelet restart: r.KubeletWait, its
// timeout r.Timeout by default, and, in a node Job (kubelet.SelfFromEnv), the Job's pod listed
// by the kubelet's pod-resources API again.
func (r Request) kubeletWait() kubelet.WaitOptions {
	wo := r.KubeletWait
	if wo.Timeout == 0 {
		wo.Timeout = r.Timeout
	}
	return wo.InPod(r.Layout.KubeletDir)
}

// restartKubelet restarts the node's kubelet and waits until it is healthy, and checks that
// the kubelet that runs the node's static pods now is a new process: `systemctl restart
// kubelet` restarts the init system's kubelet, which must be the node's.
func (r Request) restartKubelet(ctx context.Context, node *Node) error {
	k := r.Kubelet
	if k == nil {
		k = KubeletRestarter{Layout: r.Layout, Proc: r.Proc, Node: node}
	}
	if err := k.Restart(ctx); err != nil {
		return err
	}
	fmt.Fprintln(r.out(), "kubelet restarted; waiting for healthz (10248) and its serving certificate (10250)")
	if err := kubelet.WaitHealthy(ctx, r.kubeletWait()); err != nil {
		return err
	}
	now, err := FindNode(r.Proc, r.Layout.ManifestsDir)
	if err != nil {
		return fmt.Errorf("after the kubelet restart: %w", err)
	}
	if now.PID == node.PID && now.StartTime == node.StartTime {
		return fmt.Errorf("the kubelet restart did not restart the kubelet that runs the static pods in %s (still pid %d): it restarted another kubelet, or none", node.ManifestsDir, node.PID)
	}
	fmt.Fprintf(r.out(), "kubelet healthy (pid %d, was %d)\n", now.PID, node.PID)
	return nil
}

// StopperFor stops containers through the node's CRI socket when it has one, and otherwise
// (or when the runtime does not know the container) through the process table, restricted to
// the node's processes.
func StopperFor(l pki.Layout, node *Node, grace StopGrace, proc string) Stopper {
	procs := ProcessStopper{Layout: l, Node: node, Grace: grace, Proc: proc}
	if node != nil && node.CRIEndpoint != "" {
		return FallbackStopper{CRIStopper{Endpoint: node.CRIEndpoint, Grace: grace}, procs}
	}
	return procs
}
