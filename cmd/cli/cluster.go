package cli

import (
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/certctl/certctl/pkg/apiretry"
	"github.com/certctl/certctl/pkg/cluster"
	"github.com/certctl/certctl/pkg/inspect"
	"github.com/certctl/certctl/pkg/lease"
	"github.com/certctl/certctl/pkg/monitoring"
	"github.com/certctl/certctl/pkg/pki"
)

// DefaultImage is the image `make image` builds and the lab imports into every node.
const DefaultImage = "localhost/certctl:dev"

type clusterOptions struct {
	*Globals
	Kubeconfig string
	Image      string
	Namespace  string
	// APIWait: how long a request waits for an API that refuses connections or is not ready
	// (an apiserver restarting under the command), at the start and all through the run.
	APIWait time.Duration
}

// restConfig is the kubeconfig's client configuration, its requests waiting out an apiserver
// restart (pkg/apiretry) for up to --api-wait, said on stderr.
func (o *clusterOptions) restConfig() (*rest.Config, error) {
	rc, err := o.where(o.Kubeconfig).Config()
	if err != nil {
		return nil, err
	}
	apiretry.Wrap(rc, apiretry.Options{Wait: o.APIWait, Logf: func(format string, a ...any) {
		fmt.Fprintf(o.Streams.ErrOut, "certctl: "+format+"\n", a...)
	}})
	return rc, nil
}

func (o *clusterOptions) clients() (kubernetes.Interface, *x509.CertPool, error) {
	cs, roots, _, err := o.connect()
	return cs, roots, err
}

// connect is clients with the client configuration they were made from (one read of the
// kubeconfig).
func (o *clusterOptions) connect() (kubernetes.Interface, *x509.CertPool, *rest.Config, error) {
	rc, err := o.restConfig()
	if err != nil {
		return nil, nil, nil, err
	}
	cs, roots, err := cluster.Clients(rc)
	return cs, roots, rc, err
}

func newClusterCmd(g *Globals) *cobra.Command {
	o := &clusterOptions{Globals: g}
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Every node's certificates, through Kubernetes itself (Jobs pinned to nodes)",
		Long: `cluster runs certctl on every node through Kubernetes: one short-lived Job per node,
pinned with nodeName and tolerating every taint, with the node's / at /host. No SSH and no
agent: the image (--image) is certctl itself. See docs/cluster.md for what runs where and
the RBAC.

  status   every node's certificates in one table, plus what each kubelet serves
  renew    renew the control-plane nodes one at a time, each verified before the next
  endpoint move the cluster onto its load balancer (case B), one node at a time
  ca-rotate  replace the cluster's CAs on every node, phase by phase, the API never down`,
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&o.Kubeconfig, "kubeconfig", "", "kubeconfig to reach the API server (default admin.conf, then ~/.kube/config)")
	pf.StringVar(&o.Image, "image", DefaultImage, "image whose entrypoint is certctl, present on (or pullable by) every node")
	pf.StringVar(&o.Namespace, "namespace", "kube-system", "namespace of the Jobs")
	pf.DurationVar(&o.APIWait, "api-wait", 2*time.Minute, "how long a request waits for an API that refuses connections or is not ready yet (an apiserver restarting under the command), at the start and all through the run; a certificate it cannot verify (all expired) ends the wait at once")
	cmd.AddCommand(newClusterStatusCmd(o), newClusterRenewCmd(o), newClusterEndpointCmd(o), newClusterCARotateCmd(o))
	return cmd
}

func newClusterStatusCmd(o *clusterOptions) *cobra.Command {
	var (
		output string
		opts   cluster.StatusOptions
		events bool
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Every node's certificates in one table",
		Long: `status runs 'certctl inspect' (its report as a typed record) on every node through a Job pinned
to it (host / mounted read-only, no service-account token, deleted afterwards), at most
--concurrency at a time, and prints one table: node, certificate, expiry, residual time,
status, findings; then each kubelet's serving certificate as 'kubelet-serving status' sees it.
A node whose Job cannot run (NotReady, image missing, no answer within --timeout) is listed
with the reason.

Every warning or critical finding is also recorded as an Event on its Node (reason
CertificateExpiring, CertificateExpired, ...; 'kubectl get events -n default'), the same finding
counting up one Event run after run (--events=false: none; docs/monitoring.md).

Exit codes as inspect: 0 healthy, 1 warnings, 2 critical (a node that did not report counts
as critical), 3 error.`,
		Example: `  certctl cluster status
  certctl cluster status -o json | jq '.nodes[] | select(.ran | not)'
  certctl cluster status --image registry.example.com/certctl:v1 --timeout 2m`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := inspect.ValidFormat(output); err != nil || output == "prometheus" {
				return fmt.Errorf("unknown output format %q (want table, wide, json or yaml)", output)
			}
			ctx := c.Context() // ends on SIGINT and SIGTERM (Execute)
			cs, roots, err := o.clients()
			if err != nil {
				return err
			}
			opts.Namespace, opts.Image, opts.Roots = o.Namespace, o.Image, roots
			rep, err := cluster.Status(ctx, cs, opts)
			if err != nil {
				return err
			}
			if events {
				for _, n := range rep.Nodes {
					if !n.Ran {
						continue
					}
					if _, err := monitoring.Record(ctx, cs, monitoring.RecordOptions{Node: n.Node, Report: n.Report}); err != nil {
						fmt.Fprintf(o.Streams.ErrOut, "warning: events on node %s: %v\n", n.Node, err)
					}
				}
			}
			if err := rep.Render(o.Streams.Out, output); err != nil {
				return err
			}
			return verdict(rep.Worst(), nil)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&output, "output", "o", "table", "output format: table, wide, json, yaml")
	f.DurationVar(&opts.JobTimeout, "timeout", 60*time.Second, "per node: from creating its Job to its result")
	f.IntVar(&opts.Concurrency, "concurrency", 16, "nodes at once")
	f.StringSliceVar(&opts.Nodes, "node", nil, "only these nodes (repeatable)")
	f.BoolVar(&events, "events", true, "record an Event on each Node for its warning and critical findings")
	return cmd
}

func newClusterRenewCmd(o *clusterOptions) *cobra.Command {
	var (
		opts      cluster.RenewOptions
		sans      []string
		threshold string
	)
	cmd := &cobra.Command{
		Use:   "renew [NAME...|all]",
		Short: "Renew the control-plane nodes one at a time, the API never down",
		Long: `renew renews the certificates of every control-plane node, one node at a time. For each
node a privileged Job pinned to it runs 'certctl renew NAMES ... --restart --yes' there
(the host's PID and network namespaces, the host's / at /host); then certctl checks from here
that the node's own apiserver (https://NODE_IP:6443) is ready and serves a certificate that
verifies against the cluster CA, covers every --san and is the renewed one, before the next
node starts. It stops at the first node that fails (that node rolled back by its own
renewal, the others untouched) and says which and why; the same command again resumes there.
If this command is killed (its terminal gone), the same command again takes the Lease over at
once from its dead holder on this machine, and waits for the node Job the killed run left and
takes its result instead of renewing that node twice.

--san is also recorded in kube-system/kubeadm-config (ClusterConfiguration.apiServer.certSANs,
or etcd.local.serverCertSANs/peerCertSANs for those names) once, by this command, before the
first node; the nodes' Jobs run with --skip-kubeadm-config. --dry-run shows that change without
making it; --skip-kubeadm-config leaves the ConfigMap alone.

A Lease (kube-system/certctl-renew) keeps two runs, or a run and a scheduled CronJob of
'certctl schedule manifest' (certctl renew --lease), from working at once; the nodes' Jobs take
no Lease, this command holds it for them. Workers are not touched. When the API is unreachable (every apiserver
certificate expired), the command prints what to run on each node instead.`,
		Example: `  # case B on every control-plane node: the load balancer's address added
  certctl cluster renew apiserver --san 10.2.1.139

  # everything that expires within 30 days, 1 year validity
  certctl cluster renew all --if-expiring-within 30d

  # the plan of every node, nothing changed
  certctl cluster renew all --days 3650 --dry-run`,
		RunE: func(c *cobra.Command, args []string) error {
			ctx := c.Context() // ends on SIGINT and SIGTERM (Execute)
			parsed, err := pki.ParseSANs(sans)
			if err != nil {
				return err
			}
			opts.SANs, opts.Names = parsed, args
			if threshold != "" {
				d, err := inspect.ParseDuration(threshold)
				if err != nil || d <= 0 {
					return fmt.Errorf("--if-expiring-within %q: want a positive duration such as 30d", threshold)
				}
				opts.IfExpiringWithin, opts.IfExpiringArg = d, threshold
			}
			cs, roots, err := o.clients()
			if err != nil {
				return err
			}
			opts.Namespace, opts.Image, opts.Roots, opts.Progress = o.Namespace, o.Image, roots, o.Streams.ErrOut
			rep, err := cluster.Renew(ctx, cs, opts)
			if rep != nil {
				rep.Print(o.Streams.Out)
			}
			if err != nil {
				var held *lease.HeldError
				if errors.As(err, &held) {
					return err
				}
				return verdict(inspect.SevCritical, err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&sans, "san", nil, "IP or DNS name to add to the apiserver certificate of every control-plane node")
	f.IntVar(&opts.Days, "days", 0, "validity in days (default: certctl renew's)")
	f.StringVar(&threshold, "if-expiring-within", "", "renew only what expires within this window (e.g. 30d)")
	f.BoolVar(&opts.SkipKubeadmConfig, "skip-kubeadm-config", false, "do not record --san in kube-system/kubeadm-config")
	f.StringSliceVar(&opts.Nodes, "node", nil, "only these control-plane nodes, in this order (default: all, by name)")
	f.BoolVar(&opts.DryRun, "dry-run", false, "print every node's plan, change nothing")
	f.DurationVar(&opts.JobTimeout, "job-timeout", 10*time.Minute, "one node's renewal")
	f.DurationVar(&opts.VerifyTimeout, "verify-timeout", 3*time.Minute, "a node's apiserver ready with its renewed certificate, after its Job")
	f.DurationVar(&opts.StopGrace, "stop-grace", 3*time.Second, "passed to each node's restart: an old apiserver finishes the requests in flight (the load balancer sends new ones elsewhere) before it is killed")
	f.DurationVar(&opts.LBDrain, "lb-drain", 3*time.Second, lbDrainHelp)
	return cmd
}

func newClusterEndpointCmd(o *clusterOptions) *cobra.Command {
	var opts cluster.EndpointOptions
	cmd := &cobra.Command{
		Use:   "endpoint HOST:PORT",
		Short: "Move the whole cluster onto a load balancer's address (case B), the API never down",
		Long: `endpoint moves a cluster made with controlPlaneEndpoint on its first node onto the load
balancer put in front of its apiservers later, so that the first node stops being a single
point of failure. In order, under the Lease kube-system/certctl-renew:

  1. refuses unless every control-plane node's apiserver is ready and HOST:PORT already serves
     the cluster (a certificate chaining to the cluster CA);
  2. adds HOST to the apiserver certificate of every control-plane node that lacks it (as
     'certctl cluster renew apiserver --san HOST': one node at a time, each verified);
  3. sets controlPlaneEndpoint in kube-system/kubeadm-config (what later joins and upgrades
     use) and the server of kube-public/cluster-info (what 'kubeadm join' discovers), and of
     kube-system/kube-proxy's kubeconfig when the cluster has one;
  4. on every node, the control-plane nodes one at a time, then the workers in waves of
     --max-parallel: a Job runs 'certctl kubeconfig set-server HOST:PORT' (admin.conf,
     super-admin.conf, kubelet.conf; backed up, atomic), which restarts the kubelet; the next
     node (wave) starts when the kubelets report again (node Lease renewed, Node Ready)
     through the new endpoint;
  5. points the kubeconfig this command used (and ~/.kube/config) at HOST:PORT when they used
     the old endpoint.

Files that name another server (controller-manager.conf and scheduler.conf point at the
node's own apiserver) are left alone. A run that fails stops at that node; the nodes before it
use the new endpoint, the others the old one (both work once the SAN is in place); the same
command again goes on (a wave in which workers failed names each; the others of that wave are
done). --dry-run prints every node's plan and changes nothing.`,
		Example: `  # what would change, on every node
  certctl cluster endpoint 10.2.1.139:6443 --dry-run

  # move the cluster onto its load balancer
  certctl cluster endpoint 10.2.1.139:6443

  # a large cluster: 50 workers at a time
  certctl cluster endpoint 10.2.1.139:6443 --max-parallel 50`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			ctx := c.Context() // ends on SIGINT and SIGTERM (Execute)
			cs, roots, err := o.clients()
			if err != nil {
				return err
			}
			opts.Endpoint, opts.Namespace, opts.Image, opts.Roots, opts.Progress = args[0], o.Namespace, o.Image, roots, o.Streams.ErrOut
			rep, err := cluster.Endpoint(ctx, cs, opts)
			if err == nil && !opts.DryRun {
				rep.Local, err = o.local().MoveServer(rep.From, rep.To)
			}
			if rep != nil {
				rep.Print(o.Streams.Out)
			}
			return err
		},
	}
	f := cmd.Flags()
	f.BoolVar(&opts.DryRun, "dry-run", false, "print every node's plan and what would change in the cluster, change nothing")
	f.DurationVar(&opts.JobTimeout, "job-timeout", 10*time.Minute, "one node's Job")
	f.DurationVar(&opts.VerifyTimeout, "verify-timeout", 3*time.Minute, "an apiserver ready with its new SAN, after its Job")
	f.DurationVar(&opts.ReadyTimeout, "ready-timeout", 2*time.Minute, "a node's kubelet reporting again after its restart")
	f.DurationVar(&opts.StopGrace, "stop-grace", 3*time.Second, "as for cluster renew, when the SAN is added")
	f.DurationVar(&opts.LBDrain, "lb-drain", 3*time.Second, "as for cluster renew, when the SAN is added")
	f.Var(&opts.MaxParallel, "max-parallel", maxParallelHelp)
	return cmd
}

// local is the kubeconfig the command used and the user's, those that exist.
func (o *clusterOptions) local() cluster.Local {
	l := o.Layout()
	return cluster.LocalKubeconfigs(l.Root, o.Kubeconfig, l.UserKubeconfig)
}

func newClusterCARotateCmd(o *clusterOptions) *cobra.Command {
	var opts cluster.CARotateOptions
	cmd := &cobra.Command{
		Use:   "ca-rotate [ca|etcd-ca|front-proxy-ca|sa|all]... --phase trust|issue|drop",
		Short: "Replace the cluster's CAs (and service-account key) on every node, one phase at a time, the API never down",
		Long: `ca-rotate runs one phase of the rotation of the CAs named ('certctl ca rotate CA...'; default
the cluster CA "ca"; "sa" is the service-account signing key pair; "all" is ca, etcd-ca,
front-proxy-ca and sa together) on every node that holds them (the cluster CA: every node;
etcd-ca, front-proxy-ca and sa: the control-plane nodes only)
through Jobs pinned to them: the control-plane nodes one at a time, then the workers in waves
of --max-parallel (default 25% of the workers, at least 4), each node's components restarted by its Job and
verified from here before the next node or wave starts (its apiserver ready and serving a
certificate of the expected CA, its kubelet reporting again; a wave in which workers failed
stops the run naming each), under the Lease kube-system/certctl-renew. Run the phases in
order, each on the whole cluster before the next:

  trust  a new CA per CA named (same subject and key algorithm as the old one, --days) is made
         here and kept in the Secret certctl-ca-rotation of --namespace (the old etcd and
         front-proxy CAs are read from every control-plane node with 'certctl ca show', and must
         be the same on all); each control-plane node's Job mounts the certificates and keys,
         each worker's the cluster CA's certificate only; every verifier on every node trusts
         old + new; for the cluster CA kube-public/cluster-info carries both, and certctl waits
         until the controller-manager has published both in every namespace's kube-root-ca.crt
         (what pods' service-account ca.crt is), so pods keep talking to the API.
  issue  every node's certificates re-issued by the new CA (the control-plane nodes sign with
         it from now on); a worker's kubelet client certificate through a CSR signed by the
         controller-manager and handed to the node in a Secret of its own, its serving
         certificate (when the old CA signed it) through the kubelet's own CSR. The apiservers
         serve the new CA cross-signed by the old after their certificates, so pods whose
         client read only the old CA keep talking to the API: no pod is restarted.
  drop   every verifier back to the new CA alone; cluster-info and kube-root-ca.crt too; the
         Secret deleted. A certificate of the old CA is refused from then on.

For sa: trust makes every apiserver verify tokens of the old and the new key (its JWKS
publishes both), issue makes them and the controller-managers sign with the new key, drop
removes the old key. Before drop, every legacy service-account token Secret must hold a token
of the new key (refused otherwise, each named, with the command that re-issues it), and every
node (workers too) runs 'certctl ca tokens --refresh': its kubelet re-requests the pods'
tokens, signed by the new key, and the clients get a minute to read them. Each apiserver is
checked at its own address after its node's Job (its JWKS, and the key of a token it issues).

After each phase certctl waits until kube-system/extension-apiserver-authentication (what
extension API servers such as metrics-server verify clients with: client-ca-file for the
cluster CA, requestheader-client-ca-file for front-proxy-ca) carries what the apiservers now
verify with; the apiservers only ever add to it, so after drop certctl takes the old CA out.

Each node's apiserver is taken out of the load balancer before it or its etcd restarts
(--lb-drain). Every phase of etcd-ca restarts etcd on each control-plane node: it is refused
before anything changes while a control-plane node's etcd pod is missing or not ready (every
member's state is printed), and each node's Job asks etcd itself again before its member
stops. A run that was killed is run again as it was: it takes the Lease over from its dead
holder on the same machine at once, and waits for the node Job the killed run left instead of
running it twice. After each phase the kubeconfig this command used (and ~/.kube/config) trust what the cluster now
serves. --dry-run prints every node's plan. --rollback undoes trust or issue on every node where
it is the last phase applied (in reverse order; --phase names it, otherwise the cluster shows
it); after trust's rollback cluster-info and kube-root-ca.crt hold the old CA alone again and the
Secret is deleted (rolling back etcd-ca or front-proxy-ca needs --phase). After drop, roll back
node by node. Run the phases of one rotation with the same CAs; one rotation at a time. See
docs/ca-rotation.md.`,
		Example: `  certctl cluster ca-rotate --phase trust --dry-run
  certctl cluster ca-rotate --phase trust
  certctl cluster ca-rotate --phase issue
  certctl cluster ca-rotate --phase drop
  certctl cluster ca-rotate --rollback              # undo the last phase (trust or issue)

  # 1,000 workers, 100 at a time
  certctl cluster ca-rotate --phase trust --max-parallel 10%

  # the service-account signing key (sa.key, sa.pub)
  certctl cluster ca-rotate sa --phase trust
  certctl cluster ca-rotate sa --phase issue
  certctl cluster ca-rotate sa --phase drop

  # the etcd and front-proxy CAs together, on the control-plane nodes
  certctl cluster ca-rotate etcd-ca front-proxy-ca --phase trust
  certctl cluster ca-rotate etcd-ca front-proxy-ca --phase issue
  certctl cluster ca-rotate etcd-ca front-proxy-ca --phase drop`,
		RunE: func(c *cobra.Command, args []string) error {
			cas, err := cluster.RotatedCAs(args)
			if err != nil {
				return err
			}
			ctx := c.Context() // ends on SIGINT and SIGTERM (Execute)
			opts.CAs, opts.Namespace, opts.Image, opts.Progress = cas, o.Namespace, o.Image, o.Streams.ErrOut
			connect := func() (kubernetes.Interface, *rest.Config, error) {
				cs, _, rc, err := o.connect()
				return cs, rc, err
			}
			rep, err := cluster.CARotateHere(ctx, connect, opts, o.local())
			if rep != nil {
				rep.Print(o.Streams.Out)
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Phase, "phase", "", "the phase to run on every node: trust, issue or drop")
	f.BoolVar(&opts.Rollback, "rollback", false, "undo a phase on every node where it is the last one applied, in reverse order, and the cluster's copies of the CA (trust or issue: --phase, or the phase the cluster shows)")
	f.IntVar(&opts.Days, "days", 3650, "validity of the new CA, in days (phase trust)")
	f.BoolVar(&opts.DryRun, "dry-run", false, "print every node's plan, change nothing")
	f.DurationVar(&opts.JobTimeout, "job-timeout", 10*time.Minute, "one node's Job")
	f.DurationVar(&opts.VerifyTimeout, "verify-timeout", 3*time.Minute, "a control-plane node's apiserver ready again, after its Job")
	f.DurationVar(&opts.ReadyTimeout, "ready-timeout", 3*time.Minute, "a kubelet reporting again; the kube-root-ca.crt ConfigMaps updated")
	f.DurationVar(&opts.StopGrace, "stop-grace", 3*time.Second, "passed to each node's restart: an old apiserver finishes the requests in flight before it is killed")
	f.DurationVar(&opts.LBDrain, "lb-drain", 3*time.Second, lbDrainHelp)
	f.Var(&opts.MaxParallel, "max-parallel", maxParallelHelp)
	return cmd
}

// maxParallelHelp is --max-parallel's help on the cluster commands that change workers.
const maxParallelHelp = "workers changed at once (a count, or a percentage of the workers), each wave verified, every kubelet reporting again, before the next; control-plane nodes always go one at a time (default: 25% of the workers, at least 4, at most 250)"

// lbDrainHelp is --lb-drain's help on the cluster commands.
const lbDrainHelp = "passed to each node's restart: its apiserver refuses new connections from other machines for this long before it, or its etcd, is stopped, so that the load balancer's health check takes it out first (the balancer's detection time: HAProxy fall x inter; 0: off)"
