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
	"github.com/certctl/certctl/pkg/monitoring"
	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/renew"
	"github.com/certctl/certctl/pkg/restart"
)

// renewOptions are renew's flags that are not renew.RunOptions fields as they are.
type renewOptions struct {
	*Globals
	ro                renew.RunOptions
	sans              []string
	threshold         string
	yes, restart      bool
	skipKubeadmConfig bool
	kubeconfig        string
	// The Lease the scheduled CronJobs share with cluster renew (docs/schedule.md).
	lease     string
	leaseWait time.Duration
	// eventsNode: after the run, an Event on this Node for every warning or critical finding
	// (docs/monitoring.md); what the CronJobs pass.
	eventsNode string
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
	f.StringSliceVar(&o.sans, "san", nil, "IP or DNS name to add (repeatable, comma-separated); goes to apiserver unless names are given")
	f.IntVar(&o.ro.Days, "days", renew.DefaultDays, fmt.Sprintf("validity in days from now (1..%d), capped at the CA's expiry", renew.MaxDays))
	f.StringVar(&o.ro.KeyMode, "key", renew.KeyRotate, "rotate (new keys, like kubeadm) or reuse (keep the existing keys)")
	f.StringVar(&o.ro.KeyAlgorithm, "key-algorithm", "", "algorithm of rotated keys: rsa-2048, rsa-3072, rsa-4096, ecdsa-p256, ecdsa-p384 (default: the old key's)")
	f.StringVar(&o.threshold, "if-expiring-within", "", "renew only what expires within this window (e.g. 30d, 2w, 720h); nothing to do exits 0")
	f.BoolVar(&o.ro.CSROnly, "csr-only", false, "write new keys and certificate requests for an external CA instead of signing")
	f.StringVar(&o.ro.CSRDir, "csr-dir", "", "where --csr-only writes (default <kubeconfig dir>/certctl-csr/<time>)")
	f.BoolVar(&o.ro.DryRun, "dry-run", false, "print the plan and stop")
	f.BoolVarP(&o.yes, "yes", "y", false, "do not ask for confirmation")
	f.DurationVar(&o.ro.LockTimeout, "lock-timeout", 30*time.Second, "how long to wait for another certctl run holding the lock")
	f.BoolVar(&o.restart, "restart", false, "then restart exactly the components that need it (see certctl restart), rolling back to the backup if one does not come back")
	f.BoolVar(&o.skipKubeadmConfig, "skip-kubeadm-config", false, "do not record --san in kube-system/kubeadm-config (ClusterConfiguration.apiServer.certSANs)")
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig for the kubeadm-config update and the --lease (default: the node's admin.conf; for --lease in a pod, its service account)")
	f.StringVar(&o.lease, "lease", "", "hold this Lease (NAMESPACE/NAME, e.g. "+lease.DefaultRef+") while renewing, as cluster renew and the scheduled CronJobs do")
	f.DurationVar(&o.leaseWait, "lease-wait", 5*time.Minute, "with --lease: how long to wait while another run holds it")
	f.StringVar(&o.eventsNode, "events-node", "", "after the run, record a Kubernetes Event on this Node for every warning or critical finding of inspect (client as for --lease; docs/monitoring.md)")
	o.restartOptions.flags(cmd)
	f.DurationVar(&o.ro.RandomDelay, "random-delay", 0, "wait a random time up to this long before starting (spreads scheduled runs of several nodes)")
	return cmd
}

func (o *renewOptions) run(ctx context.Context, args []string) error {
	ro := o.ro
	var err error
	if ro.SANs, err = pki.ParseSANs(o.sans); err != nil {
		return fmt.Errorf("--san: %w", err)
	}
	if o.threshold != "" {
		if ro.IfExpiringWithin, err = inspect.ParseDuration(o.threshold); err != nil {
			return fmt.Errorf("--if-expiring-within: %w", err)
		}
		if ro.IfExpiringWithin <= 0 {
			return fmt.Errorf("--if-expiring-within %q: must be positive", o.threshold)
		}
	}
	if o.lease != "" {
		if ro.Lease, err = o.leaseOptions(); err != nil {
			return err
		}
	}
	// --san also goes into kube-system/kubeadm-config, so kubeadm does not drop it again.
	if len(ro.SANs) > 0 && !o.skipKubeadmConfig {
		ro.KubeadmConfig = kubeadmConfigTarget(o.Layout(), o.kubeconfig, 0)
	}
	ro.Names, ro.Out, ro.Log = args, o.Streams.Out, o.Streams.ErrOut
	ro.Command = "certctl " + strings.Join(os.Args[1:], " ")
	if !o.yes {
		ro.Confirm = func(q string) (bool, error) { return confirm(o.Streams, q) }
	}
	if o.restart {
		// Refuse before anything is renewed when no kubelet runs the node's static pods.
		req, err := o.request(o.Globals)
		if err != nil {
			return err
		}
		if !ro.DryRun && !ro.CSROnly {
			if _, err := restart.CheckNode(req); err != nil {
				return fmt.Errorf("--restart: %w; nothing was renewed", err)
			}
		}
		ro.After = func(ctx context.Context, names []string, backupID string) error {
			_, err := restart.AfterRenew(ctx, req, names, backupID)
			return err
		}
	}
	res, err := renew.Run(ctx, o.Layout(), ro)
	if o.eventsNode != "" && !ro.DryRun {
		// Whatever the run's outcome: the Events say what is still wrong after it.
		monitoring.RecordNodeWith(ctx, o.where(o.kubeconfig).PodConfig, o.Layout(), o.eventsNode, o.Streams.ErrOut)
	}
	if err == nil && res.Aborted {
		return errAborted
	}
	return err
}

// leaseOptions is --lease: the Lease and a client for it.
func (o *renewOptions) leaseOptions() (*renew.LeaseOptions, error) {
	ns, name, err := lease.ParseRef(o.lease)
	if err != nil {
		return nil, err
	}
	if o.leaseWait < 0 {
		return nil, fmt.Errorf("--lease-wait %s: must not be negative", o.leaseWait)
	}
	rc, err := o.where(o.kubeconfig).PodConfig()
	if err != nil {
		return nil, fmt.Errorf("--lease: %w", err)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("--lease: %w", err)
	}
	return &renew.LeaseOptions{Client: cs, Options: lease.Options{Namespace: ns, Name: name, Wait: o.leaseWait}}, nil
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
