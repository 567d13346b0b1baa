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
		RunE:  func(cmd *cobra.Command, args []string) error { return o.run(cmd.Context(), args) },
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
