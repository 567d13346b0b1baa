package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/certctl/certctl/pkg/fsutil"
	"github.com/certctl/certctl/pkg/inspect"
	"github.com/certctl/certctl/pkg/lastrun"
	"github.com/certctl/certctl/pkg/renew"
	"github.com/spf13/cobra"
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
those that need it, verified over TLS, with rollback (docs/restart.md).`,
		Example: `  # case B and C at once: 10 years, the load balancer's IP added to the apiserver cert
  certctl renew --days 3650 --san 10.2.1.139

  # case B: only the apiserver certificate, with the VIP (also added to kubeadm-config)
  certctl renew apiserver --san 10.2.0.100

  # what cron runs: only what expires within 30 days, no questions
  certctl renew all --if-expiring-within 30d --yes

  # look first
  certctl renew all --dry-run

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
	f.StringVar(&o.Kubeconfig, "kubeconfig", "", "kubeconfig for the kubeadm-config update (default: the node's admin.conf)")
	o.restartOptions.flags(cmd)
	f.DurationVar(&o.RandomDelay, "random-delay", 0, "wait a random time up to this long before starting (spreads scheduled runs of several nodes)")
	return cmd
}

func (o *renewOptions) run(ctx context.Context, args []string) (err error) {
	if ctx == nil {
		ctx = context.Background()
	}
	if o.RandomDelay < 0 {
		return withCode(ExitError, fmt.Errorf("--random-delay %s: must not be negative", o.RandomDelay))
	}
	if o.RandomDelay > 0 {
		// Spreads scheduled runs of several nodes (cron has no RandomizedDelaySec).
		select {
		case <-ctx.Done():
			return withCode(ExitError, ctx.Err())
		case <-time.After(time.Duration(rand.Int64N(int64(o.RandomDelay)))):
		}
	}
	// Scheduled checks (--if-expiring-within) and runs that reached the point of changing
	// files leave a record (schedule status, inspect and the metrics read it) and a one-line
	// summary on stderr (the journal, or cron's log). A manual command refused for bad input
	// leaves nothing.
	rec := &lastrun.Record{Time: time.Now().UTC(), Command: "certctl " + strings.Join(os.Args[1:], " "), Result: lastrun.ResultNoop}
	applied := false
	if !o.DryRun && !o.CSROnly {
		defer func() {
			if o.IfExpiringWithin == "" && !applied {
				return
			}
			if err != nil {
				rec.Result = lastrun.ResultFailed
				if msg := err.Error(); msg != "" && !strings.HasPrefix(msg, "exit ") {
					rec.Error = msg
				}
			}
			if werr := lastrun.Write(o.Layout(), *rec); werr != nil {
				fmt.Fprintf(o.Streams.ErrOut, "warning: %v\n", werr)
			}
			fmt.Fprintln(o.Streams.ErrOut, rec.Summary())
		}()
	}
	sans, err := ParseSANs(o.SANs)
	if err != nil {
		return withCode(ExitError, fmt.Errorf("--san: %w", err))
	}
	var within time.Duration
	if o.IfExpiringWithin != "" {
		if within, err = inspect.ParseDuration(o.IfExpiringWithin); err != nil {
			return withCode(ExitError, fmt.Errorf("--if-expiring-within: %w", err))
		}
		if within <= 0 {
			return withCode(ExitError, fmt.Errorf("--if-expiring-within %q: must be positive", o.IfExpiringWithin))
		}
	}
	l := o.Layout()
	now := time.Now()
	var kcfg *renew.KubeadmConfigOptions
	if len(sans) > 0 && !o.SkipKubeadmConfig {
		kcfg = kubeadmConfigTarget(l, o.Kubeconfig, 0)
	}
	plan, err := renew.NewPlan(l, renew.Options{
		Names: args, SANs: sans, Days: o.Days, KeyMode: o.Key, KeyAlgorithm: o.KeyAlgorithm,
		IfExpiringWithin: within, CSROnly: o.CSROnly, Now: now, KubeadmConfig: kcfg,
	})
	if err != nil {
		return withCode(ExitError, err)
	}
	out := o.Streams.Out
	if plan.Empty() {
		if within > 0 {
			fmt.Fprintf(out, "nothing expires within %s: nothing to renew\n", o.IfExpiringWithin)
		} else {
			fmt.Fprintln(out, "nothing to renew")
		}
		return nil
	}
	if err := plan.Render(out); err != nil {
		return withCode(ExitError, err)
	}
	if o.DryRun {
		fmt.Fprintln(out, "dry run: nothing changed")
		return nil
	}
	if !o.Yes {
		ok, err := confirm(o.Streams, "renew the certificates above?")
		if err != nil {
			return withCode(ExitError, err)
		}
		if !ok {
			fmt.Fprintln(out, "aborted: nothing changed")
			return withCode(ExitError, nil)
		}
	}
	csrDir := o.CSRDir
	if o.CSROnly && csrDir == "" {
		csrDir = filepath.Join(l.KubeconfigDir, "certctl-csr", now.UTC().Format("20060102T150405Z"))
	}
	applied = true
	userCopy := copiesAdminConf(l) && plan.Renews("admin.conf")
	var alsoBackUp []string
	if userCopy {
		alsoBackUp = []string{l.UserKubeconfig}
	}
	res, err := renew.Apply(plan, renew.ApplyOptions{
		AlsoBackUp: alsoBackUp,
		Writer:     fsutil.OS{}, Command: "certctl " + strings.Join(os.Args[1:], " "),
		LockTimeout: o.LockTimeout, Log: o.Streams.ErrOut, CSRDir: csrDir,
	})
	if err != nil {
		return withCode(ExitError, err)
	}
	if o.CSROnly {
		fmt.Fprintf(out, "wrote keys and certificate requests for %d items to %s: have your CA sign each .csr, then install the certificate and key over the old pair\n", len(res.Changed), res.CSRDir)
		return nil
	}
	var names []string
	for _, c := range res.Changed {
		names = append(names, c.Name)
	}
	rec.Result, rec.Renewed, rec.BackupID = lastrun.ResultRenewed, names, res.BackupID
	fmt.Fprintf(out, "renewed %d: %s\nbackup: %s (certctl restore %s)\n", len(res.Changed), strings.Join(names, ", "), res.BackupID, res.BackupID)
	res.KubeadmConfig.Render(out)
	for _, c := range res.Changed {
		if c.Name != "admin.conf" {
			continue
		}
		if userCopy {
			// ~/.kube/config was a copy of admin.conf: the runbook's "cp admin.conf ~/.kube/config".
			if err := refreshKubeconfig(o.Globals, filepath.Join(l.KubeconfigDir, "admin.conf"), l.UserKubeconfig, true); err != nil {
				return withCode(ExitError, fmt.Errorf("admin.conf renewed, but refreshing %s failed: %w (certctl kubeconfig refresh retries)", l.UserKubeconfig, err))
			}
		} else {
			fmt.Fprintf(out, "kubectl: other kubeconfigs that hold admin.conf's old certificate need it too: certctl kubeconfig refresh [--to PATH]\n")
		}
	}
	if o.Restart {
		if err := restartAfterRenew(ctx, o.Globals, &o.restartOptions, names, res.BackupID); err != nil {
			return err
		}
		return nil
	}
	if comps := res.Components(); len(comps) > 0 {
		fmt.Fprintf(out, "running components still hold the old certificates in memory: certctl renew ... --restart, or certctl restart %s (see docs/restart.md)\n", strings.Join(comps, " "))
	}
	return nil
}

// confirm asks a yes/no question on a terminal; without a terminal it refuses.
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

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
