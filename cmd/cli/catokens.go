package cli

import (
	"errors"
	"time"

	"github.com/spf13/cobra"

	"github.com/certctl/certctl/pkg/inspect"
	"github.com/certctl/certctl/pkg/noderesult"
	"github.com/certctl/certctl/pkg/noderotate"
)

func newCATokensCmd(g *Globals) *cobra.Command {
	o := noderotate.TokensOptions{Out: g.Streams.Out}
	cmd := &cobra.Command{
		Use:   "tokens [--refresh]",
		Short: "List the pods' service-account tokens on this node and the key that signed each; --refresh has the kubelet re-request them",
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Layout = g.Layout()
			nr, err := noderotate.Tokens(cmd.Context(), o)
			var stale *noderotate.StaleTokensError
			if errors.As(err, &stale) {
				return verdict(inspect.SevWarning, err)
			}
			if err != nil {
				return err
			}
			return noderesult.Write(g.ResultFile, nr)
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&o.Keys, "key", nil, "a public-key file (PEM) tokens may be signed by, not under --root; the first is the one they must be signed by (repeat, or comma-separated)")
	f.BoolVar(&o.Refresh, "refresh", false, "restart the kubelet when a token is not signed by the first key, and wait until every token is")
	f.DurationVar(&o.Timeout, "timeout", 3*time.Minute, "how long --refresh waits for the kubelet's new tokens")
	return cmd
}
