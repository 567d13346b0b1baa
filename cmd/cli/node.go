package cli

import (
	"cmp"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/certctl/certctl/pkg/noderequest"
	"github.com/certctl/certctl/pkg/noderesult"
)

// newNodeCmd is the entry point of the Jobs `certctl cluster ...` runs on each node.
func newNodeCmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:    "node",
		Short:  "What the node Jobs of 'certctl cluster' run (not for people)",
		Hidden: true,
	}
	var request string
	run := &cobra.Command{
		Use:   "run --request JSON",
		Short: "Run one typed node request (pkg/noderequest) on this node",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			req, err := noderequest.Decode(request)
			if err != nil {
				return err
			}
			args, _ := req.Args() // Decode checked them
			var full []string     // the global flags given, for the command run on the same node
			c.Root().PersistentFlags().VisitAll(func(f *pflag.Flag) {
				if f.Changed {
					full = append(full, "--"+f.Name+"="+f.Value.String())
				}
			})
			if req.Result {
				// The container's termination message, unless given.
				full = append(full, "--result-file", cmp.Or(g.ResultFile, noderesult.Path))
			}
			if req.Record {
				full = append(full, "--record")
			}
			sub := NewRootCmd(g.Streams)
			sub.SetArgs(append(full, args...))
			return sub.ExecuteContext(c.Context())
		},
	}
	run.Flags().StringVar(&request, "request", "", "the request, as JSON")
	_ = run.MarkFlagRequired("request")
	cmd.AddCommand(run)
	return cmd
}
