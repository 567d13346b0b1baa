package cli

import (
	"path/filepath"

	"github.com/certctl/certctl/pkg/renew"
	"github.com/spf13/cobra"
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
				return withCode(ExitError, err)
			}
			res.Render(g.Streams.Out, l.Resolve(o.Src), l.Resolve(o.Dst))
			return nil
		},
	}
	refresh.Flags().StringVar(&to, "to", "", "kubeconfig to update (default $HOME/.kube/config, under --root)")
	refresh.Flags().StringVar(&from, "from", "", "kubeconfig to take the credentials from (default admin.conf)")
	cmd.AddCommand(refresh)
	return cmd
}
