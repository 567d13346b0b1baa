package cli

import (
	"fmt"
	"net"
	"strings"

	"github.com/spf13/cobra"

	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/sandbox"
)

func newSandboxCmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sandbox",
		Short: "Make a realistic kubeadm node tree to try certctl on",
	}
	opts := sandbox.Options{Faults: sandbox.AllFaults}
	create := &cobra.Command{
		Use:   "create DIR",
		Short: "Write a kubeadm node tree (PKI, kubeconfigs, manifests, kubelet files) under DIR",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Dir = args[0]
			l, err := sandbox.Create(opts)
			if err == nil {
				fmt.Fprintln(g.Streams.Out, opts.Describe(l))
			}
			return err
		},
	}
	f := create.Flags()
	f.Func("faults", "the faults to plant: all, none, or a comma-separated `LIST` (default all)", func(v string) (err error) {
		opts.Faults, err = sandbox.ParseFaults(v)
		return err
	})
	f.StringVar(&opts.NodeName, "node-name", "master-1", "the node's name")
	f.IPVar(&opts.NodeIP, "node-ip", net.ParseIP("10.2.1.151"), "the node's IP (advertise address)")
	f.IPVar(&opts.LBIP, "lb-ip", net.ParseIP("10.2.1.139"), "the load balancer's IP in front of the apiserver")
	f.StringVar(&opts.KeyAlgorithm, "key-algorithm", pki.AlgRSA2048, "key algorithm: "+strings.Join(pki.KeyAlgorithms, ", "))
	cmd.AddCommand(create)
	return cmd
}
