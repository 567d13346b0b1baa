package cli

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"

	"github.com/certctl/certctl/pkg/inspect"
	kubeconfigpkg "github.com/certctl/certctl/pkg/kubeconfig"
	"github.com/certctl/certctl/pkg/kubeletserving"
	"github.com/certctl/certctl/pkg/pki"
)

type kubeletServingOptions struct {
	*Globals
	Kubeconfig string
}

// client builds a clientset the way kubectl on a control-plane node would (restConfig).
func (o *kubeletServingOptions) client() (kubernetes.Interface, error) {
	rc, err := o.where(o.Kubeconfig).Config()
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(rc)
}

func newKubeletServingCmd(g *Globals) *cobra.Command {
	o := &kubeletServingOptions{Globals: g}
	cmd := &cobra.Command{
		Use:   "kubelet-serving",
		Short: "CA-signed kubelet serving certificates (metrics-server without --kubelet-insecure-tls)",
		Long: `The kubelet serves :10250 with a self-signed certificate that has no IP SANs unless told
otherwise, so metrics-server fails with "x509: cannot validate certificate for <IP> because it
doesn't contain any IP SANs". These commands fix it the secure way (see docs/kubelet-serving.md):

  enable   serverTLSBootstrap: true, restart the kubelet, approve its CSR, check what it serves
  approve  approve pending kubelet-serving CSRs that pass strict checks, deny the others
  issue    sign a serving certificate for a node with the cluster CA and install it
  status   what every node's kubelet serves, and where metrics-server would fail
  manifest the in-cluster approver (Deployment, RBAC) for nodes that join later`,
	}
	cmd.PersistentFlags().StringVar(&o.Kubeconfig, "kubeconfig", "", "kubeconfig to reach the API server (default admin.conf, then ~/.kube/config)")
	cmd.AddCommand(newKSEnableCmd(o), newKSApproveCmd(o), newKSIssueCmd(o), newKSStatusCmd(o), newKSManifestCmd(o))
	return cmd
}

func newKSEnableCmd(o *kubeletServingOptions) *cobra.Command {
	var (
		node             string
		approve, cluster bool
		noRestart        bool
		newCert          bool
		timeout          time.Duration
		patterns         []string
		installApprover  bool
		image            string
	)
	cmd := &cobra.Command{
		Use:   "enable",
		Short: "Turn on serverTLSBootstrap, restart the kubelet, approve its CSR, verify what it serves",
		Long: `enable sets serverTLSBootstrap: true in /var/lib/kubelet/config.yaml (comments and order kept,
backup first, a no-op when already set), restarts the kubelet (systemctl), waits for the
node's kubernetes.io/kubelet-serving CSR, validates and approves it (--approve; otherwise it
prints the command), then waits until the kubelet serves a certificate signed by the cluster
CA that covers the node's addresses.

On a node without admin credentials (a worker: no admin.conf, no --kubeconfig) it does the
node's part (the config edit, the kubelet restart; the kubelet then files its CSR) and says
where the CSR is approved: by the in-cluster approver, or with 'certctl kubelet-serving
approve --node NAME' on a control-plane node.

--cluster also sets it in kube-system/kubelet-config for nodes that join later, and checks
that something approves their CSRs: the in-cluster approver (installed with
--install-approver --image IMAGE), or it says that nothing does.`,
		Example: `  certctl kubelet-serving enable --approve
  # on a worker (no admin.conf): then approve on a control-plane node
  certctl kubelet-serving enable
  # also for nodes that join later, with the in-cluster approver
  certctl kubelet-serving enable --approve --cluster --install-approver --image registry.example/certctl:v1
  # also for nodes that join later (kube-system/kubelet-config)
  certctl kubelet-serving enable --approve --cluster
  # no systemd here: restart the kubelet yourself, then
  certctl kubelet-serving enable --approve --no-restart`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			ctx := c.Context() // ends on SIGINT and SIGTERM (Execute)
			cs, err := o.client()
			switch {
			case errors.Is(err, kubeconfigpkg.ErrNotFound) && !cluster && o.Kubeconfig == "":
				cs = nil // a worker: the node's part only; approval happens elsewhere
			case err != nil:
				return err
			}
			var manifest []byte
			if installApprover {
				if !cluster {
					return errors.New("--install-approver goes with --cluster")
				}
				if manifest, err = kubeletserving.Manifest(kubeletserving.ManifestOptions{Image: image, DNSPatterns: patterns}); err != nil {
					return err
				}
			}
			_, err = kubeletserving.Enable(ctx, kubeletserving.EnableOptions{
				Layout: o.Layout(), NodeName: node, Client: cs, Approve: approve, Cluster: cluster, NoRestart: noRestart, NewCertificate: newCert,
				Policy: kubeletserving.Policy{DNSPatterns: patterns}, Timeout: timeout, Out: o.Streams.Out, ApproverManifest: manifest,
			})
			if err != nil {
				return err
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&node, "node-name", "", "this node's name (default: from the kubelet's client certificate)")
	f.BoolVar(&approve, "approve", false, "approve the node's CSR once it passes the checks")
	f.BoolVar(&cluster, "cluster", false, "also set serverTLSBootstrap in kube-system/kubelet-config for nodes that join later")
	f.BoolVar(&noRestart, "no-restart", false, "do not restart the kubelet (you did)")
	f.BoolVar(&newCert, "new-certificate", false, "set the kubelet's current serving certificate aside (backup) so that it requests a new one, e.g. from a new cluster CA")
	f.DurationVar(&timeout, "timeout", 3*time.Minute, "how long to wait for the CSR and for the new certificate")
	f.StringSliceVar(&patterns, "dns-pattern", nil, "extra DNS SAN patterns to allow (glob, e.g. *.nodes.example.com)")
	f.BoolVar(&installApprover, "install-approver", false, "with --cluster: install the in-cluster approver when it is not there (needs --image)")
	f.StringVar(&image, "image", "", "with --install-approver: an image with certctl at its entrypoint")
	return cmd
}

func newKSManifestCmd(o *kubeletServingOptions) *cobra.Command {
	var mo kubeletserving.ManifestOptions
	cmd := &cobra.Command{
		Use:   "manifest --image IMAGE",
		Short: "Print the in-cluster approver: Deployment, ServiceAccount and minimal RBAC",
		Long: `manifest prints the in-cluster approver of kubelet serving certificates: a Deployment of two
replicas running 'certctl kubelet-serving approve --watch --leader-elect' (one leads, on a
Lease; the other takes over when it goes), its ServiceAccount, and the minimal RBAC: get, list
and watch CSRs and Nodes, update certificatesigningrequests/approval, the approve verb on the
kubernetes.io/kubelet-serving signer only, and its own Lease. Prometheus metrics on
:9402/metrics (approved, denied by reason). Nodes that join after 'enable --cluster' then get
their serving certificates with no command run.`,
		Example: `  certctl kubelet-serving manifest --image registry.example/certctl:v1 | kubectl apply -f -
  kubectl -n kube-system logs deploy/certctl-kubelet-serving-approver`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			out, err := kubeletserving.Manifest(mo)
			if err != nil {
				return err
			}
			_, err = o.Streams.Out.Write(out)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&mo.Image, "image", "", "an image with certctl at its entrypoint (required)")
	f.StringVar(&mo.Namespace, "namespace", kubeletserving.ApproverNamespace, "namespace")
	f.StringVar(&mo.Name, "name", kubeletserving.ApproverName, "name of every object and of the Lease")
	f.IntVar(&mo.Replicas, "replicas", 2, "replicas (one leads)")
	f.IntVar(&mo.MetricsPort, "metrics-port", 9402, "port of /metrics and /healthz")
	f.StringSliceVar(&mo.DNSPatterns, "dns-pattern", nil, "extra DNS SAN patterns to allow (glob)")
	f.BoolVar(&mo.NoDeny, "no-deny", false, "leave invalid CSRs pending instead of denying them")
	return cmd
}

func newKSApproveCmd(o *kubeletServingOptions) *cobra.Command {
	var (
		opts     kubeletserving.ApproveOptions
		watch    bool
		output   string
		patterns []string
		nodeName string
		le       kubeletserving.ApproverOptions
		leader   bool
		metrics  string
	)
	cmd := &cobra.Command{
		Use:   "approve [CSR...]",
		Short: "Approve pending kubelet-serving CSRs that pass strict checks; deny the others",
		Long: `approve decides pending kubernetes.io/kubelet-serving CSRs. One is approved only when all of
these hold: the signer is kubernetes.io/kubelet-serving; the requestor is system:node:<name>
in group system:nodes; the subject CN is the requestor and O is system:nodes; the usages are
exactly digital signature and server auth (plus key encipherment for RSA keys); every IP SAN
is one of that Node's addresses and every DNS SAN one of its names (or matches
--dns-pattern); there is no email or URI SAN; the Node exists. Anything else is denied (or
left pending with --no-deny), with the reason printed and written into the CSR's condition.
A node must never get a certificate for another node's address.

A CSR of another signer is never decided: --all passes over it, and naming one is refused
with an error (nothing is decided then), leaving it to kubectl certificate approve|deny.`,
		Example: `  certctl kubelet-serving approve --all --dry-run
  certctl kubelet-serving approve --all --dry-run -o json | jq -r 'select(.action=="would-deny") | .csr'
  certctl kubelet-serving approve --all
  certctl kubelet-serving approve csr-8xk2p
  # the CSR of one node (after 'enable' on that worker)
  certctl kubelet-serving approve --node worker-1
  # keep approving as CSRs arrive
  certctl kubelet-serving approve --watch --no-deny
  # as the in-cluster approver does (see 'certctl kubelet-serving manifest')
  certctl kubelet-serving approve --watch --leader-elect --metrics-addr :9402`,
		RunE: func(c *cobra.Command, args []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("unknown output format %q (want text or json)", output)
			}
			ctx := c.Context() // ends on SIGINT and SIGTERM (Execute)
			cs, err := o.client()
			if err != nil {
				return err
			}
			opts.Names = args
			opts.Policy.DNSPatterns = patterns
			if nodeName != "" {
				opts.Requestor = kubeletserving.NodeUserPrefix + nodeName
			}
			print := func(d kubeletserving.Decision) {
				if err := kubeletserving.WriteDecision(o.Streams.Out, output, d); err != nil {
					fmt.Fprintf(o.Streams.ErrOut, "warning: %v\n", err)
				}
			}
			if (leader || metrics != "") && !watch {
				return errors.New("--leader-elect and --metrics-addr go with --watch")
			}
			if watch {
				le.Client, le.Approve, le.Report = cs, opts, print
				le.Log = func(format string, a ...any) { fmt.Fprintf(o.Streams.ErrOut, format+"\n", a...) }
				return kubeletserving.Serve(ctx, kubeletserving.ServeOptions{ApproverOptions: le, LeaderElect: leader, MetricsAddr: metrics})
			}
			ds, err := kubeletserving.Approve(ctx, cs, opts)
			for _, d := range ds {
				print(d)
			}
			if err != nil {
				return err
			}
			if len(ds) == 0 && output == "text" {
				fmt.Fprintln(o.Streams.Out, "no pending kubelet-serving CSR")
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&opts.All, "all", false, "decide every pending kubelet-serving CSR")
	f.BoolVar(&opts.DryRun, "dry-run", false, "say what would be decided, change nothing")
	f.BoolVar(&opts.NoDeny, "no-deny", false, "leave invalid CSRs pending instead of denying them")
	f.BoolVar(&watch, "watch", false, "keep deciding CSRs as they arrive, until interrupted")
	f.StringSliceVar(&patterns, "dns-pattern", nil, "extra DNS SAN patterns to allow (glob)")
	f.StringVarP(&output, "output", "o", "text", "output format: text (csr, requestor, action, reason; tab-separated) or json (one object per decision and line)")
	f.StringVar(&nodeName, "node", "", "only the CSRs of this node (requestor system:node:NAME)")
	f.BoolVar(&leader, "leader-elect", false, "with --watch: decide only while holding the Lease (run several replicas)")
	f.StringVar(&le.LeaseNamespace, "lease-namespace", kubeletserving.ApproverNamespace, "namespace of the leader-election Lease")
	f.StringVar(&le.LeaseName, "lease-name", kubeletserving.ApproverName, "name of the leader-election Lease")
	f.StringVar(&le.Identity, "identity", "", "this replica's name in the Lease (default $POD_NAME, else the hostname)")
	f.StringVar(&metrics, "metrics-addr", "", "with --watch: serve Prometheus /metrics and /healthz on this address (e.g. :9402)")
	return cmd
}

func newKSIssueCmd(o *kubeletServingOptions) *cobra.Command {
	var (
		opts      kubeletserving.IssueOptions
		ips       []string
		noRestart bool
	)
	cmd := &cobra.Command{
		Use:   "issue --node NAME --ip IP [--dns NAME]...",
		Short: "Sign a kubelet serving certificate with the cluster CA and install it",
		Long: `issue signs a serving certificate for a node with the cluster CA (CN system:node:NAME,
O system:nodes, the SANs given), installs it as /var/lib/kubelet/pki/kubelet-server-certctl.{crt,key}
(backup first, key 0600), points tlsCertFile/tlsPrivateKeyFile at it in the kubelet config, and
restarts the kubelet. Run it on a control-plane node (it needs ca.key), for a worker with
--root pointing at that worker's files, or copy the two files over. The certificate does not
rotate by itself: renew it before it expires, or prefer 'enable'.`,
		Example: `  certctl kubelet-serving issue --node worker-1 --ip 10.2.1.198 --dns worker-1
  certctl --root /mnt/worker-1 kubelet-serving issue --node worker-1 --ip 10.2.1.198 --no-restart`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			var err error
			if opts.IPs, err = pki.ParseIPs(ips); err != nil {
				return fmt.Errorf("--ip: %w", err)
			}
			if len(opts.DNSNames) > 0 {
				if opts.DNSNames, err = pki.ParseSANs(opts.DNSNames); err != nil {
					return fmt.Errorf("--dns: %w", err)
				}
			}
			opts.Layout = o.Layout()
			res, err := kubeletserving.Issue(opts)
			if err != nil {
				return err
			}
			w := o.Streams.Out
			fmt.Fprintf(w, "issued %s (and %s), valid until %s, backup %s\n", res.CertPath, res.KeyPath, res.Cert.NotAfter.UTC().Format(time.RFC3339), res.BackupID)
			if res.Capped {
				fmt.Fprintln(w, "note: the validity was cut at the cluster CA's expiry")
			}
			if res.BootstrapOn {
				fmt.Fprintln(w, "warning: serverTLSBootstrap is true in the kubelet config: the kubelet then ignores tlsCertFile; set it to false to use this certificate")
			}
			if noRestart {
				fmt.Fprintln(w, "restart the kubelet to load it: systemctl restart kubelet")
				return nil
			}
			ctx := c.Context() // ends on SIGINT and SIGTERM (Execute)
			if err := (restartKubelet{o.Layout()}).Restart(ctx); err != nil {
				return err
			}
			fmt.Fprintln(w, "kubelet restarted")
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Node, "node", "", "the node's name")
	f.StringSliceVar(&ips, "ip", nil, "the node's IP addresses (repeatable, comma-separated)")
	f.StringSliceVar(&opts.DNSNames, "dns", nil, "DNS names to include (repeatable, comma-separated)")
	f.IntVar(&opts.Days, "days", 365, "validity in days (capped at the CA's expiry)")
	f.StringVar(&opts.KeyAlgorithm, "key-algorithm", pki.AlgECDSAP256, "key algorithm: "+strings.Join(pki.KeyAlgorithms, ", "))
	f.BoolVar(&noRestart, "no-restart", false, "do not restart the kubelet")
	return cmd
}

func newKSStatusCmd(o *kubeletServingOptions) *cobra.Command {
	var (
		opts   kubeletserving.StatusOptions
		output string
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "What every node's kubelet serves, and where metrics-server would fail",
		Long: `status lists the Nodes, dials each one's InternalIP:10250 over TLS (--concurrency at a
time, --timeout each) and reports whether the certificate is signed by the cluster CA, when it
expires, which of the node's addresses it does not cover, and whether a verifying
metrics-server (without --kubelet-insecure-tls) would fail on it; then the pending
kubelet-serving CSRs.`,
		Example: `  certctl kubelet-serving status
  certctl kubelet-serving status -o json | jq '.nodes[] | select(.metricsServerFails)'`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if output != "table" && output != "json" && output != "yaml" {
				return fmt.Errorf("unknown output format %q (want table, json or yaml)", output)
			}
			ctx := c.Context() // ends on SIGINT and SIGTERM (Execute)
			cs, err := o.client()
			if err != nil {
				return err
			}
			roots, err := kubeletserving.ClusterRoots(o.Layout())
			if err != nil {
				return err
			}
			opts.Roots = roots
			st, err := kubeletserving.GetStatus(ctx, cs, opts)
			if err != nil {
				return err
			}
			if err := kubeletserving.RenderStatus(o.Streams.Out, st, output); err != nil {
				return err
			}
			for _, n := range st.Nodes {
				if n.MetricsServerFails {
					return verdict(inspect.SevCritical, nil)
				}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&opts.Port, "port", 10250, "the kubelets' port")
	f.IntVar(&opts.Concurrency, "concurrency", 64, "dials at once")
	f.DurationVar(&opts.Timeout, "timeout", 3*time.Second, "per-dial timeout")
	f.StringVarP(&output, "output", "o", "table", "output format: table, json, yaml")
	return cmd
}
