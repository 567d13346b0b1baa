package cli

import (
	"github.com/spf13/cobra"

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
			full := g.flags()
			if req.Result {
				path := noderesult.Path // the container's termination message
				if g.ResultFile != "" {
					path = g.ResultFile
				}
				full = append(full, "--result-file", path)
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

// flags are g's global flags as given, for a command run on the same node.
func (g *Globals) flags() []string {
	var out []string
	for _, f := range []struct{ name, v string }{
		{"root", g.Root}, {"pki-dir", g.PKIDir}, {"kubeconfig-dir", g.KubeconfigDir}, {"manifests-dir", g.ManifestsDir},
		{"kubelet-dir", g.KubeletDir}, {"user-kubeconfig", g.UserKubeconfig},
	} {
		if f.v != "" {
			out = append(out, "--"+f.name, f.v)
		}
	}
	return out
}
