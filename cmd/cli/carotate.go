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
		Long: `show prints, for each CA named (all when none), the certificate this node signs with: a
comment line "# CA: PATH (subject, key algorithm, expiry)" and the certificate in PEM, which
openssl and every PEM reader take as is. A CA that is not on this node (no etcd CA on a worker)
gets a comment line saying so. For "sa", the service-account key pair, it prints the public key
(sa.pub) in PEM. 'certctl cluster ca-rotate etcd-ca' runs it on every
control-plane node (with the hidden --record: one typed record line instead of the PEM) to
make the new CA like the old one and to check that every node holds the same CA.`,
		Example: `  certctl ca show ca
  certctl ca show etcd-ca | openssl x509 -noout -subject -enddate
  certctl ca show`,
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
		Long: `rotate replaces CAs of this node (the cluster CA "ca", "etcd-ca", "front-proxy-ca", the
service-account signing key pair "sa", several of them, or "all") with new ones, in three phases
run one at a time with --phase; each phase is
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

For "sa" (sa.key, sa.pub: what service-account tokens are signed and verified with), in
<pki>/rotation/sa/: trust puts new.key, new.pub and bundle.pub = old + new public key there and
points kube-apiserver --service-account-key-file at the bundle (tokens of either key verify;
/openid/v1/jwks publishes both); issue makes sa.key/sa.pub the new pair (the apiserver and the
controller-manager sign with it); drop points the flag at sa.pub again, and is refused while a
pod's projected token on the node is still signed by the old key (certctl ca tokens --refresh
has the kubelet re-request them; --ignore-old-tokens goes on anyway, and those pods get 401
until their kubelet refreshes the token).

The new CA must be the same on every node. On the first control-plane node, phase trust
--generate makes it (same key algorithm and subject as the old CA, --days validity); on
every other control-plane node give the first node's <pki>/rotation/<ca>/new.crt and
new.key with --new-ca-cert/--new-ca-key (or, for several CAs, a directory of CA.crt and
CA.key files with --new-ca-dir); a worker needs only --new-ca-cert. Run each phase
on every node, and restart the components it names, before the next phase anywhere.

This command works on this node only (--root); with --restart it restarts the components the
phase names, otherwise that is left to you (certctl restart ...). 'certctl cluster ca-rotate'
runs it on every node in turn. See docs/ca-rotation.md.`,
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
  certctl ca rotate ca --rollback

  # the service-account key, on a single control-plane node
  certctl ca rotate sa --phase trust --generate --restart
  certctl ca rotate sa --phase issue --restart
  certctl ca tokens --refresh
  certctl ca rotate sa --phase drop --restart`,
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
