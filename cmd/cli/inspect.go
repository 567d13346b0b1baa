package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"

	"github.com/certctl/certctl/pkg/inspect"
	"github.com/certctl/certctl/pkg/monitoring"
	"github.com/certctl/certctl/pkg/noderesult"
	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/schedule"
)

type inspectOptions struct {
	*Globals
	Output     string
	Warn       string
	CheckSANs  []string
	NodeIPs    []string
	Live       bool
	API        bool
	Kubeconfig string
	Timeout    time.Duration
	Textfile   string
}

func newInspectCmd(g *Globals) *cobra.Command {
	o := &inspectOptions{Globals: g}
	cmd := &cobra.Command{
		Use:   "inspect",
		Short: "Show every certificate of the node and what is wrong with it",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return o.run(cmd.Context()) },
	}
	f := cmd.Flags()
	f.StringVarP(&o.Output, "output", "o", "table", "output format: table, wide, json, yaml, prometheus")
	f.StringVar(&o.Textfile, "textfile-dir", "", "also write certctl.prom (Prometheus format) into this directory atomically, for node_exporter's textfile collector")
	f.StringVar(&o.Warn, "warn", "30d", "warn about certificates expiring within this window (e.g. 30d, 2w, 720h)")
	f.StringSliceVar(&o.CheckSANs, "check-san", nil, "an IP or DNS name the apiserver certificate must cover (repeatable, comma-separated)")
	f.StringSliceVar(&o.NodeIPs, "node-ip", nil, "the node's IP the kubelet serving certificate must cover (default: from kubeadm-flags.env or the apiserver manifest)")
	f.BoolVar(&o.Live, "live", false, "also dial the local endpoints and compare what they serve with the files on disk")
	f.DurationVar(&o.Timeout, "timeout", 3*time.Second, "per-endpoint dial timeout for --live")
	f.BoolVar(&o.API, "api", false, "also ask the API server (SubjectAccessReview) whether the apiserver's kubelet client certificate may use the kubelet API")
	f.StringVar(&o.Kubeconfig, "kubeconfig", "", "kubeconfig for --api (default admin.conf, then ~/.kube/config, under --root)")
	return cmd
}

func (o *inspectOptions) validate() (inspect.Options, error) {
	var io inspect.Options
	if err := inspect.ValidFormat(o.Output); err != nil {
		return io, err
	}
	warn, err := inspect.ParseDuration(o.Warn)
	if err != nil {
		return io, fmt.Errorf("--warn: %w", err)
	}
	io.Warn = warn
	sans, err := pki.ParseSANs(o.CheckSANs)
	if err != nil {
		return io, fmt.Errorf("--check-san: %w", err)
	}
	io.CheckSANs = sans
	if io.NodeIPs, err = pki.ParseIPs(o.NodeIPs); err != nil {
		return io, fmt.Errorf("--node-ip: %w", err)
	}
	return io, nil
}

func (o *inspectOptions) run(ctx context.Context) error {
	opts, err := o.validate()
	if err != nil {
		return err
	}
	if ctx == nil {
		ctx = context.Background()
	}
	no := monitoring.NodeOptions{Layout: o.Layout(), Diagnose: opts, Analyze: schedule.SystemdAnalyze(), Textfile: o.Textfile,
		Live: o.Live, LiveTimeout: o.Timeout}
	if o.API {
		rc, err := o.where(o.Kubeconfig).Config()
		if err != nil {
			return fmt.Errorf("--api: %w", err)
		}
		cs, err := kubernetes.NewForConfig(rc)
		if err != nil {
			return fmt.Errorf("--api: %w", err)
		}
		no.Review = inspect.SubjectAccessReviewer(cs)
	}
	rep, warnings, err := monitoring.InspectNode(ctx, no)
	if err != nil {
		return err
	}
	for _, err := range warnings {
		fmt.Fprintf(o.Streams.ErrOut, "warning: %v\n", err)
	}
	render := func() error { return inspect.Render(o.Streams.Out, rep, o.Output) }
	if o.Record {
		render = func() error { return noderesult.WriteRecord(o.Streams.Out, noderesult.KindInspect, rep) }
	}
	if err := render(); err != nil {
		return err
	}
	return verdict(rep.Worst(), nil)
}
