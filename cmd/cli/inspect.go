package cli

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"

	"github.com/certctl/certctl/pkg/flagvalue"
	"github.com/certctl/certctl/pkg/inspect"
	"github.com/certctl/certctl/pkg/monitoring"
	"github.com/certctl/certctl/pkg/noderesult"
	"github.com/certctl/certctl/pkg/schedule"
)

func newInspectCmd(g *Globals) *cobra.Command {
	var (
		no                 monitoring.NodeOptions
		output, kubeconfig string
		api                bool
	)
	cmd := &cobra.Command{
		Use:   "inspect",
		Short: "Show every certificate of the node and what is wrong with it",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			no.Layout, no.Analyze = g.Layout(), schedule.SystemdAnalyze()
			if api {
				cs, err := g.clientset(kubeconfig)
				if err != nil {
					return fmt.Errorf("--api: %w", err)
				}
				no.Review = inspect.SubjectAccessReviewer(cs)
			}
			rep, warnings, err := monitoring.InspectNode(c.Context(), no)
			if err != nil {
				return err
			}
			for _, err := range warnings {
				fmt.Fprintf(g.Streams.ErrOut, "warning: %v\n", err)
			}
			human := func(w io.Writer) error { return inspect.Render(w, rep, output) }
			if err := g.show(noderesult.KindInspect, rep, human); err != nil {
				return err
			}
			return verdict(rep.Worst(), nil)
		},
	}
	f := cmd.Flags()
	flagvalue.FormatVarP(f, &output, "output", "o", inspect.Formats, "")
	f.StringVar(&no.Textfile, "textfile-dir", "", "also write certctl.prom (Prometheus format) into this directory atomically, for node_exporter's textfile collector")
	flagvalue.WindowVar(f, &no.Diagnose.Warn, nil, "warn", "30d", false, "warn about certificates expiring within this window (e.g. 30d, 2w, 720h)")
	flagvalue.SANsVar(f, &no.Diagnose.CheckSANs, "check-san", "an IP or DNS name the apiserver certificate must cover (repeatable, comma-separated)")
	f.IPSliceVar(&no.Diagnose.NodeIPs, "node-ip", nil, "the node's IP the kubelet serving certificate must cover (default: from kubeadm-flags.env or the apiserver manifest)")
	f.BoolVar(&no.Live, "live", false, "also dial the local endpoints and compare what they serve with the files on disk")
	f.DurationVar(&no.LiveTimeout, "timeout", 3*time.Second, "per-endpoint dial timeout for --live")
	f.BoolVar(&api, "api", false, "also ask the API server (SubjectAccessReview) whether the apiserver's kubelet client certificate may use the kubelet API")
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig for --api (default admin.conf, then ~/.kube/config, under --root)")
	return cmd
}

// clientset is a client of the kubeconfig where finds (--kubeconfig, admin.conf, the user's).
func (g *Globals) clientset(kubeconfig string) (kubernetes.Interface, error) {
	rc, err := g.where(kubeconfig).Config()
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(rc)
}
