package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/certctl/certctl/pkg/inspect"
	"github.com/certctl/certctl/pkg/schedule"
)

func newScheduleCmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "schedule",
		Short: "Renew on a schedule: systemd timer, cron, or a Kubernetes CronJob",
		Long: `schedule installs a periodic 'certctl renew all --if-expiring-within THRESHOLD --yes' on this
node (a systemd service and timer, or an /etc/cron.d entry), removes it, shows its status, or
prints CronJobs that run it inside the cluster on every control-plane node. See
docs/schedule.md; docs/monitoring.md has the metrics (inspect -o prometheus), the alert rules
and the dashboard (certctl monitoring).`,
	}
	cmd.AddCommand(newScheduleInstallCmd(g), newScheduleRemoveCmd(g), newScheduleStatusCmd(g), newScheduleManifestCmd(g))
	return cmd
}

// renewHasRestart reports whether this certctl's renew command takes --restart.
func renewHasRestart(g *Globals) bool { return newRenewCmd(g).Flags().Lookup("restart") != nil }

func newScheduleInstallCmd(g *Globals) *cobra.Command {
	var o schedule.Options
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Install the scheduled renewal (systemd timer or cron)",
		Long: `install writes /etc/systemd/system/certctl-renew.service and .timer (RandomizedDelaySec,
Persistent=true) and enables the timer when systemd runs, or writes /etc/cron.d/certctl with
--method cron (spread by 'renew --random-delay'). All paths are under --root; where systemd
does not run (or --root is not /) it prints what to run on the node. Each run renews only what
expires within --threshold, is a no-op otherwise, and leaves a record that 'schedule status',
'inspect' and 'inspect -o prometheus' show.`,
		Example: `  certctl schedule install
  certctl schedule install --when daily --threshold 60d --days 365
  certctl schedule install --when 'Mon *-*-* 03:00:00' --jitter 2h
  certctl schedule install --method cron --when '17 3 * * 1'`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			o.Defaults()
			o.Location = schedule.NodeLocation(g.Layout())
			if o.Restart && !renewHasRestart(g) {
				return fmt.Errorf("--restart: this certctl's renew command has no --restart yet; install without it and restart the components after a renewal (certctl inspect --live shows which)")
			}
			if err := o.Validate(schedule.SystemdAnalyze()); err != nil {
				return err
			}
			ctx := c.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			res, err := schedule.Install(ctx, g.Layout(), o)
			if err != nil {
				return err
			}
			w := g.Streams.Out
			for _, f := range res.Files {
				fmt.Fprintln(w, "wrote", f)
			}
			fmt.Fprintln(w, "runs:", o.Command())
			if next, err := o.Next(time.Now(), schedule.SystemdAnalyze()); err == nil {
				fmt.Fprintf(w, "next run: %s (plus up to %s of random delay)\n", next.Format(schedule.NextRunFormat), o.Jitter)
			}
			if res.Enabled {
				fmt.Fprintln(w, "enabled", schedule.TimerUnit)
			}
			if res.Todo != "" {
				fmt.Fprintln(w, res.Todo)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Method, "method", schedule.MethodSystemd, "systemd or cron")
	f.StringVar(&o.When, "when", "weekly", "hourly, daily, weekly, monthly, an OnCalendar expression (systemd) or a cron expression (cron)")
	f.StringVar(&o.Threshold, "threshold", "30d", "renew what expires within this")
	f.IntVar(&o.Days, "days", 365, "validity of the renewed certificates, in days")
	f.BoolVar(&o.Restart, "restart", false, "restart the components whose certificates were renewed")
	f.StringVar(&o.CertctlPath, "certctl-path", "/usr/local/bin/certctl", "where certctl is installed on the node")
	f.DurationVar(&o.Jitter, "jitter", time.Hour, "random delay before each run, to spread nodes and clusters")
	return cmd
}

func newScheduleRemoveCmd(g *Globals) *cobra.Command {
	return &cobra.Command{
		Use:     "remove",
		Short:   "Remove the scheduled renewal",
		Example: `  certctl schedule remove`,
		Args:    cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			ctx := c.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			removed, err := schedule.Remove(ctx, g.Layout())
			for _, f := range removed {
				fmt.Fprintln(g.Streams.Out, "removed", f)
			}
			if err != nil {
				return err
			}
			if len(removed) == 0 {
				fmt.Fprintln(g.Streams.Out, "no scheduled renewal was installed")
			}
			return nil
		},
	}
}

func newScheduleStatusCmd(g *Globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Is the scheduled renewal installed, when does it run next, how did the last run go",
		Long: `status shows the installed schedule (method, expression, command, next run) and the record
of the last renewal run. Exit code 2 when the last run failed.

The next run is in the node's time zone, the one cron and systemd read the schedule in: $TZ
when set, else the node's /etc/localtime (under --root), else the local zone.`,
		Example: `  certctl schedule status
  certctl schedule status -o json`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("unknown output format %q (want text or json)", output)
			}
			st, err := schedule.GetStatus(g.Layout(), time.Now(), schedule.SystemdAnalyze())
			if err != nil {
				return err
			}
			if err := st.Render(g.Streams.Out, output); err != nil {
				return err
			}
			if st.LastRun != nil && !st.LastRun.Success() {
				return verdict(inspect.SevCritical, nil)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

func newScheduleManifestCmd(g *Globals) *cobra.Command {
	var (
		o          schedule.ManifestOptions
		kubeconfig string
	)
	cmd := &cobra.Command{
		Use:   "manifest",
		Short: "Print CronJobs that run the renewal inside the cluster, one per control-plane node",
		Long: `manifest prints one CronJob per control-plane node, pinned to it (nodeName and a toleration
for the control-plane taint), privileged, with the host's / mounted at /host, running
'certctl --root /host renew all --if-expiring-within ... --yes --lease kube-system/certctl-renew'.
The node names come from the API (nodes labelled node-role.kubernetes.io/control-plane) or
from --node.

Each run holds the Lease kube-system/certctl-renew while it renews, the Lease 'certctl cluster
renew' holds for its whole rollout: no two of them restart control-plane nodes at once. A run
that finds the Lease held waits up to --lease-wait, then fails naming the holder (the next
scheduled run tries again); a holder that died loses the Lease 60s after its last renewal.
The schedules are also staggered (an hour apart).

Before the CronJobs the output has what they need, and nothing more (docs/schedule.md):
  ServiceAccount certctl-renew   (in --namespace; no token unless a pod asks, as the CronJobs do)
  Lease kube-system/certctl-renew (created here, so no 'create' permission is needed)
  Role and RoleBinding kube-system/certctl-renew-lease: get and update on that one Lease
  Role and RoleBinding default/certctl-renew-events: create and patch events (each run
    records an Event on its Node for every warning or critical finding: --events-node)`,
		Example: `  certctl schedule manifest --image registry.example.com/certctl:v1 | kubectl apply -f -
  certctl schedule manifest --image registry.example.com/certctl:v1 --node cp-1 --node cp-2 --schedule '0 2 * * 0'
  # wait at most 10 minutes for a running 'cluster renew' before giving up this week's run
  certctl schedule manifest --image registry.example.com/certctl:v1 --lease-wait 10m`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if o.Restart && !renewHasRestart(g) {
				return fmt.Errorf("--restart: this certctl's renew command has no --restart yet")
			}
			if o.Image == "" {
				return fmt.Errorf("--image is required: an image with certctl as its entrypoint")
			}
			if len(o.Nodes) == 0 {
				ks := &kubeletServingOptions{Globals: g, Kubeconfig: kubeconfig}
				cs, err := ks.client()
				if err != nil {
					return fmt.Errorf("%w (or name the control-plane nodes with --node)", err)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				if o.Nodes, err = schedule.ControlPlaneNodes(ctx, cs); err != nil {
					return err
				}
			}
			out, err := schedule.Manifests(o)
			if err != nil {
				return err
			}
			_, err = g.Streams.Out.Write(out)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Image, "image", "", "container image with certctl as its entrypoint")
	f.StringSliceVar(&o.Nodes, "node", nil, "control-plane node names (default: from the API)")
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig to list the nodes (default admin.conf, then ~/.kube/config)")
	f.StringVar(&o.Namespace, "namespace", "kube-system", "namespace of the CronJobs")
	f.StringVar(&o.Threshold, "threshold", "30d", "renew what expires within this")
	f.IntVar(&o.Days, "days", 365, "validity of the renewed certificates, in days")
	f.BoolVar(&o.Restart, "restart", false, "restart the components whose certificates were renewed")
	f.StringVar(&o.Schedule, "schedule", "30 3 * * 1", "cron schedule of the first node (five fields, or @daily, @weekly...: docs/schedule.md); the others follow an hour apart")
	f.DurationVar(&o.LeaseWait, "lease-wait", 30*time.Minute, "how long each run waits for the Lease while another run (cluster renew, another node's CronJob) holds it")
	return cmd
}
