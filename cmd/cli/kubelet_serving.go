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
		Args:  cobra.NoArgs,
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
		Args:  cobra.NoArgs,
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
		Args:  cobra.NoArgs,
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
		Args:  cobra.NoArgs,
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
