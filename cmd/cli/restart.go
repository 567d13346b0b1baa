package cli

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/certctl/certctl/pkg/backup"
	"github.com/certctl/certctl/pkg/fsutil"
	"github.com/certctl/certctl/pkg/kubelet"
	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/restart"
	"github.com/spf13/cobra"
)

type restartOptions struct {
	Timeout       time.Duration
	ReloadTimeout time.Duration
	StopGrace     graceFlag
}

func (o *restartOptions) flags(cmd *cobra.Command) {
	cmd.Flags().DurationVar(&o.Timeout, "timeout", 3*time.Minute, "how long each component may take to stop, and to come back healthy")
	cmd.Flags().Var(&o.StopGrace, "stop-grace", "how long an old container may take to exit after SIGTERM before it is killed (default: apiserver 0s, etcd 10s, controller-manager and scheduler 2s)")
	cmd.Flags().DurationVar(&o.ReloadTimeout, "reload-timeout", 30*time.Second, "how long to wait for a component to serve a renewed file by itself before restarting it")
}

func progressFor(w io.Writer) *restart.Progress {
	f, ok := w.(*os.File)
	return restart.NewProgress(w, ok && isTerminal(f))
}

func newRestartCmd(g *Globals) *cobra.Command {
	o := &restartOptions{}
	cmd := &cobra.Command{
		Use:   "restart [etcd|apiserver|controller-manager|scheduler|kubelet|all]...",
		Short: "Restart control-plane components so they serve the certificates on disk",
		Long: `restart restarts static-pod components the careful way: one at a time (etcd, apiserver,
controller-manager, scheduler), each by moving its manifest out of /etc/kubernetes/manifests into
certctl's staging dir, stopping its container through the kubelet's CRI socket (containerd,
CRI-O; StopContainer with a short grace, see --stop-grace) and waiting until the kubelet has
torn the pod down (without a CRI socket: the process, found in /proc, gets its grace and is
killed), waiting until its port is closed, moving the manifest back, and
waiting until the kubelet's own probe answers healthy AND, for the apiserver and etcd, the
certificate served over TLS is the file on disk. No fixed sleeps: every wait polls with a
deadline (--timeout). The downtime of each component is reported. A manifest is never lost:
if certctl is killed while one is staged, the next certctl command puts it back.

"kubelet" restarts the kubelet through systemd and waits for its health endpoint. "all" is
the four static pods. See docs/restart.md.`,
		Example: `  certctl restart apiserver
  certctl restart all --timeout 5m
  # give the apiserver 5 s to finish in-flight requests (more downtime)
  certctl restart apiserver --stop-grace 5s
  # renew and restart exactly what needs it, with rollback on failure
  certctl renew all --restart --yes`,
		RunE: func(c *cobra.Command, args []string) error {
			if len(args) == 0 {
				return withCode(ExitError, errors.New("name the components to restart (or all)"))
			}
			var steps []restart.Step
			withKubelet := false
			for _, a := range args {
				switch {
				case a == "all":
					for _, comp := range restart.Order {
						steps = appendStep(steps, comp)
					}
				case a == pki.CompKubelet:
					withKubelet = true
				case slices.Contains(restart.Order, a):
					steps = appendStep(steps, a)
				default:
					return withCode(ExitError, fmt.Errorf("unknown component %q (want etcd, apiserver, controller-manager, scheduler, kubelet or all)", a))
				}
			}
			slices.SortStableFunc(steps, func(a, b restart.Step) int {
				return slices.Index(restart.Order, a.Component) - slices.Index(restart.Order, b.Component)
			})
			ctx, cancel := signalContext(c.Context())
			defer cancel()
			if err := runRestart(ctx, g, o, steps, nil); err != nil {
				return err
			}
			if withKubelet {
				return restartKubeletAndWait(ctx, g, o.Timeout, nil)
			}
			return nil
		},
	}
	o.flags(cmd)
	return cmd
}

func appendStep(steps []restart.Step, comp string) []restart.Step {
	for _, s := range steps {
		if s.Component == comp {
			return steps
		}
	}
	return append(steps, restart.Step{Component: comp, Action: restart.ActionRestart, Reasons: []string{"asked"}})
}

// runRestart runs steps and prints a summary; rollback may be nil.
func runRestart(ctx context.Context, g *Globals, o *restartOptions, steps []restart.Step, rollback func(string) error) error {
	if len(steps) == 0 {
		return nil
	}
	results, err := restart.Run(ctx, restart.Options{
		Layout: g.Layout(), Steps: steps, Timeout: o.Timeout, ReloadTimeout: o.ReloadTimeout,
		Rollback: rollback, Progress: progressFor(g.Streams.Out),
		Stopper: stopperFor(g, o.StopGrace),
	})
	w := g.Streams.Out
	for _, r := range results {
		switch {
		case r.Error != "":
			fmt.Fprintf(w, "%-18s FAILED: %s\n", r.Component, r.Error)
		case !r.Restarted:
			fmt.Fprintf(w, "%-18s reloaded its certificate without a restart (no downtime)\n", r.Component)
		default:
			fmt.Fprintf(w, "%-18s restarted, down %s\n", r.Component, r.Downtime.Round(10*time.Millisecond))
		}
	}
	if err != nil {
		return withCode(ExitError, err)
	}
	return nil
}

// stopperFor stops containers through the kubelet's CRI socket when there is one, and
// otherwise (or when the runtime does not know the container) through the process table.
func stopperFor(g *Globals, stopGrace graceFlag) restart.Stopper {
	var grace restart.StopGrace
	if stopGrace.set {
		grace = restart.UniformStopGrace(stopGrace.d)
	}
	procs := restart.ProcessStopper{Layout: g.Layout(), Grace: grace}
	if ep := restart.FindCRIEndpoint(g.Layout()); ep != "" {
		return restart.FallbackStopper{restart.CRIStopper{Endpoint: ep, Grace: grace}, procs}
	}
	return procs
}

// restartKubeletAndWait restarts the kubelet and waits until it is healthy; check, when not
// nil, must accept the served chain.
func restartKubeletAndWait(ctx context.Context, g *Globals, timeout time.Duration, check func([]*x509.Certificate) error) error {
	if err := (kubelet.Systemd{Root: g.Layout().Root}).Restart(ctx); err != nil {
		return withCode(ExitError, err)
	}
	fmt.Fprintln(g.Streams.Out, "kubelet restarted; waiting for healthz (10248) and its serving certificate (10250)")
	if err := kubelet.WaitHealthy(ctx, kubelet.WaitOptions{Timeout: timeout, Serving: check}); err != nil {
		return withCode(ExitError, err)
	}
	fmt.Fprintln(g.Streams.Out, "kubelet healthy")
	return nil
}

// restartAfterRenew rolls a renewal out: the plan from the renewed items, rollback to the
// renewal's backup, the kubelet when its files changed.
func restartAfterRenew(ctx context.Context, g *Globals, o *restartOptions, renewed []string, backupID string) error {
	steps, kubeletItems := restart.Plan(renewed)
	w := g.Streams.Out
	for _, s := range steps {
		fmt.Fprintf(w, "%s: %s (%s)\n", s.Component, map[string]string{restart.ActionRestart: "restart", restart.ActionVerify: "verify it reloads"}[s.Action], strings.Join(s.Reasons, ", "))
	}
	rollback := func(string) error {
		_, err := backup.Restore(fsutil.OS{}, g.Layout(), backupID)
		return err
	}
	if err := runRestart(ctx, g, o, steps, rollback); err != nil {
		return err
	}
	if len(kubeletItems) > 0 {
		return restartKubeletAndWait(ctx, g, o.Timeout, nil)
	}
	return nil
}

// graceFlag is --stop-grace: unset means each component's default.
type graceFlag struct {
	d   time.Duration
	set bool
}

func (f *graceFlag) String() string {
	if !f.set {
		return ""
	}
	return f.d.String()
}

func (f *graceFlag) Set(v string) error {
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return fmt.Errorf("want a duration >= 0 such as 0s, 1s or 10s, got %q", v)
	}
	f.d, f.set = d, true
	return nil
}

func (f *graceFlag) Type() string { return "duration" }
