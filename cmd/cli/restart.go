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
		Long: `restart restarts static-pod components the careful way: one at a time (etcd, apiserver,
controller-manager, scheduler), each by moving its manifest out of /etc/kubernetes/manifests into
certctl's staging dir, stopping its container through the kubelet's CRI socket (containerd,
CRI-O; StopContainer with a short grace, see --stop-grace) and waiting until the kubelet has
torn the pod down (without a CRI socket: the process, found in /proc, gets its grace and is
killed), waiting until its port is closed, moving the manifest back, and
waiting until the kubelet's own probe answers healthy AND, for the apiserver and etcd, the
certificate served over TLS is the file on disk. No fixed sleeps: every wait polls with a
deadline (--timeout). The downtime of each component is reported.

restart acts only on the node whose manifests it moves: it first finds the kubelet process
whose staticPodPath is the manifests dir (under --root), and refuses at once when there is
none ("no kubelet runs the static pods in DIR: nothing to restart"). Containers are stopped
through THAT kubelet's CRI socket; a process is killed only when it shares that kubelet's
network namespace (several nodes may share one machine). certctl needs the host's PID
namespace for this (run it on the node, or in a pod with hostPID: true).

It holds the node lock (the one renew and restore take). A manifest is never lost: if
certctl is killed while one is staged, the next certctl command puts it back (while the
restart that staged it still runs, other certctl commands leave it alone).

etcd restarts only while every other etcd member is healthy (waiting up to a minute for
them, then refusing with the member named: a restart could cost the quorum); a member that
leads hands its leadership to a healthy peer first, and with --lb-drain the node leaves the
load balancer before etcd stops, until its apiserver is ready again.

"kubelet" restarts the kubelet through systemd and waits for its health endpoint. "all" is
the four static pods. See docs/restart.md.`,
		Example: `  certctl restart apiserver
  certctl restart all --timeout 5m
  # behind a load balancer (HAProxy inter 1s fall 2): out of it while etcd restarts
  certctl restart etcd --lb-drain 3s
  # give the apiserver 5 s to finish in-flight requests (more downtime)
  certctl restart apiserver --stop-grace 5s
  # a node whose files are mounted elsewhere (its kubelet must run them)
  certctl --root /host restart controller-manager scheduler
  # renew and restart exactly what needs it, with rollback on failure
  certctl renew all --restart --yes`,
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
