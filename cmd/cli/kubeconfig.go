package cli

import (
	"github.com/spf13/cobra"

	"github.com/certctl/certctl/pkg/endpoint"
	"github.com/certctl/certctl/pkg/noderesult"
	"github.com/certctl/certctl/pkg/renew"
	"github.com/certctl/certctl/pkg/restart"
)

func newKubeconfigCmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{Use: "kubeconfig", Short: "Keep users' kubeconfigs in step with admin.conf"}
	var to, from string
	refresh := &cobra.Command{
		Use:   "refresh",
		Short: "Update ~/.kube/config from admin.conf, replacing only this cluster's entries",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return renew.RefreshUser(g.Layout(), from, to, g.Streams.Out)
		},
	}
	refresh.Flags().StringVar(&to, "to", "", "kubeconfig to update (default $HOME/.kube/config, under --root)")
	refresh.Flags().StringVar(&from, "from", "", "kubeconfig to take the credentials from (default admin.conf)")
	cmd.AddCommand(refresh, newSetServerCmd(g))
	return cmd
}

func newSetServerCmd(g *Globals) *cobra.Command {
	o := endpoint.Options{}
	c := &cobra.Command{
		Use:   "set-server HOST:PORT",
		Short: "Point this node's kubeconfigs at another API server address (a load balancer)",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			o.Layout, o.To, o.Out = g.Layout(), args[0], g.Streams.Out
			o.Restart = restart.KubeletRestarter{Layout: o.Layout}
			res, err := endpoint.SetServer(c.Context(), o)
			if res != nil {
				res.Render(g.Streams.Out, o.DryRun)
			}
			if err != nil {
				return err
			}
			return noderesult.Write(g.ResultFile, noderesult.KubeletOnly("kubeconfig set-server", res.KubeletRestarted))
		},
	}
	f := c.Flags()
	f.StringVar(&o.From, "from", "", "the server to replace (default: the one kubelet.conf uses)")
	f.BoolVar(&o.DryRun, "dry-run", false, "print what would change, change nothing")
	f.BoolVar(&o.NoRestart, "no-restart", false, "do not restart the kubelet after kubelet.conf changed: restart it yourself")
	return c
}
