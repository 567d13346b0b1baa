package cli

import (
	"context"
	"errors"
	"strings"
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
			if g.Record {
				shown, err := carotate.Show(g.Layout(), cas)
				if err != nil {
					return err
				}
				return noderesult.WriteRecord(g.Streams.Out, noderesult.KindCAShow, shown)
			}
			return carotate.WriteShown(g.Streams.Out, g.Layout(), cas)
		},
	}
}

type caRotateOptions struct {
	*Globals
	Phase       string
	Days        int
	DryRun      bool
	Rollback    bool
	NewCACert   string
	NewCAKey    string
	Generate    bool
	LockTimeout time.Duration
	// NewCADir holds CA.crt (and CA.key) outside --root: where the Jobs of certctl cluster
	// ca-rotate mount the new CA from its Secret.
	NewCADir string
	// IgnoreOldTokens: phase drop of sa goes on with pods' tokens of the old key on the node.
	IgnoreOldTokens bool
	Restart         bool
	restart         restartOptions
}

func newCARotateCmd(g *Globals) *cobra.Command {
	o := &caRotateOptions{Globals: g}
	cmd := &cobra.Command{
		Use:   "rotate [ca|etcd-ca|front-proxy-ca|sa|all]... --phase trust|issue|drop",
		Short: "Replace a CA (or the service-account key) before it expires or leaks, in three phases, on this node",
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context() // ends on SIGINT and SIGTERM (Execute)
			return o.run(ctx, args)
		},
	}
	o.restart.flags(cmd) // before --restart: no renew-style pre-check (a worker has no static pods)
	f := cmd.Flags()
	f.StringVar(&o.Phase, "phase", "", "the phase to run: trust, issue or drop")
	f.IntVar(&o.Days, "days", carotate.DefaultDays, "validity of a generated new CA, in days")
	f.BoolVar(&o.DryRun, "dry-run", false, "list the files the phase would change; change nothing")
	f.BoolVar(&o.Rollback, "rollback", false, "undo the last phase applied on this node (with --phase: undo that phase only, where it is the last one applied)")
	f.StringVar(&o.NewCACert, "new-ca-cert", "", "the new CA certificate (new.crt of the node that generated it)")
	f.StringVar(&o.NewCAKey, "new-ca-key", "", "the new CA key (new.key of the node that generated it); not on workers")
	f.BoolVar(&o.Generate, "generate", false, "generate the new CA here (phase trust on the first control-plane node)")
	f.DurationVar(&o.LockTimeout, "lock-timeout", 30*time.Second, "how long to wait for another certctl run")
	f.StringVar(&o.NewCADir, "new-ca-dir", "", "a directory (not under --root) with CA.crt and CA.key of the new CA, as certctl cluster ca-rotate's Jobs mount it")
	f.BoolVar(&o.IgnoreOldTokens, "ignore-old-tokens", false, "phase drop of sa: go on while pods' tokens of the old key are on this node (they get 401 until the kubelet refreshes them)")
	f.BoolVar(&o.Restart, "restart", false, "then restart the components the phase names (static pods through the kubelet and the container runtime, the kubelet through systemd or its supervisor), each verified")
	return cmd
}

func (o *caRotateOptions) run(ctx context.Context, args []string) error {
	arg := "all"
	if len(args) > 0 {
		arg = strings.Join(args, " ")
	}
	cas, err := carotate.ExpandAll(args)
	if err != nil {
		return err
	}
	if o.Phase == "" && !o.Rollback {
		return errors.New("give --phase trust, issue or drop (one phase at a time, on every node), or --rollback")
	}
	ro := carotate.Options{Layout: o.Layout(), Days: o.Days, Generate: o.Generate, DryRun: o.DryRun,
		LockTimeout: o.LockTimeout, Log: o.Streams.ErrOut, IgnoreTokens: o.IgnoreOldTokens, Command: "certctl ca rotate " + arg + " --phase " + o.Phase}
	if o.Rollback {
		ro.Command = "certctl ca rotate " + arg + " --rollback"
	}
	switch {
	case o.NewCADir != "" && o.NewCACert != "":
		return errors.New("--new-ca-dir and --new-ca-cert exclude each other")
	case o.NewCADir != "":
		if ro.NewCAs, err = carotate.ReadNewCADir(o.NewCADir, cas); err != nil {
			return err
		}
	case o.NewCACert != "":
		if ro.NewCA, err = carotate.ReadNewCA(o.Layout().Resolve(o.NewCACert), o.keyPath()); err != nil {
			return err
		}
	case o.NewCAKey != "":
		return errors.New("--new-ca-key needs --new-ca-cert")
	}
	no := noderotate.Options{Rotate: ro, CAs: cas, Phase: o.Phase, Rollback: o.Rollback, Out: o.Streams.Out, Log: o.Streams.ErrOut}
	if o.Restart {
		req := o.restart.request(o.Globals)
		no.Restart = &req
	}
	nr, err := noderotate.Run(ctx, no)
	if err != nil {
		return err
	}
	return noderesult.Write(o.ResultFile, nr)
}

func (o *caRotateOptions) keyPath() string {
	if o.NewCAKey == "" {
		return ""
	}
	return o.Layout().Resolve(o.NewCAKey)
}
