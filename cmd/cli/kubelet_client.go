package cli

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"

	"github.com/certctl/certctl/pkg/fsutil"
	"github.com/certctl/certctl/pkg/kubeletclient"
	"github.com/certctl/certctl/pkg/pki"
)

type kubeletClientOptions struct {
	*Globals
	renew      kubeletclient.RenewOptions
	days       int
	kubeconfig string
}

func (o *kubeletClientOptions) options() (kubeletclient.RenewOptions, error) {
	r := o.renew
	r.Layout = o.Layout()
	r.Out = o.Streams.Out
	r.Validity = time.Duration(o.days) * 24 * time.Hour
	if !r.NoRestart {
		r.Restart = restartKubelet{r.Layout}
	}
	// admin.conf (or --kubeconfig) reads the Node; a worker has none: its new credentials do.
	rc, err := o.where(o.kubeconfig).AdminConfig()
	if err != nil || rc == nil {
		return r, err
	}
	r.Client, err = kubernetes.NewForConfig(rc)
	return r, err
}

func newKubeletClientCmd(g *Globals) *cobra.Command {
	o := &kubeletClientOptions{Globals: g}
	cmd := &cobra.Command{
		Use:   "kubelet-client",
		Short: "Repair the kubelet's own client certificate in place (no kubeadm reset, no re-join)",
		Long: `The kubelet authenticates to the apiserver with /var/lib/kubelet/pki/kubelet-client-current.pem
(kubelet.conf points at it). When it has expired or is missing, the node goes NotReady and the
kubelet cannot rotate it any more. These commands repair it without resetting the node: only
kubelet files change and only the kubelet restarts; the running containers stay
(see docs/kubelet-client.md):

  renew    on a control-plane node: sign a new one with the cluster CA;
           on a worker (--server/--token/--discovery-token-ca-cert-hash): let the kubelet
           bootstrap a new one with a token, as kubeadm join does
  issue    sign one for a node into a file (on a control-plane node)
  install  install such a file on the node (a worker without bootstrap tokens)`,
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
		Long: `renew repairs the kubelet's client certificate.

On a control-plane node (ca.key present) it signs a new certificate for system:node:<node> in
group system:nodes with the cluster CA (what 'kubeadm kubeconfig user --org system:nodes
--client-name system:node:<node>' makes), writes it as the kubelet does
(/var/lib/kubelet/pki/kubelet-client-<YYYY-MM-DD-HH-MM-SS>.pem, certificate and key, 0600, and
the kubelet-client-current.pem link), makes kubelet.conf point at that link, restarts the
kubelet and waits until the Node is Ready. The node name comes from the old certificate (even
expired, or the newest kubelet-client-*.pem left), else kubelet.conf, else --node.

On a worker, give what 'kubeadm token create --print-join-command' prints: the cluster CA is
verified against the hash exactly as kubeadm join does, bootstrap-kubelet.conf is written,
kubelet.conf and the old certificate are set aside (backup first), and the restarted kubelet
requests a new certificate that the cluster approves as for a join. The token file is removed
once the kubelet has its certificate.

Everything is backed up first ('certctl backup list', 'certctl restore ID').`,
		Example: `  # control-plane node
  certctl kubelet-client renew
  # worker
  certctl kubelet-client renew --server 10.2.1.139:6443 --token abcdef.0123456789abcdef \
    --discovery-token-ca-cert-hash sha256:1f0c...
  # the kubelet is not a systemd unit here: restart it yourself when told
  certctl kubelet-client renew --no-restart`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			ctx := c.Context() // ends on SIGINT and SIGTERM (Execute)
			r, err := o.options()
			if err != nil {
				return err
			}
			if _, err := kubeletclient.Renew(ctx, r); err != nil {
				return err
			}
			return nil
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
		Long: `issue signs a client certificate for system:node:NODE in group system:nodes with the cluster CA
(needs ca.key) and writes certificate and key into FILE (0600): the format of the kubelet's
kubelet-client-*.pem. Copy it to the node over a secure channel and run 'certctl
kubelet-client install FILE' there; then delete it. For clusters without bootstrap tokens.`,
		Example: `  certctl kubelet-client issue worker-1 -o /root/worker-1-client.pem
  scp /root/worker-1-client.pem worker-1:/root/ && ssh worker-1 certctl kubelet-client install /root/worker-1-client.pem`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if out == "" {
				return fmt.Errorf("-o FILE is required")
			}
			issued, err := kubeletclient.Issue(kubeletclient.IssueOptions{Layout: o.Layout(), Node: args[0], Validity: time.Duration(o.days) * 24 * time.Hour, KeyAlgorithm: o.renew.KeyAlgorithm})
			if err != nil {
				return err
			}
			if err := fsutil.WriteFileAtomic(out, issued.PEM, 0o600); err != nil {
				return err
			}
			fmt.Fprintf(o.Streams.Out, "wrote %s: %s, valid until %s\ninstall it on %s: certctl kubelet-client install %s\n", out, issued.Cert.Subject.CommonName, issued.Cert.NotAfter.UTC().Format(time.RFC3339), args[0], filepath.Base(out))
			if issued.Capped {
				fmt.Fprintln(o.Streams.Out, "note: the validity was cut at the cluster CA's expiry")
			}
			return nil
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
		Long: `install checks FILE (certificate and key match, CN system:node:<this node>, O system:nodes,
client auth, valid now, signed by the cluster CA kubelet.conf trusts), writes it as the kubelet
does (kubelet-client-<time>.pem and the kubelet-client-current.pem link; backup first), makes
kubelet.conf point at the link, restarts the kubelet and waits until the Node is Ready (with
the node's own new credentials when there is no admin.conf).`,
		Example: `  certctl kubelet-client install /root/worker-1-client.pem
  certctl kubelet-client install /root/worker-1-client.pem --no-restart`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			ctx := c.Context() // ends on SIGINT and SIGTERM (Execute)
			r, err := o.options()
			if err != nil {
				return err
			}
			if _, err := kubeletclient.InstallFile(ctx, r, args[0]); err != nil {
				return err
			}
			return nil
		},
	}
	addKCNodeFlags(cmd, o)
	return cmd
}
