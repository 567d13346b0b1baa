package cli

import (
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/certctl/certctl/pkg/restart"
)

// restartOptions are the flags of a restart, on restart, renew and ca rotate.
type restartOptions struct {
	restart.Settings
	grace *pflag.Flag // --stop-grace: Changed says it was given
}

// flags registers the restart flags on cmd.
func (o *restartOptions) flags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.DurationVar(&o.Timeout, "timeout", 3*time.Minute, "how long each component may take to stop, and to come back healthy")
	f.DurationVar(&o.StopGrace, "stop-grace", 0, "how long an old container may take to exit after SIGTERM before it is killed (default: apiserver 0s, etcd 10s, controller-manager and scheduler 2s)")
	o.grace = f.Lookup("stop-grace")
	f.DurationVar(&o.ReloadTimeout, "reload-timeout", 30*time.Second, "how long to wait for a component to serve a renewed file by itself before restarting it")
	f.DurationVar(&o.LBDrain, "lb-drain", 0, "behind a load balancer: before stopping the apiserver or its etcd, refuse new connections to the apiserver's port from other machines for this long (an nftables table, "+restart.DrainTable+"), so the balancer's health check takes the node out first; removed once the apiserver is healthy again (after etcd: ready, /readyz). Give the balancer's detection time (HAProxy: fall x inter, e.g. 3s); 0: off")
}

// request turns the flags into a restart.Request.
func (o *restartOptions) request(g *Globals) (restart.Request, error) {
	o.StopGraceSet = o.grace.Changed
	return o.Settings.Request(g.Layout(), g.Streams.Out)
}

func newRestartCmd(g *Globals) *cobra.Command {
	o := &restartOptions{}
	cmd := &cobra.Command{
		Use:   "restart [etcd|apiserver|controller-manager|scheduler|kubelet|all]...",
		Short: "Restart control-plane components so they serve the certificates on disk",
		RunE: func(c *cobra.Command, args []string) error {
			req, err := o.request(g)
			if err == nil {
				_, err = restart.Restart(c.Context(), req, args)
			}
			return err
		},
	}
	o.flags(cmd)
	return cmd
}
