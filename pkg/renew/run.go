package renew

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"time"

	"github.com/certctl/certctl/pkg/backup"
	"github.com/certctl/certctl/pkg/fsutil"
	"github.com/certctl/certctl/pkg/kubeconfig"
	"github.com/certctl/certctl/pkg/lastrun"
	"github.com/certctl/certctl/pkg/lease"
	"github.com/certctl/certctl/pkg/pki"
	"k8s.io/client-go/kubernetes"
)

// RunOptions are a whole `certctl renew`: the plan's options and how to carry it out.
type RunOptions struct {
	Options
	DryRun bool
	// RandomDelay: wait a random time up to this long first (spreads scheduled runs of
	// several nodes; cron has no RandomizedDelaySec).
	RandomDelay time.Duration
	// Confirm asks whether to go ahead after the plan is shown; nil means yes (--yes).
	Confirm     func(question string) (bool, error)
	CSRDir      string // --csr-only output; default <kubeconfig dir>/certctl-csr/<time>. Resolved under the root.
	Command     string // the command line, for the backup, the journal and the run record
	LockTimeout time.Duration
	// After runs once certificates were renewed (--restart); its error fails the run and is
	// returned as is.
	After func(ctx context.Context, renewed []string, backupID string) error
	Out   io.Writer // the plan and what was done
	Log   io.Writer // progress, warnings and the run record's summary line
	// Lease, when set, is taken before the plan is made and released at the end (not for a
	// dry run or --csr-only): the scheduled CronJobs take the Lease `certctl cluster renew`
	// holds, so no two renewals restart control-plane nodes at once.
	Lease *LeaseOptions
}

// LeaseOptions say which Lease a renewal holds, through which client.
type LeaseOptions struct {
	Client kubernetes.Interface
	lease.Options
}

// RunResult is what Run did.
type RunResult struct {
	Plan    *Plan
	Applied *Result // nil when nothing was applied
	Aborted bool    // the operator said no
	// UserKubeconfig is the refresh of ~/.kube/config, when it was a copy of the renewed
	// admin.conf.
	UserKubeconfig *kubeconfig.RefreshResult
}

// Run is `certctl renew`: the random delay, the plan (printed to o.Out), the confirmation,
// the crash-safe Apply, the refresh of a ~/.kube/config that copies admin.conf (the runbook's
// "cp admin.conf ~/.kube/config", in the renewal's backup), then o.After. Scheduled checks
// (IfExpiringWithin) and runs that reached the point of changing files leave a run record
// (schedule status, inspect and the metrics read it) and its summary on o.Log; a run refused
// for bad input leaves nothing.
func Run(ctx context.Context, l pki.Layout, o RunOptions) (res *RunResult, err error) {
	out, log := orDiscard(o.Out), orDiscard(o.Log)
	if o.RandomDelay < 0 {
		return nil, inputErr("--random-delay %s: must not be negative", o.RandomDelay)
	}
	if o.RandomDelay > 0 {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Duration(rand.Int64N(int64(o.RandomDelay)))):
		}
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	rec := &lastrun.Record{Time: o.Now.UTC(), Command: o.Command, Result: lastrun.ResultNoop}
	applied := false
	if !o.DryRun && !o.CSROnly {
		defer func() {
			if o.IfExpiringWithin == 0 && !applied {
				return
			}
			if err != nil {
				rec.Result = lastrun.ResultFailed
				if !bareExitCode(err) {
					rec.Error = err.Error()
				}
			}
			if werr := lastrun.Write(l, *rec); werr != nil {
				fmt.Fprintf(log, "warning: %v\n", werr)
			}
			fmt.Fprintln(log, rec.Summary())
		}()
	}
	if o.Lease != nil && !o.DryRun && !o.CSROnly {
		held, err := holdLease(ctx, o.Lease, log)
		if err != nil {
			return nil, err
		}
		defer func() {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			if rerr := held.Release(rctx); rerr != nil {
				fmt.Fprintf(log, "warning: %v (it expires by itself)\n", rerr)
			}
		}()
	}
	plan, err := NewPlan(l, o.Options)
	if err != nil {
		return nil, err
	}
	res = &RunResult{Plan: plan}
	if plan.Empty() {
		if o.IfExpiringWithin > 0 {
			fmt.Fprintf(out, "nothing expires within %s: nothing to renew\n", days(o.IfExpiringWithin))
		} else {
			fmt.Fprintln(out, "nothing to renew")
		}
		return res, nil
	}
	if err := plan.Render(out); err != nil {
		return res, err
	}
	if o.DryRun {
		fmt.Fprintln(out, "dry run: nothing changed")
		return res, nil
	}
	if o.Confirm != nil {
		ok, err := o.Confirm("renew the certificates above?")
		if err != nil {
			return res, err
		}
		if !ok {
			fmt.Fprintln(out, "aborted: nothing changed")
			res.Aborted = true
			return res, nil
		}
	}
	csrDir := o.CSRDir
	if o.CSROnly && csrDir == "" {
		csrDir = filepath.Join(l.KubeconfigDir, "certctl-csr", o.Now.UTC().Format("20060102T150405Z"))
	}
	if csrDir != "" {
		csrDir = l.Resolve(csrDir) // nothing certctl writes lands outside the root
	}
	applied = true
	adminConf := l.AdminConf()
	userCopy := plan.Renews("admin.conf") && kubeconfig.CopiesAdmin(adminConf, l.UserKubeconfig)
	var alsoBackUp []string
	if userCopy {
		alsoBackUp = []string{l.UserKubeconfig}
	}
	ar, err := Apply(plan, ApplyOptions{
		AlsoBackUp: alsoBackUp, Writer: fsutil.OS{}, Command: o.Command,
		LockTimeout: o.LockTimeout, Log: log, CSRDir: csrDir,
	})
	if err != nil {
		return res, err
	}
	res.Applied = ar
	if o.CSROnly {
		fmt.Fprintf(out, "wrote keys and certificate requests for %d items to %s: have your CA sign each .csr, then install the certificate and key over the old pair\n", len(ar.Changed), ar.CSRDir)
		return res, nil
	}
	names := ar.Names()
	rec.Result, rec.Renewed, rec.BackupID = lastrun.ResultRenewed, names, ar.BackupID
	fmt.Fprintf(out, "renewed %d: %s\nbackup: %s (certctl restore %s)\n", len(ar.Changed), strings.Join(names, ", "), ar.BackupID, ar.BackupID)
	ar.KubeadmConfig.Render(out)
	if plan.Renews("admin.conf") {
		if userCopy {
			// The renewal's backup holds ~/.kube/config already.
			r, err := RefreshKubeconfig(l, RefreshOptions{Src: adminConf, Dst: l.UserKubeconfig, BackedUp: true, LockTimeout: o.LockTimeout})
			if err != nil {
				return res, fmt.Errorf("admin.conf renewed, but refreshing %s failed: %w (certctl kubeconfig refresh retries)", l.UserKubeconfig, err)
			}
			res.UserKubeconfig = r
			r.Render(out, adminConf, l.UserKubeconfig)
		} else {
			fmt.Fprintf(out, "kubectl: other kubeconfigs that hold admin.conf's old certificate need it too: certctl kubeconfig refresh [--to PATH]\n")
		}
	}
	if o.After != nil {
		return res, o.After(ctx, names, ar.BackupID)
	}
	if comps := ar.Components(); len(comps) > 0 {
		fmt.Fprintf(out, "running components still hold the old certificates in memory: certctl renew ... --restart, or certctl restart %s (see docs/restart.md)\n", strings.Join(comps, " "))
	}
	return res, nil
}

// Names are the renewed items' names, in plan order.
func (r *Result) Names() []string {
	var names []string
	for _, c := range r.Changed {
		names = append(names, c.Name)
	}
	return names
}

// RefreshOptions are a `certctl kubeconfig refresh`.
type RefreshOptions struct {
	Src, Dst    string // node paths or paths under the root; resolved under it
	BackedUp    bool   // the caller's backup holds Dst already
	LockTimeout time.Duration
	Command     string // recorded in the backup
}

// RefreshUser is certctl kubeconfig refresh: from's credentials (default admin.conf) into to
// (default the user's kubeconfig), what changed said on out.
func RefreshUser(l pki.Layout, from, to string, out io.Writer) error {
	o := RefreshOptions{Src: cmp.Or(from, l.AdminConf()), Dst: cmp.Or(to, l.UserKubeconfig), Command: "kubeconfig refresh"}
	res, err := RefreshKubeconfig(l, o)
	if err == nil {
		res.Render(out, l.Resolve(o.Src), l.Resolve(o.Dst))
	}
	return err
}

// RefreshKubeconfig merges Src's credentials into Dst (kubeconfig.Refresh: Dst keeps its
// owner, group and mode), under the renewal lock, so that the recovery every certctl command
// runs first can tell a killed refresh's temp file from one being written, and after a
// backup of Dst unless o.BackedUp.
func RefreshKubeconfig(l pki.Layout, o RefreshOptions) (*kubeconfig.RefreshResult, error) {
	if o.LockTimeout == 0 {
		o.LockTimeout = 30 * time.Second
	}
	if o.Command == "" {
		o.Command = "kubeconfig refresh"
	}
	lock, err := AcquireLock(l.StateDir(), o.LockTimeout)
	if err != nil {
		return nil, err
	}
	defer lock.Release()
	ro := kubeconfig.RefreshOptions{Src: l.Resolve(o.Src), Dst: l.Resolve(o.Dst)}
	if !o.BackedUp {
		ro.Backup = func(p string) (string, error) {
			m, err := backup.Create(fsutil.OS{}, l, o.Command, []string{p}, time.Now())
			if err != nil {
				return "", err
			}
			return m.ID, nil
		}
	}
	return kubeconfig.Refresh(ro)
}

// holdLease takes the Lease, waiting up to o.Wait while another run holds it.
func holdLease(ctx context.Context, o *LeaseOptions, log io.Writer) (*lease.Lease, error) {
	lo := o.Options
	if lo.Waiting == nil {
		lo.Waiting = func(h *lease.HeldError) {
			fmt.Fprintf(log, "the lease %s/%s is held by %s: waiting up to %s\n", h.Namespace, h.Name, h.Holder, lo.Wait)
		}
	}
	held, err := lease.Acquire(ctx, o.Client, lo)
	if err != nil {
		return nil, fmt.Errorf("nothing renewed: %w", err)
	}
	fmt.Fprintf(log, "holding the lease %s\n", held.Held())
	return held, nil
}

func orDiscard(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}

// days writes whole days as the flag takes them (30d), anything else as a duration.
func days(d time.Duration) string {
	if d > 0 && d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}

// bareExitCode reports whether err only carries an exit code (a command's silent exit, as the
// CLI's exit errors with no message): there is no message to record.
func bareExitCode(err error) bool {
	var coded interface {
		ExitCode() int
		Unwrap() error
	}
	return errors.As(err, &coded) && coded.Unwrap() == nil
}
