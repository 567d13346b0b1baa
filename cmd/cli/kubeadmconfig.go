package cli

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/certctl/certctl/pkg/kubeadmconfig"
	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/renew"
)

// kubeadmConfigKubeconfig is the kubeconfig certctl edits kubeadm-config with: --kubeconfig,
// else the node's admin.conf.
func kubeadmConfigKubeconfig(l pki.Layout, flag string) string {
	if flag != "" {
		return pki.UnderRoot(l.Root, flag)
	}
	return filepath.Join(l.KubeconfigDir, "admin.conf")
}

// kubeadmConfigTarget is renew's way to kube-system/kubeadm-config.
func kubeadmConfigTarget(l pki.Layout, kubeconfig string, timeout time.Duration) *renew.KubeadmConfigOptions {
	cs, err := kubeadmconfig.NewClientset(kubeadmConfigKubeconfig(l, kubeconfig), timeout)
	return &renew.KubeadmConfigOptions{Client: cs, ClientErr: err, Timeout: timeout}
}

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
			cs, err := kubeadmconfig.NewClientset(kubeadmConfigKubeconfig(g.Layout(), kubeconfig), timeout)
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
