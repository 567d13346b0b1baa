package cli

import (
	"path/filepath"

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
		Long: `refresh copies the current credentials of admin.conf into ~/.kube/config (or --to): the
cluster's server and CA data, and the client certificate and key of every user that a context
pairs with this cluster (found by the same server or the same CA data). Other clusters, users,
contexts and the current context are kept; a missing or empty file becomes a copy of
admin.conf. The old file is backed up first (certctl backup list) and the new one written
atomically, keeping the file's owner, group and mode: refreshing /home/ops/.kube/config as
root leaves it ops's. A new file is 0600 and belongs to the owner of its directory. --to and
--from are node paths, resolved under --root. This is the runbook's
"cp /etc/kubernetes/admin.conf ~/.kube/config" without losing the other clusters.`,
		Example: `  certctl kubeconfig refresh
  certctl kubeconfig refresh --to /home/ops/.kube/config`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			l := g.Layout()
			o := renew.RefreshOptions{Src: filepath.Join(l.KubeconfigDir, "admin.conf"), Dst: l.UserKubeconfig, Command: "kubeconfig refresh"}
			if from != "" {
				o.Src = from
			}
			if to != "" {
				o.Dst = to
			}
			res, err := renew.RefreshKubeconfig(l, o)
			if err != nil {
				return err
			}
			res.Render(g.Streams.Out, l.Resolve(o.Src), l.Resolve(o.Dst))
			return nil
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
		Long: `set-server replaces the API server address in this node's admin.conf, super-admin.conf,
kubelet.conf and bootstrap-kubelet.conf: every cluster entry that uses --from (default: the
server kubelet.conf uses) gets HOST:PORT. Entries that name another server, and
controller-manager.conf and scheduler.conf (kubeadm points them at the node's own apiserver),
are left alone. The files are backed up first (certctl backup list) and written atomically,
keeping owner and mode. When kubelet.conf changed, the kubelet is restarted (through systemd,
or the supervisor that runs it) and certctl waits until it is healthy.

This is the node's part of 'certctl cluster endpoint', which runs it on every node, one at a
time, after checking that the new address serves the cluster; run it by hand only on a node
the cluster command cannot reach.`,
		Example: `  certctl kubeconfig set-server 10.2.1.139:6443 --dry-run
  certctl kubeconfig set-server 10.2.1.139:6443 --from https://10.2.1.151:6443
  certctl --root /host kubeconfig set-server lb.example.com:6443 --no-restart`,
		Args: cobra.ExactArgs(1),
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
			r := noderesult.Result{Command: "kubeconfig set-server", KubeletRestarted: res.KubeletRestarted}
			if res.KubeletRestarted {
				r.Components = []string{restart.Kubelet}
			}
			if err := noderesult.Write(g.ResultFile, r); err != nil {
				return err
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&o.From, "from", "", "the server to replace (default: the one kubelet.conf uses)")
	f.BoolVar(&o.DryRun, "dry-run", false, "print what would change, change nothing")
	f.BoolVar(&o.NoRestart, "no-restart", false, "do not restart the kubelet after kubelet.conf changed: restart it yourself")
	return c
}
