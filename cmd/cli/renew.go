package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"k8s.io/client-go/kubernetes"

	"github.com/certctl/certctl/pkg/inspect"
	"github.com/certctl/certctl/pkg/lease"
	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/renew"
)

type renewOptions struct {
	*Globals
	SANs             []string
	Days             int
	Key              string
	KeyAlgorithm     string
	IfExpiringWithin string
	CSROnly          bool
	CSRDir           string
	DryRun           bool
	Yes              bool
	LockTimeout      time.Duration
	RandomDelay      time.Duration
	Restart          bool
	// kube-system/kubeadm-config for --san (docs/renew.md).
	SkipKubeadmConfig bool
	Kubeconfig        string
	// The Lease the scheduled CronJobs share with cluster renew (docs/schedule.md).
	Lease     string
	LeaseWait time.Duration
	// EventsNode: after the run, an Event on this Node for every warning or critical finding
	// (docs/monitoring.md); what the CronJobs pass.
	EventsNode string
	restartOptions
}

func newRenewCmd(g *Globals) *cobra.Command {
	o := &renewOptions{Globals: g}
	cmd := &cobra.Command{
		Use:   "renew [NAME...|all]",
		Short: "Re-issue certificates from the cluster's own CAs, with extra SANs and custom validity",
		Long: `renew re-issues leaf certificates and the client certificates embedded in kubeconfigs,
each from its own CA (ca, etcd/ca, front-proxy-ca), keeping exactly what the old
certificate had (raw subject, DNS/IP/email/URI SANs, key usages) and adding --san values.

Names (from 'certctl inspect'): apiserver, apiserver-kubelet-client, apiserver-etcd-client,
front-proxy-client, etcd-server, etcd-peer, etcd-healthcheck-client, admin.conf,
super-admin.conf, controller-manager.conf, scheduler.conf. No name, or "all", means all of
them. kubelet.conf pointing at kubelet-client-current.pem is left alone (the kubelet
rotates it). --san goes to the apiserver certificate, or to the named serving certificates.

Validity is --days from now (NotBefore 5 minutes back), capped at the issuing CA's expiry
(the plan says so). --key rotate (default, as kubeadm) makes new keys, of the old key's
algorithm unless --key-algorithm says otherwise; --key reuse keeps the keys.

The plan is printed before anything changes. --dry-run stops there. Without --yes certctl
asks on a terminal, and refuses when there is no terminal to ask.

Safety: every file is backed up first (certctl backup list, certctl restore ID); writes are
atomic and journaled, so a kill at any instant leaves every pair old or new, or is repaired
by the next certctl run; a lock keeps two renewals apart.

With an external CA (no ca.key), --csr-only writes new keys and certificate requests for
your CA to sign; nothing in the tree changes.

--san is also recorded in kube-system/kubeadm-config (ClusterConfiguration.apiServer.certSANs,
or etcd.local.serverCertSANs/peerCertSANs) through admin.conf, so the next kubeadm join or
'kubeadm init phase certs' keeps it; the plan shows it, --dry-run only reads it. When the API
is unreachable the certificates are still renewed and a warning names the command to run
later (certctl kubeadm-config add-san ...). --skip-kubeadm-config leaves it alone.

A ~/.kube/config that is a copy of admin.conf (same client certificate) is refreshed from the
renewed admin.conf, after a backup, keeping its other clusters; other kubeconfigs: certctl
kubeconfig refresh --to PATH.

Renewed certificates are used only once the components restart: --restart restarts exactly
those that need it, verified over TLS, with rollback (docs/restart.md).

--lease NAMESPACE/NAME takes that coordination.k8s.io Lease before the plan and gives it up at
the end, waiting up to --lease-wait while another holder has it (then it fails naming the
holder, nothing renewed). 'certctl cluster renew' holds kube-system/certctl-renew for its
whole rollout, and the CronJobs of 'certctl schedule manifest' pass --lease with it, so no two
of them restart control-plane nodes at once; a holder that died loses the Lease 60s after its
last renewal. The client is --kubeconfig, else the pod's service account when certctl runs
in a pod, else the node's admin.conf.`,
		Example: `  # case B and C at once: 10 years, the load balancer's IP added to the apiserver cert
  certctl renew --days 3650 --san 10.2.1.139

  # case B: only the apiserver certificate, with the VIP (also added to kubeadm-config)
  certctl renew apiserver --san 10.2.0.100

  # what cron runs: only what expires within 30 days, no questions
  certctl renew all --if-expiring-within 30d --yes

  # look first
  certctl renew all --dry-run

  # what the CronJobs of 'schedule manifest' run: the shared Lease first
  certctl --root /host renew all --if-expiring-within 30d --yes --lease kube-system/certctl-renew --lease-wait 30m --events-node cp-1

  # external CA: keys and CSRs for your CA to sign
  certctl renew all --csr-only --csr-dir /root/csr`,
		RunE: func(cmd *cobra.Command, args []string) error { return o.run(cmd.Context(), args) },
	}
	f := cmd.Flags()
	f.StringSliceVar(&o.SANs, "san", nil, "IP or DNS name to add (repeatable, comma-separated); goes to apiserver unless names are given")
	f.IntVar(&o.Days, "days", renew.DefaultDays, fmt.Sprintf("validity in days from now (1..%d), capped at the CA's expiry", renew.MaxDays))
	f.StringVar(&o.Key, "key", renew.KeyRotate, "rotate (new keys, like kubeadm) or reuse (keep the existing keys)")
	f.StringVar(&o.KeyAlgorithm, "key-algorithm", "", "algorithm of rotated keys: rsa-2048, rsa-3072, rsa-4096, ecdsa-p256, ecdsa-p384 (default: the old key's)")
	f.StringVar(&o.IfExpiringWithin, "if-expiring-within", "", "renew only what expires within this window (e.g. 30d, 2w, 720h); nothing to do exits 0")
	f.BoolVar(&o.CSROnly, "csr-only", false, "write new keys and certificate requests for an external CA instead of signing")
	f.StringVar(&o.CSRDir, "csr-dir", "", "where --csr-only writes (default <kubeconfig dir>/certctl-csr/<time>)")
	f.BoolVar(&o.DryRun, "dry-run", false, "print the plan and stop")
	f.BoolVarP(&o.Yes, "yes", "y", false, "do not ask for confirmation")
	f.DurationVar(&o.LockTimeout, "lock-timeout", 30*time.Second, "how long to wait for another certctl run holding the lock")
	f.BoolVar(&o.Restart, "restart", false, "then restart exactly the components that need it (see certctl restart), rolling back to the backup if one does not come back")
	f.BoolVar(&o.SkipKubeadmConfig, "skip-kubeadm-config", false, "do not record --san in kube-system/kubeadm-config (ClusterConfiguration.apiServer.certSANs)")
	f.StringVar(&o.Kubeconfig, "kubeconfig", "", "kubeconfig for the kubeadm-config update and the --lease (default: the node's admin.conf; for --lease in a pod, its service account)")
	f.StringVar(&o.Lease, "lease", "", "hold this Lease (NAMESPACE/NAME, e.g. "+lease.DefaultRef+") while renewing, as cluster renew and the scheduled CronJobs do")
	f.DurationVar(&o.LeaseWait, "lease-wait", 5*time.Minute, "with --lease: how long to wait while another run holds it")
	f.StringVar(&o.EventsNode, "events-node", "", "after the run, record a Kubernetes Event on this Node for every warning or critical finding of inspect (client as for --lease; docs/monitoring.md)")
	o.restartOptions.flags(cmd)
	f.DurationVar(&o.RandomDelay, "random-delay", 0, "wait a random time up to this long before starting (spreads scheduled runs of several nodes)")
	return cmd
}

func (o *renewOptions) run(ctx context.Context, args []string) error {
	if ctx == nil {
		ctx = context.Background()
	}
	sans, err := pki.ParseSANs(o.SANs)
	if err != nil {
		return fmt.Errorf("--san: %w", err)
	}
	var within time.Duration
	if o.IfExpiringWithin != "" {
		if within, err = inspect.ParseDuration(o.IfExpiringWithin); err != nil {
			return fmt.Errorf("--if-expiring-within: %w", err)
		}
		if within <= 0 {
			return fmt.Errorf("--if-expiring-within %q: must be positive", o.IfExpiringWithin)
		}
	}
	var hold *renew.LeaseOptions
	if o.Lease != "" {
		if hold, err = o.leaseOptions(); err != nil {
			return err
		}
	}
	// --san also goes into kube-system/kubeadm-config, so kubeadm does not drop it again.
	var kcfg *renew.KubeadmConfigOptions
	if len(sans) > 0 && !o.SkipKubeadmConfig {
		kcfg = kubeadmConfigTarget(o.Layout(), o.Kubeconfig, 0)
	}
	ro := renew.RunOptions{
		Options: renew.Options{
			Names: args, SANs: sans, Days: o.Days, KeyMode: o.Key, KeyAlgorithm: o.KeyAlgorithm,
			IfExpiringWithin: within, CSROnly: o.CSROnly, KubeadmConfig: kcfg,
		},
		DryRun: o.DryRun, RandomDelay: o.RandomDelay, CSRDir: o.CSRDir, LockTimeout: o.LockTimeout,
		Command: "certctl " + strings.Join(os.Args[1:], " "), Out: o.Streams.Out, Log: o.Streams.ErrOut,
		Lease: hold,
	}
	if !o.Yes {
		ro.Confirm = func(q string) (bool, error) { return confirm(o.Streams, q) }
	}
	if o.Restart {
		ro.After = func(ctx context.Context, names []string, backupID string) error {
			return restartAfterRenew(ctx, o.Globals, &o.restartOptions, names, backupID)
		}
	}
	res, err := renew.Run(ctx, o.Layout(), ro)
	if o.EventsNode != "" && !o.DryRun {
		// Whatever the run's outcome: the Events say what is still wrong after it.
		recordNodeEvents(ctx, o.Globals, o.Kubeconfig, o.EventsNode)
	}
	if err == nil && res.Aborted {
		return errAborted
	}
	return err
}

// leaseOptions is --lease: the Lease and a client for it.
func (o *renewOptions) leaseOptions() (*renew.LeaseOptions, error) {
	ns, name, err := lease.ParseRef(o.Lease)
	if err != nil {
		return nil, err
	}
	if o.LeaseWait < 0 {
		return nil, fmt.Errorf("--lease-wait %s: must not be negative", o.LeaseWait)
	}
	rc, err := o.where(o.Kubeconfig).PodConfig()
	if err != nil {
		return nil, fmt.Errorf("--lease: %w", err)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("--lease: %w", err)
	}
	return &renew.LeaseOptions{Client: cs, Options: lease.Options{Namespace: ns, Name: name, Wait: o.LeaseWait}}, nil
}

func confirm(s Streams, question string) (bool, error) {
	f, ok := s.In.(*os.File)
	if !ok || !isTerminal(f) {
		return false, errors.New("not a terminal, so certctl cannot ask for confirmation: pass --yes (or --dry-run to see the plan)")
	}
	fmt.Fprintf(s.Out, "%s [y/N] ", question)
	line, err := bufio.NewReader(f).ReadString('\n')
	if err != nil && line == "" {
		return false, nil
	}
	a := strings.ToLower(strings.TrimSpace(line))
	return a == "y" || a == "yes", nil
}

// isTerminal reports whether f is a terminal (golang.org/x/term: a tty, not just any
// character device such as /dev/null).
func isTerminal(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }
