package cli

import (
	"errors"
	"time"

	"github.com/certctl/certctl/pkg/carotate"
	"github.com/spf13/cobra"
)

func newCACmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "Work on the cluster's CAs (rotate)",
	}
	cmd.AddCommand(newCARotateCmd(g))
	return cmd
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
}

func newCARotateCmd(g *Globals) *cobra.Command {
	o := &caRotateOptions{Globals: g}
	cmd := &cobra.Command{
		Use:   "rotate [ca|etcd-ca|front-proxy-ca|all] --phase trust|issue|drop",
		Short: "Replace a CA before it expires, in three phases, on this node",
		Long: `rotate replaces a CA of this node (the cluster CA "ca", "etcd-ca", "front-proxy-ca", or
"all") with a new one, in three phases run one at a time with --phase; each phase is
resumable (running a done phase again changes nothing), --dry-run lists the files it would
change, and --rollback undoes the last phase applied (from the backup taken before it).

  trust  a new CA beside the old one in <pki>/rotation/<ca>/ (etcd: <pki>/etcd/rotation/etcd-ca/,
         which etcd's pod mounts): new.crt, new.key, bundle.crt = old + new. Every place on
         the node that verifies with the CA reads the bundle: kube-apiserver --client-ca-file,
         --kubelet-certificate-authority, --requestheader-client-ca-file, --etcd-cafile;
         kube-controller-manager --root-ca-file, --client-ca-file,
         --requestheader-client-ca-file; kube-scheduler's if set; etcd --trusted-ca-file,
         --peer-trusted-ca-file; the kubelet's clientCAFile; the certificate-authority-data of
         every kubeconfig. The old CA still signs.
  issue  ca.crt/ca.key become the new CA (the old pair kept as old.crt/old.key); every leaf
         and kubeconfig client certificate it signed is re-issued by the new CA keeping
         subject, SANs and usages (as certctl renew does), the kubelet's client certificate
         too; verification stays on the bundle.
  drop   verification back to kubeadm's defaults (ca.crt, now the new CA alone); refused
         while any certificate on the node is still signed by the old CA.

The new CA must be the same on every node. On the first control-plane node, phase trust
--generate makes it (same key algorithm and subject as the old CA, --days validity); on
every other control-plane node give the first node's <pki>/rotation/<ca>/new.crt and
new.key with --new-ca-cert/--new-ca-key; a worker needs only --new-ca-cert. Run each phase
on every node, and restart the components it names, before the next phase anywhere.

This command works on this node only (--root); restarting the components is left to you
(certctl restart ...). See docs/ca-rotation.md.`,
		Example: `  # first control-plane node: what phase trust would change, then do it
  certctl ca rotate ca --phase trust --generate --dry-run
  certctl ca rotate ca --phase trust --generate
  certctl restart apiserver controller-manager scheduler kubelet

  # the other control-plane nodes, with the first node's files copied over
  certctl ca rotate ca --phase trust --new-ca-cert /tmp/ca-new.crt --new-ca-key /tmp/ca-new.key

  # a worker
  certctl ca rotate ca --phase trust --new-ca-cert /tmp/ca-new.crt

  # then, on every node in turn
  certctl ca rotate ca --phase issue
  certctl ca rotate ca --phase drop

  # undo the last phase applied on this node
  certctl ca rotate ca --rollback`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return o.run(args) },
	}
	f := cmd.Flags()
	f.StringVar(&o.Phase, "phase", "", "the phase to run: trust, issue or drop")
	f.IntVar(&o.Days, "days", carotate.DefaultDays, "validity of a generated new CA, in days")
	f.BoolVar(&o.DryRun, "dry-run", false, "list the files the phase would change; change nothing")
	f.BoolVar(&o.Rollback, "rollback", false, "undo the last phase applied on this node")
	f.StringVar(&o.NewCACert, "new-ca-cert", "", "the new CA certificate (new.crt of the node that generated it)")
	f.StringVar(&o.NewCAKey, "new-ca-key", "", "the new CA key (new.key of the node that generated it); not on workers")
	f.BoolVar(&o.Generate, "generate", false, "generate the new CA here (phase trust on the first control-plane node)")
	f.DurationVar(&o.LockTimeout, "lock-timeout", 30*time.Second, "how long to wait for another certctl run")
	return cmd
}

func (o *caRotateOptions) run(args []string) error {
	arg := "all"
	if len(args) == 1 {
		arg = args[0]
	}
	cas, err := carotate.Expand(arg)
	if err != nil {
		return err
	}
	if o.Phase == "" && !o.Rollback {
		return errors.New("give --phase trust, issue or drop (one phase at a time, on every node), or --rollback")
	}
	ro := carotate.Options{Layout: o.Layout(), Days: o.Days, Generate: o.Generate, DryRun: o.DryRun,
		LockTimeout: o.LockTimeout, Log: o.Streams.ErrOut, Command: "certctl ca rotate " + arg + " --phase " + o.Phase}
	if o.Rollback {
		ro.Command = "certctl ca rotate " + arg + " --rollback"
	}
	if o.NewCACert != "" {
		if ro.NewCA, err = carotate.ReadNewCA(o.Layout().Resolve(o.NewCACert), o.keyPath()); err != nil {
			return err
		}
	} else if o.NewCAKey != "" {
		return errors.New("--new-ca-key needs --new-ca-cert")
	}
	results, err := carotate.Run(ro, cas, o.Phase, o.Rollback)
	carotate.Render(o.Streams.Out, results)
	return err
}

func (o *caRotateOptions) keyPath() string {
	if o.NewCAKey == "" {
		return ""
	}
	return o.Layout().Resolve(o.NewCAKey)
}
