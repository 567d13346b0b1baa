package cli

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
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

type kubeadmConfigOptions struct {
	*Globals
	Kubeconfig string
	Cert       string
	DryRun     bool
	Timeout    time.Duration
}

func newKubeadmConfigCmd(g *Globals) *cobra.Command {
	o := &kubeadmConfigOptions{Globals: g}
	cmd := &cobra.Command{
		Use:   "kubeadm-config",
		Short: "Edit the ClusterConfiguration kubeadm keeps in kube-system/kubeadm-config",
	}
	add := &cobra.Command{
		Use:   "add-san SAN...",
		Short: "Add SANs to apiServer.certSANs (or etcd.local.serverCertSANs / peerCertSANs)",
		Args:  cobra.MinimumNArgs(1),
		RunE:  func(cmd *cobra.Command, args []string) error { return o.addSAN(cmd.Context(), args) },
	}
	cmd.PersistentFlags().StringVar(&o.Kubeconfig, "kubeconfig", "", "kubeconfig to reach the API server (default: the node's admin.conf)")
	cmd.PersistentFlags().DurationVar(&o.Timeout, "timeout", kubeadmconfig.DefaultTimeout, "per-request timeout")
	add.Flags().StringVar(&o.Cert, "cert", "apiserver", "whose SAN list: apiserver, etcd-server or etcd-peer")
	add.Flags().BoolVar(&o.DryRun, "dry-run", false, "say what would be added and change nothing")
	cmd.AddCommand(add)
	return cmd
}

func (o *kubeadmConfigOptions) addSAN(ctx context.Context, args []string) error {
	if ctx == nil {
		ctx = context.Background()
	}
	field, ok := kubeadmconfig.FieldFor(o.Cert)
	if !ok {
		return fmt.Errorf("--cert %q: want apiserver, etcd-server or etcd-peer", o.Cert)
	}
	sans, err := pki.ParseSANs(args)
	if err != nil {
		return err
	}
	cs, err := kubeadmconfig.NewClientset(kubeadmConfigKubeconfig(o.Layout(), o.Kubeconfig), o.Timeout)
	if err != nil {
		return err
	}
	edits := []kubeadmconfig.Edit{{Field: field, SANs: sans}}
	cm := kubeadmconfig.Namespace + "/" + kubeadmconfig.Name
	if o.DryRun {
		doc, _, err := kubeadmconfig.Read(ctx, cs)
		if err != nil {
			return err
		}
		missing, err := kubeadmconfig.Missing(doc, edits)
		if err != nil {
			return err
		}
		if len(missing) == 0 {
			fmt.Fprintf(o.Streams.Out, "%s: %s already lists %s; dry run: nothing changed\n", cm, field, strings.Join(sans, ", "))
			return nil
		}
		fmt.Fprintf(o.Streams.Out, "%s: would add %s to %s; dry run: nothing changed\n", cm, strings.Join(missing[0].SANs, ", "), field)
		return nil
	}
	res, err := kubeadmconfig.Apply(ctx, cs, edits)
	if err != nil {
		return err
	}
	if len(res.Added) == 0 {
		fmt.Fprintf(o.Streams.Out, "%s: %s already lists %s: nothing changed\n", cm, field, strings.Join(sans, ", "))
		return nil
	}
	fmt.Fprintf(o.Streams.Out, "%s: added %s to %s\n", cm, strings.Join(res.Added[0].SANs, ", "), field)
	return nil
}
