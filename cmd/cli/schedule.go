package cli

import (
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"

	"github.com/certctl/certctl/pkg/flagvalue"
	"github.com/certctl/certctl/pkg/inspect"
	"github.com/certctl/certctl/pkg/schedule"
)

func newScheduleCmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "schedule",
		Short: "Renew on a schedule: systemd timer, cron, or a Kubernetes CronJob",
	}
	cmd.AddCommand(newScheduleInstallCmd(g), newScheduleRemoveCmd(g), newScheduleStatusCmd(g), newScheduleManifestCmd(g))
	return cmd
}

func newScheduleInstallCmd(g *Globals) *cobra.Command {
	var o schedule.Options
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Install the scheduled renewal (systemd timer or cron)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			o.Defaults()
			o.Location = schedule.NodeLocation(g.Layout())
			if err := o.Validate(schedule.SystemdAnalyze()); err != nil {
				return err
			}
			res, err := schedule.Install(c.Context(), g.Layout(), o)
			if err == nil {
				res.Render(g.Streams.Out, &o, time.Now(), schedule.SystemdAnalyze())
			}
			return err
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
		Use:   "remove",
		Short: "Remove the scheduled renewal",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			removed, err := schedule.Remove(c.Context(), g.Layout())
			return schedule.RenderRemoved(g.Streams.Out, removed, err)
		},
	}
}

func newScheduleStatusCmd(g *Globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Is the scheduled renewal installed, when does it run next, how did the last run go",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
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
	flagvalue.FormatVarP(cmd.Flags(), &output, "output", "o", []string{"text", "json"}, "")
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
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			client := func() (kubernetes.Interface, error) { return g.clientset(kubeconfig) }
			return g.write(schedule.ManifestsFor(c.Context(), o, client))
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
