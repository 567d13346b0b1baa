package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/certctl/certctl/pkg/inspect"
	"github.com/certctl/certctl/pkg/live"
)

type probeOptions struct {
	*Globals
	CAFile     string
	ServerName string
	Timeout    time.Duration
	Output     string
}

func newProbeCmd(g *Globals) *cobra.Command {
	o := &probeOptions{Globals: g}
	cmd := &cobra.Command{
		Use:   "probe HOST:PORT",
		Short: "Check an endpoint the way a strict client (kubeadm join) does",
		Args:  cobra.ExactArgs(1),
		RunE:  func(cmd *cobra.Command, args []string) error { return o.run(cmd.Context(), args[0]) },
	}
	f := cmd.Flags()
	f.StringVar(&o.CAFile, "ca", "", "CA bundle to verify against, a node path under --root (default: the cluster CA, ca.crt in the PKI dir)")
	f.StringVar(&o.ServerName, "server-name", "", "name or IP to verify (default: the host dialled)")
	f.DurationVar(&o.Timeout, "timeout", 5*time.Second, "dial timeout")
	f.StringVarP(&o.Output, "output", "o", "text", "output format: text or json")
	return cmd
}

func (o *probeOptions) run(ctx context.Context, addr string) error {
	if o.Output != "text" && o.Output != "json" {
		return fmt.Errorf("unknown output format %q (want text or json)", o.Output)
	}
	if ctx == nil {
		ctx = context.Background()
	}
	rep, err := live.ProbeEndpoint(ctx, o.Layout(), live.ProbeOptions{Addr: addr, CAFile: o.CAFile, ServerName: o.ServerName, Timeout: o.Timeout})
	if err != nil {
		return err
	}
	if err := rep.Render(o.Streams.Out, o.Output); err != nil {
		return err
	}
	if !rep.OK {
		return verdict(inspect.SevCritical, nil)
	}
	return nil
}
