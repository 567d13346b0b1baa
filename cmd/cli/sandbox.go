package cli

import (
	"fmt"
	"net"
	"strings"

	"github.com/spf13/cobra"

	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/sandbox"
)

type sandboxOptions struct {
	*Globals
	Faults       string
	NodeName     string
	NodeIP       string
	LBIP         string
	KeyAlgorithm string
}

func newSandboxCmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sandbox",
		Short: "Make a realistic kubeadm node tree to try certctl on",
	}
	o := &sandboxOptions{Globals: g}
	create := &cobra.Command{
		Use:   "create DIR",
		Short: "Write a kubeadm node tree (PKI, kubeconfigs, manifests, kubelet files) under DIR",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			faults, err := sandbox.ParseFaults(o.Faults)
			if err != nil {
				return fmt.Errorf("--faults: %w", err)
			}
			opts := sandbox.Options{Dir: args[0], Faults: faults, NodeName: o.NodeName, KeyAlgorithm: o.KeyAlgorithm}
			for _, p := range []struct {
				flag, v string
				dst     *net.IP
			}{{"--node-ip", o.NodeIP, &opts.NodeIP}, {"--lb-ip", o.LBIP, &opts.LBIP}} {
				if *p.dst = net.ParseIP(p.v); *p.dst == nil {
					return fmt.Errorf("%s: %q is not an IP address", p.flag, p.v)
				}
			}
			l, err := sandbox.Create(opts)
			if err != nil {
				return err
			}
			names := make([]string, len(faults))
			for i, f := range faults {
				names[i] = string(f)
			}
			fault := "none"
			if len(names) > 0 {
				fault = strings.Join(names, ", ")
			}
			fmt.Fprintf(g.Streams.Out, "sandbox node %s (%s) written under %s\nPKI: %s\nfaults: %s\n", o.NodeName, o.NodeIP, l.Root, l.PKIDir, fault)
			return nil
		},
	}
	f := create.Flags()
	f.StringVar(&o.Faults, "faults", "all", "faults to plant: all, none, or a comma-separated list")
	f.StringVar(&o.NodeName, "node-name", "master-1", "the node's name")
	f.StringVar(&o.NodeIP, "node-ip", "10.2.1.151", "the node's IP (advertise address)")
	f.StringVar(&o.LBIP, "lb-ip", "10.2.1.139", "the load balancer's IP in front of the apiserver")
	f.StringVar(&o.KeyAlgorithm, "key-algorithm", pki.AlgRSA2048, "key algorithm: "+strings.Join(pki.KeyAlgorithms, ", "))
	cmd.AddCommand(create)
	return cmd
}
