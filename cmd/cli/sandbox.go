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
	var (
		opts   sandbox.Options
		faults string
	)
	create := &cobra.Command{
		Use:   "create DIR",
		Short: "Write a kubeadm node tree (PKI, kubeconfigs, manifests, kubelet files) under DIR",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			if opts.Faults, err = sandbox.ParseFaults(faults); err != nil {
				return fmt.Errorf("--faults: %w", err)
			}
			opts.Dir = args[0]
			l, err := sandbox.Create(opts)
			if err == nil {
				fmt.Fprintln(g.Streams.Out, opts.Describe(l))
			}
			return err
		},
	}
	f := create.Flags()
	f.StringVar(&faults, "faults", "all", "faults to plant: all, none, or a comma-separated list")
	f.StringVar(&opts.NodeName, "node-name", "master-1", "the node's name")
	f.IPVar(&opts.NodeIP, "node-ip", net.ParseIP("10.2.1.151"), "the node's IP (advertise address)")
	f.IPVar(&opts.LBIP, "lb-ip", net.ParseIP("10.2.1.139"), "the load balancer's IP in front of the apiserver")
	f.StringVar(&opts.KeyAlgorithm, "key-algorithm", pki.AlgRSA2048, "key algorithm: "+strings.Join(pki.KeyAlgorithms, ", "))
	cmd.AddCommand(create)
	return cmd
}
