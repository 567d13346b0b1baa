package cli

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/certctl/certctl/pkg/flagvalue"
	"github.com/certctl/certctl/pkg/inspect"
	"github.com/certctl/certctl/pkg/live"
)

func newProbeCmd(g *Globals) *cobra.Command {
	var (
		o      live.ProbeOptions
		output string
	)
	cmd := &cobra.Command{
		Use:   "probe HOST:PORT",
		Short: "Check an endpoint the way a strict client (kubeadm join) does",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			o.Addr = args[0]
			rep, err := live.ProbeEndpoint(c.Context(), g.Layout(), o)
			if err != nil {
				return err
			}
			if err := rep.Render(g.Streams.Out, output); err != nil || rep.OK {
				return err
			}
			return verdict(inspect.SevCritical, nil)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.CAFile, "ca", "", "CA bundle to verify against, a node path under --root (default: the cluster CA, ca.crt in the PKI dir)")
	f.StringVar(&o.ServerName, "server-name", "", "name or IP to verify (default: the host dialled)")
	f.DurationVar(&o.Timeout, "timeout", 5*time.Second, "dial timeout")
	flagvalue.FormatVarP(f, &output, "output", "o", []string{"text", "json"}, "")
	return cmd
}
