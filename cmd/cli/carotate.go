package cli

import (
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/certctl/certctl/pkg/carotate"
	"github.com/certctl/certctl/pkg/noderesult"
	"github.com/certctl/certctl/pkg/noderotate"
)

func newCACmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "Work on the cluster's CAs and service-account key (rotate, show, tokens)",
	}
	cmd.AddCommand(newCARotateCmd(g), newCAShowCmd(g), newCATokensCmd(g))
	return cmd
}

func newCAShowCmd(g *Globals) *cobra.Command {
	return &cobra.Command{
		Use:   "show [ca|etcd-ca|front-proxy-ca|sa|all]...",
		Short: "Print the CA certificates (and the service-account public key) this node signs with (PEM)",
		RunE: func(cmd *cobra.Command, args []string) error {
			cas, err := carotate.ExpandAll(args)
			if err != nil {
				return err
			}
			shown, err := carotate.Show(g.Layout(), cas)
			if err != nil {
				return err
			}
			return g.show(noderesult.KindCAShow, shown, func(w io.Writer) error { return carotate.WriteShown(w, g.Layout(), cas) })
		},
	}
}

func newCARotateCmd(g *Globals) *cobra.Command {
	var (
		no          noderotate.Options
		withRestart bool
		ro          restartOptions
	)
	cmd := &cobra.Command{
		Use:   "rotate [ca|etcd-ca|front-proxy-ca|sa|all]... --phase trust|issue|drop",
		Short: "Replace a CA (or the service-account key) before it expires or leaks, in three phases, on this node",
		RunE: func(c *cobra.Command, args []string) error {
			var err error
			if no.CAs, err = carotate.ExpandAll(args); err != nil {
				return err
			}
			r := &no.Rotate
			r.Layout, r.Log, r.Command = g.Layout(), g.Streams.ErrOut, noderotate.CommandLine(args, no.Phase, no.Rollback)
			no.Out, no.Log = g.Streams.Out, g.Streams.ErrOut
			if withRestart {
				req, err := ro.request(g)
				if err != nil {
					return err
				}
				no.Restart = &req
			}
			nr, err := noderotate.Run(c.Context(), no)
			if err != nil {
				return err
			}
			return noderesult.Write(g.ResultFile, nr)
		},
	}
	ro.flags(cmd)
	f := cmd.Flags()
	f.StringVar(&no.Phase, "phase", "", "the phase to run: trust, issue or drop")
	f.IntVar(&no.Rotate.Days, "days", carotate.DefaultDays, "validity of a generated new CA, in days")
	f.BoolVar(&no.Rotate.DryRun, "dry-run", false, "list the files the phase would change; change nothing")
	f.BoolVar(&no.Rollback, "rollback", false, "undo the last phase applied on this node (with --phase: undo that phase only, where it is the last one applied)")
	f.StringVar(&no.NewCACert, "new-ca-cert", "", "the new CA certificate (new.crt of the node that generated it)")
	f.StringVar(&no.NewCAKey, "new-ca-key", "", "the new CA key (new.key of the node that generated it); not on workers")
	f.BoolVar(&no.Rotate.Generate, "generate", false, "generate the new CA here (phase trust on the first control-plane node)")
	f.DurationVar(&no.Rotate.LockTimeout, "lock-timeout", 30*time.Second, "how long to wait for another certctl run")
	f.StringVar(&no.NewCADir, "new-ca-dir", "", "a directory (not under --root) with CA.crt and CA.key of the new CA, as certctl cluster ca-rotate's Jobs mount it")
	f.StringVar(&no.KubeletProbe, "kubelet-probe", "", "a client certificate of the new cluster CA and its key, one PEM file (not under --root): with --restart, on a worker whose kubelet's client CA file the phase changes in place, whether the kubelet reloaded it is asked with this certificate (401: not yet), and only a kubelet that did not is restarted; without it the kubelet is restarted. cluster ca-rotate gives it to its workers' Jobs")
	f.BoolVar(&no.Rotate.IgnoreTokens, "ignore-old-tokens", false, "phase drop of sa: go on while pods' tokens of the old key are on this node (they get 401 until the kubelet refreshes them)")
	f.BoolVar(&withRestart, "restart", false, "then restart the components the phase names (static pods through the kubelet and the container runtime, the kubelet through systemd or its supervisor), each verified")
	return cmd
}
