package cli

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/certctl/certctl/pkg/flagvalue"
	"github.com/certctl/certctl/pkg/lease"
	"github.com/certctl/certctl/pkg/noderenew"
	"github.com/certctl/certctl/pkg/renew"
)

func newRenewCmd(g *Globals) *cobra.Command {
	var (
		o        noderenew.Options
		yes, rst bool
		ro       restartOptions
		kc       string
	)
	cmd := &cobra.Command{
		Use:   "renew [NAME...|all]",
		Short: "Re-issue certificates from the cluster's own CAs, with extra SANs and custom validity",
		RunE: func(c *cobra.Command, args []string) error {
			o.Names, o.Out, o.Log, o.Where = args, g.Streams.Out, g.Streams.ErrOut, g.where(kc)
			o.Command = "certctl " + strings.Join(os.Args[1:], " ")
			if !yes {
				o.Confirm = func(q string) (bool, error) { return confirm(g.Streams, q) }
			}
			if rst {
				req, err := ro.request(g)
				if err != nil {
					return err
				}
				o.Restart = &req
			}
			res, err := noderenew.Run(c.Context(), g.Layout(), o)
			if err == nil && res.Aborted {
				return errAborted
			}
			return err
		},
	}
	f := cmd.Flags()
	flagvalue.SANsVar(f, &o.SANs, "san", "IP or DNS name to add (repeatable, comma-separated); goes to apiserver unless names are given")
	f.IntVar(&o.Days, "days", renew.DefaultDays, fmt.Sprintf("validity in days from now (1..%d), capped at the CA's expiry", renew.MaxDays))
	f.StringVar(&o.KeyMode, "key", renew.KeyRotate, "rotate (new keys, like kubeadm) or reuse (keep the existing keys)")
	f.StringVar(&o.KeyAlgorithm, "key-algorithm", "", "algorithm of rotated keys: rsa-2048, rsa-3072, rsa-4096, ecdsa-p256, ecdsa-p384 (default: the old key's)")
	flagvalue.WindowVar(f, &o.IfExpiringWithin, nil, "if-expiring-within", "", true, "renew only what expires within this window (e.g. 30d, 2w, 720h); nothing to do exits 0")
	f.BoolVar(&o.CSROnly, "csr-only", false, "write new keys and certificate requests for an external CA instead of signing")
	f.StringVar(&o.CSRDir, "csr-dir", "", "where --csr-only writes (default <kubeconfig dir>/certctl-csr/<time>)")
	f.BoolVar(&o.DryRun, "dry-run", false, "print the plan and stop")
	f.BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	f.DurationVar(&o.LockTimeout, "lock-timeout", 30*time.Second, "how long to wait for another certctl run holding the lock")
	f.BoolVar(&rst, "restart", false, "then make the components use the new files: verify those that reload them by themselves (etcd, the apiserver: no downtime), restart the others (controller-manager, scheduler, kubelet), rolling back to the backup if one does not come back")
	f.BoolVar(&o.SkipKubeadmConfig, "skip-kubeadm-config", false, "do not record --san in kube-system/kubeadm-config (ClusterConfiguration.apiServer.certSANs)")
	f.StringVar(&kc, "kubeconfig", "", "kubeconfig for the kubeadm-config update and the --lease (default: the node's admin.conf; for --lease in a pod, its service account)")
	f.StringVar(&o.Lease, "lease", "", "hold this Lease (NAMESPACE/NAME, e.g. "+lease.DefaultRef+") while renewing, as cluster renew and the scheduled CronJobs do")
	f.DurationVar(&o.LeaseWait, "lease-wait", 5*time.Minute, "with --lease: how long to wait while another run holds it")
	f.StringVar(&o.EventsNode, "events-node", "", "after the run, record a Kubernetes Event on this Node for every warning or critical finding of inspect (client as for --lease; docs/monitoring.md)")
	ro.flags(cmd)
	f.DurationVar(&o.RandomDelay, "random-delay", 0, "wait a random time up to this long before starting (spreads scheduled runs of several nodes)")
	return cmd
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
