package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/restart"
)

type restartOptions struct {
	Timeout       time.Duration
	ReloadTimeout time.Duration
	StopGrace     graceFlag
	LBDrain       time.Duration
}

// flags registers the restart flags on cmd. On renew (which has --restart) it also makes
// `renew --restart` refuse before anything is renewed when no kubelet runs the node's static
// pods.
func (o *restartOptions) flags(cmd *cobra.Command) {
	cmd.Flags().DurationVar(&o.Timeout, "timeout", 3*time.Minute, "how long each component may take to stop, and to come back healthy")
	cmd.Flags().Var(&o.StopGrace, "stop-grace", "how long an old container may take to exit after SIGTERM before it is killed (default: apiserver 0s, etcd 10s, controller-manager and scheduler 2s)")
	cmd.Flags().DurationVar(&o.ReloadTimeout, "reload-timeout", 30*time.Second, "how long to wait for a component to serve a renewed file by itself before restarting it")
	cmd.Flags().DurationVar(&o.LBDrain, "lb-drain", 0, "behind a load balancer: before stopping the apiserver or its etcd, refuse new connections to the apiserver's port from other machines for this long (an nftables table, "+restart.DrainTable+"), so the balancer's health check takes the node out first; removed once the apiserver is healthy again (after etcd: ready, /readyz). Give the balancer's detection time (HAProxy: fall x inter, e.g. 3s); 0: off")
	if cmd.Flags().Lookup("restart") != nil {
		cmd.PreRunE = func(c *cobra.Command, _ []string) error {
			if !flagTrue(c, "restart") || flagTrue(c, "dry-run") || flagTrue(c, "csr-only") {
				return nil
			}
			if _, err := restart.CheckNode(restart.Request{Layout: layoutFromFlags(c)}); err != nil {
				return fmt.Errorf("--restart: %w; nothing was renewed", err)
			}
			return nil
		}
	}
}

func flagTrue(c *cobra.Command, name string) bool {
	f := c.Flags().Lookup(name)
	return f != nil && f.Value.String() == "true"
}

// layoutFromFlags is Globals.Layout for a hook that has only the command: the global flags
// are persistent flags of the root.
func layoutFromFlags(c *cobra.Command) pki.Layout {
	get := func(name string) string {
		if f := c.Flags().Lookup(name); f != nil {
			return f.Value.String()
		}
		return ""
	}
	g := Globals{Root: get("root"), PKIDir: get("pki-dir"), KubeconfigDir: get("kubeconfig-dir"),
		ManifestsDir: get("manifests-dir"), KubeletDir: get("kubelet-dir"), UserKubeconfig: get("user-kubeconfig")}
	return g.Layout()
}

// request turns the flags into a restart.Request.
func (o *restartOptions) request(g *Globals) restart.Request {
	var grace restart.StopGrace
	if o.StopGrace.set {
		grace = restart.UniformStopGrace(o.StopGrace.d)
	}
	r := restart.Request{
		Layout: g.Layout(), Timeout: o.Timeout, ReloadTimeout: o.ReloadTimeout, Grace: grace,
		Out: g.Streams.Out, Progress: progressFor(g.Streams.Out),
	}
	if o.LBDrain > 0 {
		r.Drain = &restart.Drain{Wait: o.LBDrain}
	}
	return r
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
		RunE: func(c *cobra.Command, args []string) error {
			ctx := c.Context() // ends on SIGINT and SIGTERM (Execute)
			if _, err := restart.Restart(ctx, o.request(g), args); err != nil {
				return err
			}
			return nil
		},
	}
	o.flags(cmd)
	return cmd
}

// restartAfterRenew rolls a renewal out (renew --restart): restart.AfterRenew.
func restartAfterRenew(ctx context.Context, g *Globals, o *restartOptions, renewed []string, backupID string) error {
	if _, err := restart.AfterRenew(ctx, o.request(g), renewed, backupID); err != nil {
		return err
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
