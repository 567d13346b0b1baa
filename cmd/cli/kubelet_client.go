package cli

import (
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/certctl/certctl/pkg/kubeletclient"
	"github.com/certctl/certctl/pkg/pki"
)

type kubeletClientOptions struct {
	*Globals
	renew      kubeletclient.RenewOptions
	days       int
	kubeconfig string
}

// options are the flags as kubeletclient's options; an admin kubeconfig (admin.conf or
// --kubeconfig) reads the Node, on a worker its new credentials do.
func (o *kubeletClientOptions) options() (kubeletclient.RenewOptions, error) {
	r := o.renew
	r.Layout, r.Out, r.Validity = o.Layout(), o.Streams.Out, time.Duration(o.days)*24*time.Hour
	var err error
	r.Client, err = o.where(o.kubeconfig).AdminClient()
	return r, err
}

func newKubeletClientCmd(g *Globals) *cobra.Command {
	o := &kubeletClientOptions{Globals: g}
	cmd := &cobra.Command{
		Use:   "kubelet-client",
		Short: "Repair the kubelet's own client certificate in place (no kubeadm reset, no re-join)",
	}
	cmd.PersistentFlags().StringVar(&o.kubeconfig, "kubeconfig", "", "admin kubeconfig to watch the Node with (default admin.conf when present; otherwise the node's own new credentials)")
	cmd.AddCommand(newKCRenewCmd(o), newKCIssueCmd(o), newKCInstallCmd(o))
	return cmd
}

func addKCNodeFlags(cmd *cobra.Command, o *kubeletClientOptions) {
	f := cmd.Flags()
	f.StringVar(&o.renew.Node, "node", "", "this node's name (default: the old certificate's CN, else kubelet.conf)")
	f.BoolVar(&o.renew.NoRestart, "no-restart", false, "do not restart the kubelet (it is not a systemd unit here): restart it yourself when told")
	f.BoolVar(&o.renew.NoWait, "no-wait", false, "do not wait for the node to be Ready again")
	f.DurationVar(&o.renew.Timeout, "timeout", 2*time.Minute, "how long to wait for the kubelet's new credentials and Node Ready")
}

func newKCRenewCmd(o *kubeletClientOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "renew",
		Short: "Give the kubelet a new client certificate and restart it",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			r, err := o.options()
			if err == nil {
				_, err = kubeletclient.Renew(c.Context(), r)
			}
			return err
		},
	}
	addKCNodeFlags(cmd, o)
	f := cmd.Flags()
	f.IntVar(&o.days, "days", 365, "validity in days when signing here (capped at the CA's expiry)")
	f.StringVar(&o.renew.KeyAlgorithm, "key-algorithm", pki.AlgECDSAP256, "key algorithm when signing here: "+strings.Join(pki.KeyAlgorithms, ", "))
	f.StringVar(&o.renew.Discovery.Server, "server", "", "worker: the apiserver (or balancer) HOST:PORT")
	f.StringVar(&o.renew.Discovery.Token, "token", "", "worker: a bootstrap token (kubeadm token create)")
	f.StringSliceVar(&o.renew.Discovery.CACertHashes, "discovery-token-ca-cert-hash", nil, "worker: sha256:<hash> of the cluster CA's public key")
	f.DurationVar(&o.renew.Discovery.Timeout, "discovery-timeout", time.Minute, "worker: how long to wait for cluster-info to be signed for the token")
	return cmd
}

func newKCIssueCmd(o *kubeletClientOptions) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "issue NODE -o FILE",
		Short: "Sign a kubelet client certificate for NODE into FILE (control-plane node)",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return kubeletclient.IssueFile(kubeletclient.IssueOptions{Layout: o.Layout(), Node: args[0], Validity: time.Duration(o.days) * 24 * time.Hour, KeyAlgorithm: o.renew.KeyAlgorithm}, out, o.Streams.Out)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&out, "output", "o", "", "the file to write (certificate and key, 0600)")
	f.IntVar(&o.days, "days", 365, "validity in days (capped at the CA's expiry)")
	f.StringVar(&o.renew.KeyAlgorithm, "key-algorithm", pki.AlgECDSAP256, "key algorithm: "+strings.Join(pki.KeyAlgorithms, ", "))
	return cmd
}

func newKCInstallCmd(o *kubeletClientOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "install FILE",
		Short: "Install a kubelet client certificate issued by 'kubelet-client issue' and restart the kubelet",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			r, err := o.options()
			if err == nil {
				_, err = kubeletclient.InstallFile(c.Context(), r, args[0])
			}
			return err
		},
	}
	addKCNodeFlags(cmd, o)
	return cmd
}
