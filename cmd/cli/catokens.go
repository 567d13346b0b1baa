package cli

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/certctl/certctl/pkg/carotate"
	"github.com/certctl/certctl/pkg/inspect"
	"github.com/certctl/certctl/pkg/kubelet"
	"github.com/certctl/certctl/pkg/noderesult"
	"github.com/certctl/certctl/pkg/restart"
	"github.com/certctl/certctl/pkg/satoken"
)

type caTokensOptions struct {
	*Globals
	Keys    []string
	Refresh bool
	Timeout time.Duration
}

func newCATokensCmd(g *Globals) *cobra.Command {
	o := &caTokensOptions{Globals: g}
	cmd := &cobra.Command{
		Use:   "tokens [--refresh]",
		Short: "List the pods' service-account tokens on this node and the key that signed each; --refresh has the kubelet re-request them",
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context() // ends on SIGINT and SIGTERM (Execute)
			return o.run(ctx)
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&o.Keys, "key", nil, "a public-key file (PEM) tokens may be signed by, not under --root; the first is the one they must be signed by (repeat, or comma-separated)")
	f.BoolVar(&o.Refresh, "refresh", false, "restart the kubelet when a token is not signed by the first key, and wait until every token is")
	f.DurationVar(&o.Timeout, "timeout", 3*time.Minute, "how long --refresh waits for the kubelet's new tokens")
	return cmd
}

func (o *caTokensOptions) run(ctx context.Context) error {
	keys, err := carotate.TokenKeys(o.Layout(), o.Keys)
	if err != nil && len(o.Keys) > 0 {
		return fmt.Errorf("--key: %w", err)
	}
	if err != nil {
		return err
	}
	ro := satoken.RefreshOptions{Layout: o.Layout(), Want: keys[0].Key, Timeout: o.Timeout, Settle: o.Refresh}
	names := []string{keys[0].Path}
	for _, k := range keys[1:] {
		ro.Others, names = append(ro.Others, k.Key), append(names, k.Path)
	}
	nr := noderesult.Result{Command: "ca tokens"}
	if o.Refresh {
		ro.RestartKubelet = func(ctx context.Context) error {
			fmt.Fprintln(o.Streams.Out, "a token is not signed by", keys[0].Path+": restarting the kubelet, which re-requests every pod's token")
			if err := (restart.KubeletRestarter{Layout: o.Layout()}).Restart(ctx); err != nil {
				return err
			}
			nr.KubeletRestarted = true
			return kubelet.WaitHealthy(ctx, kubelet.WaitOptions{})
		}
	}
	res, err := satoken.Refresh(ctx, ro)
	if res != nil {
		res.Render(o.Streams.Out, names)
	}
	var stale *satoken.StaleTokensError
	switch {
	case errors.As(err, &stale) && !o.Refresh:
		return verdict(inspect.SevWarning, fmt.Errorf("%d token(s) not signed by %s: certctl ca tokens --refresh has the kubelet re-request them", len(stale.Tokens), keys[0].Path))
	case err != nil:
		return err
	}
	if res.KubeletRestarted {
		nr.Components = []string{restart.Kubelet}
		fmt.Fprintf(o.Streams.Out, "every token is signed by %s now (%s, the pods' clients have read them)\n", keys[0].Path, res.Took.Round(time.Second))
	}
	return noderesult.Write(o.ResultFile, nr)
}
