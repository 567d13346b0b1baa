package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/certctl/certctl/pkg/kubeadmconfig"
	"github.com/certctl/certctl/pkg/pki"
)

func newKubeadmConfigCmd(g *Globals) *cobra.Command {
	var (
		kubeconfig, cert string
		dryRun           bool
		timeout          time.Duration
	)
	cmd := &cobra.Command{
		Use:   "kubeadm-config",
		Short: "Edit the ClusterConfiguration kubeadm keeps in kube-system/kubeadm-config",
	}
	add := &cobra.Command{
		Use:   "add-san SAN...",
		Short: "Add SANs to apiServer.certSANs (or etcd.local.serverCertSANs / peerCertSANs)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			field, ok := kubeadmconfig.FieldFor(cert)
			if !ok {
				return fmt.Errorf("--cert %q: want apiserver, etcd-server or etcd-peer", cert)
			}
			sans, err := pki.ParseSANs(args)
			if err != nil {
				return err
			}
			cs, err := kubeadmconfig.NewClientset(g.where(kubeconfig).AdminPath(), timeout)
			if err != nil {
				return err
			}
			change, err := kubeadmconfig.AddTo(c.Context(), cs, field, sans, dryRun)
			if err == nil {
				fmt.Fprintln(g.Streams.Out, change)
			}
			return err
		},
	}
	cmd.PersistentFlags().StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig to reach the API server (default: the node's admin.conf)")
	cmd.PersistentFlags().DurationVar(&timeout, "timeout", kubeadmconfig.DefaultTimeout, "per-request timeout")
	add.Flags().StringVar(&cert, "cert", "apiserver", "whose SAN list: apiserver, etcd-server or etcd-peer")
	add.Flags().BoolVar(&dryRun, "dry-run", false, "say what would be added and change nothing")
	cmd.AddCommand(add)
	return cmd
}
