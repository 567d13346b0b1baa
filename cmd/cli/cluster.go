package cli

import (
	"errors"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/certctl/certctl/pkg/cluster"
	"github.com/certctl/certctl/pkg/flagvalue"
	"github.com/certctl/certctl/pkg/inspect"
	"github.com/certctl/certctl/pkg/lease"
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

// dialer connects the command to the cluster.
func (o *clusterOptions) dialer() cluster.Dialer {
	return cluster.Dialer{Where: o.where(o.Kubeconfig), Wait: o.APIWait, Log: o.Streams.ErrOut}
}

func newClusterCmd(g *Globals) *cobra.Command {
	o := &clusterOptions{Globals: g}
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Every node's certificates, through Kubernetes itself (Jobs pinned to nodes)",
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&o.Kubeconfig, "kubeconfig", "", "kubeconfig to reach the API server (default admin.conf, then ~/.kube/config)")
	pf.StringVar(&o.Image, "image", DefaultImage, "image whose entrypoint is certctl, present on (or pullable by) every node")
	pf.StringVar(&o.Namespace, "namespace", "kube-system", "namespace of the Jobs")
	pf.DurationVar(&o.APIWait, "api-wait", 2*time.Minute, "how long a request waits for an API that refuses connections or is not ready yet (an apiserver restarting under the command), at the start and all through the run; past it the command stops (a node whose Job it waited for is reported interrupted, its Job going on: run the same command again); a certificate it cannot verify (all expired) ends the wait at once")
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
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cs, roots, _, err := o.dialer().Dial()
			if err != nil {
				return err
			}
			opts.Namespace, opts.Image, opts.Roots = o.Namespace, o.Image, roots
			rep, err := cluster.Status(c.Context(), cs, opts)
			if err != nil {
				return err
			}
			if events {
				rep.RecordEvents(c.Context(), cs, o.Streams.ErrOut)
			}
			if err := rep.Render(o.Streams.Out, output); err != nil {
				return err
			}
			return verdict(rep.Worst(), nil)
		},
	}
	f := cmd.Flags()
	flagvalue.FormatVarP(f, &output, "output", "o", []string{"table", "wide", "json", "yaml"}, "")
	f.DurationVar(&opts.JobTimeout, "timeout", 60*time.Second, "per node: from creating its Job to its result")
	f.IntVar(&opts.Concurrency, "concurrency", 16, "nodes at once")
	f.StringSliceVar(&opts.Nodes, "node", nil, "only these nodes (repeatable)")
	f.BoolVar(&events, "events", true, "record an Event on each Node for its warning and critical findings")
	return cmd
}

func newClusterRenewCmd(o *clusterOptions) *cobra.Command {
	var opts cluster.RenewOptions
	cmd := &cobra.Command{
		Use:   "renew [NAME...|all]",
		Short: "Renew the control-plane nodes one at a time, the API never down",
		RunE: func(c *cobra.Command, args []string) error {
			opts.Names = args
			cs, roots, _, err := o.dialer().Dial()
			if err != nil {
				return err
			}
			opts.Namespace, opts.Image, opts.Roots, opts.Progress = o.Namespace, o.Image, roots, o.Streams.ErrOut
			rep, err := cluster.Renew(c.Context(), cs, opts)
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
	flagvalue.SANsVar(f, &opts.SANs, "san", "IP or DNS name to add to the apiserver certificate of every control-plane node")
	f.IntVar(&opts.Days, "days", 0, "validity in days (default: certctl renew's)")
	flagvalue.WindowVar(f, &opts.IfExpiringWithin, &opts.IfExpiringArg, "if-expiring-within", "", true, "renew only what expires within this window (e.g. 30d)")
	f.BoolVar(&opts.SkipKubeadmConfig, "skip-kubeadm-config", false, "do not record --san in kube-system/kubeadm-config")
	f.StringSliceVar(&opts.Nodes, "node", nil, "only these control-plane nodes, in this order (default: all, by name)")
	rolloutFlags(f, &opts.Runner, &opts.Checks, &opts.RestartFlags, &opts.DryRun)
	return cmd
}

func newClusterEndpointCmd(o *clusterOptions) *cobra.Command {
	var opts cluster.EndpointOptions
	cmd := &cobra.Command{
		Use:   "endpoint HOST:PORT",
		Short: "Move the whole cluster onto a load balancer's address (case B), the API never down",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cs, roots, _, err := o.dialer().Dial()
			if err != nil {
				return err
			}
			opts.Endpoint, opts.Namespace, opts.Image, opts.Roots, opts.Progress = args[0], o.Namespace, o.Image, roots, o.Streams.ErrOut
			rep, err := cluster.Endpoint(c.Context(), cs, opts)
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
	rolloutFlags(f, &opts.Runner, &opts.Checks, &opts.RestartFlags, &opts.DryRun)
	f.DurationVar(&opts.ReadyTimeout, "ready-timeout", 2*time.Minute, "a node's kubelet reporting again after its restart")
	f.Var(&opts.MaxParallel, "max-parallel", maxParallelHelp)
	return cmd
}

// local is the kubeconfig the command used and the user's, those that exist.
func (o *clusterOptions) local() cluster.Local {
	return cluster.LocalKubeconfigs(o.Layout().Root, o.Kubeconfig, o.Layout().UserKubeconfig)
}

func newClusterCARotateCmd(o *clusterOptions) *cobra.Command {
	var opts cluster.CARotateOptions
	cmd := &cobra.Command{
		Use:   "ca-rotate [ca|etcd-ca|front-proxy-ca|sa|all]... --phase trust|issue|drop",
		Short: "Replace the cluster's CAs (and service-account key) on every node, one phase at a time, the API never down",
		RunE: func(c *cobra.Command, args []string) error {
			cas, err := cluster.RotatedCAs(args)
			if err != nil {
				return err
			}
			opts.CAs, opts.Namespace, opts.Image, opts.Progress = cas, o.Namespace, o.Image, o.Streams.ErrOut
			rep, err := cluster.CARotateHere(c.Context(), o.dialer().Connect, opts, o.local())
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
	rolloutFlags(f, &opts.Runner, &opts.Checks, &opts.RestartFlags, &opts.DryRun)
	f.DurationVar(&opts.ReadyTimeout, "ready-timeout", 3*time.Minute, "a kubelet reporting again; the kube-root-ca.crt ConfigMaps updated")
	f.Var(&opts.MaxParallel, "max-parallel", maxParallelHelp)
	return cmd
}

// maxParallelHelp is --max-parallel's help on the cluster commands that change workers.
const maxParallelHelp = "workers changed at once (a count, or a percentage of the workers), each wave verified, every kubelet reporting again, before the next; control-plane nodes always go one at a time (default: 25% of the workers, at least 4, at most 250)"

// rolloutFlags are the flags of a cluster command that changes the nodes one at a time (the
// workers in waves), each verified.
func rolloutFlags(f *pflag.FlagSet, r *cluster.Runner, ch *cluster.Checks, rf *cluster.RestartFlags, dryRun *bool) {
	f.BoolVar(dryRun, "dry-run", false, "print every node's plan (and what would change in the cluster), change nothing")
	f.DurationVar(&r.JobTimeout, "job-timeout", 10*time.Minute, "one node's Job")
	f.DurationVar(&ch.VerifyTimeout, "verify-timeout", 3*time.Minute, "a control-plane node's apiserver ready again (with its new certificate), after its Job")
	f.DurationVar(&rf.StopGrace, "stop-grace", 3*time.Second, "passed to each node's restart: an old apiserver finishes the requests in flight (the load balancer sends new ones elsewhere) before it is killed")
	f.DurationVar(&rf.LBDrain, "lb-drain", 3*time.Second, "passed to each node's restart: its apiserver refuses new connections from other machines for this long before it, or its etcd, is stopped, so that the load balancer's health check takes it out first (the balancer's detection time: HAProxy fall x inter; 0: off)")
}
