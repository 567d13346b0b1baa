package cli

import (
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"

	"github.com/certctl/certctl/pkg/flagvalue"
	"github.com/certctl/certctl/pkg/inspect"
	"github.com/certctl/certctl/pkg/kubeletserving"
	"github.com/certctl/certctl/pkg/pki"
)

type kubeletServingOptions struct {
	*Globals
	Kubeconfig string
}

func newKubeletServingCmd(g *Globals) *cobra.Command {
	o := &kubeletServingOptions{Globals: g}
	cmd := &cobra.Command{
		Use:   "kubelet-serving",
		Short: "CA-signed kubelet serving certificates (metrics-server without --kubelet-insecure-tls)",
	}
	cmd.PersistentFlags().StringVar(&o.Kubeconfig, "kubeconfig", "", "kubeconfig to reach the API server (default admin.conf, then ~/.kube/config)")
	cmd.AddCommand(newKSEnableCmd(o), newKSApproveCmd(o), newKSIssueCmd(o), newKSStatusCmd(o), newKSManifestCmd(o))
	return cmd
}

func newKSEnableCmd(o *kubeletServingOptions) *cobra.Command {
	r := kubeletserving.EnableRun{EnableOptions: kubeletserving.EnableOptions{Out: o.Streams.Out}}
	cmd := &cobra.Command{
		Use:   "enable",
		Short: "Turn on serverTLSBootstrap, restart the kubelet, approve its CSR, verify what it serves",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			r.Layout = o.Layout()
			client := func() (kubernetes.Interface, error) { return o.clientset(o.Kubeconfig) }
			return r.Run(c.Context(), client, o.Kubeconfig != "")
		},
	}
	f := cmd.Flags()
	f.StringVar(&r.NodeName, "node-name", "", "this node's name (default: from the kubelet's client certificate)")
	f.BoolVar(&r.Approve, "approve", false, "approve the node's CSR once it passes the checks")
	f.BoolVar(&r.Cluster, "cluster", false, "also set serverTLSBootstrap in kube-system/kubelet-config for nodes that join later")
	f.BoolVar(&r.NoRestart, "no-restart", false, "do not restart the kubelet (you did)")
	f.BoolVar(&r.NewCertificate, "new-certificate", false, "set the kubelet's current serving certificate aside (backup) so that it requests a new one, e.g. from a new cluster CA")
	f.DurationVar(&r.Timeout, "timeout", 3*time.Minute, "how long to wait for the CSR and for the new certificate")
	f.StringSliceVar(&r.Policy.DNSPatterns, "dns-pattern", nil, "extra DNS SAN patterns to allow (glob, e.g. *.nodes.example.com)")
	f.BoolVar(&r.InstallApprover, "install-approver", false, "with --cluster: install the in-cluster approver when it is not there (needs --image)")
	f.StringVar(&r.Image, "image", "", "with --install-approver: an image with certctl at its entrypoint")
	return cmd
}

func newKSManifestCmd(o *kubeletServingOptions) *cobra.Command {
	var mo kubeletserving.ManifestOptions
	cmd := &cobra.Command{
		Use:   "manifest --image IMAGE",
		Short: "Print the in-cluster approver: Deployment, ServiceAccount and minimal RBAC",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return o.write(kubeletserving.Manifest(mo))
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
		r        = kubeletserving.ApproveRun{Out: o.Streams.Out, ErrOut: o.Streams.ErrOut}
		nodeName string
	)
	cmd := &cobra.Command{
		Use:   "approve [CSR...]",
		Short: "Approve pending kubelet-serving CSRs that pass strict checks; deny the others",
		RunE: func(c *cobra.Command, args []string) error {
			cs, err := o.clientset(o.Kubeconfig)
			if err != nil {
				return err
			}
			r.Client, r.Approve.Names = cs, args
			if nodeName != "" {
				r.Approve.Requestor = kubeletserving.NodeUserPrefix + nodeName
			}
			return r.Run(c.Context())
		},
	}
	f := cmd.Flags()
	f.BoolVar(&r.Approve.All, "all", false, "decide every pending kubelet-serving CSR")
	f.BoolVar(&r.Approve.DryRun, "dry-run", false, "say what would be decided, change nothing")
	f.BoolVar(&r.Approve.NoDeny, "no-deny", false, "leave invalid CSRs pending instead of denying them")
	f.BoolVar(&r.Watch, "watch", false, "keep deciding CSRs as they arrive, until interrupted")
	f.StringSliceVar(&r.Approve.Policy.DNSPatterns, "dns-pattern", nil, "extra DNS SAN patterns to allow (glob)")
	flagvalue.FormatVarP(f, &r.Output, "output", "o", []string{"text", "json"}, "output format: text (csr, requestor, action, reason; tab-separated) or json (one object per decision and line)")
	f.StringVar(&nodeName, "node", "", "only the CSRs of this node (requestor system:node:NAME)")
	f.BoolVar(&r.LeaderElect, "leader-elect", false, "with --watch: decide only while holding the Lease (run several replicas)")
	f.StringVar(&r.LeaseNamespace, "lease-namespace", kubeletserving.ApproverNamespace, "namespace of the leader-election Lease")
	f.StringVar(&r.LeaseName, "lease-name", kubeletserving.ApproverName, "name of the leader-election Lease")
	f.StringVar(&r.Identity, "identity", "", "this replica's name in the Lease (default $POD_NAME, else the hostname)")
	f.StringVar(&r.MetricsAddr, "metrics-addr", "", "with --watch: serve Prometheus /metrics and /healthz on this address (e.g. :9402)")
	return cmd
}

func newKSIssueCmd(o *kubeletServingOptions) *cobra.Command {
	var (
		opts      kubeletserving.IssueOptions
		noRestart bool
	)
	cmd := &cobra.Command{
		Use:   "issue --node NAME --ip IP [--dns NAME]...",
		Short: "Sign a kubelet serving certificate with the cluster CA and install it",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			opts.Layout = o.Layout()
			return kubeletserving.IssueAndLoad(c.Context(), opts, noRestart, o.Streams.Out)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Node, "node", "", "the node's name")
	f.IPSliceVar(&opts.IPs, "ip", nil, "the node's IP addresses (repeatable, comma-separated)")
	flagvalue.SANsVar(f, &opts.DNSNames, "dns", "DNS names to include (repeatable, comma-separated)")
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
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cs, err := o.clientset(o.Kubeconfig)
			if err != nil {
				return err
			}
			roots, err := kubeletserving.ClusterRoots(o.Layout())
			if err != nil {
				return err
			}
			opts.Roots = roots
			st, err := kubeletserving.GetStatus(c.Context(), cs, opts)
			if err != nil {
				return err
			}
			if err := kubeletserving.RenderStatus(o.Streams.Out, st, output); err != nil || !st.Fails() {
				return err
			}
			return verdict(inspect.SevCritical, nil)
		},
	}
	f := cmd.Flags()
	f.IntVar(&opts.Port, "port", 10250, "the kubelets' port")
	f.IntVar(&opts.Concurrency, "concurrency", 64, "dials at once")
	f.DurationVar(&opts.Timeout, "timeout", 3*time.Second, "per-dial timeout")
	flagvalue.FormatVarP(f, &output, "output", "o", []string{"table", "json", "yaml"}, "")
	return cmd
}
