// Package noderotate is the node's part of a CA rotation: a phase's file changes (pkg/carotate)
// rolled out by restarting the components they name (pkg/restart), and the result the
// orchestrator of `certctl cluster ca-rotate` reads (pkg/noderesult).
package noderotate

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/certctl/certctl/pkg/carotate"
	"github.com/certctl/certctl/pkg/failpoint"
	"github.com/certctl/certctl/pkg/kubelet"
	"github.com/certctl/certctl/pkg/noderesult"
	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/restart"
)

// Options drive Run.
type Options struct {
	Rotate   carotate.Options // the node's files; DryRun plans only
	CAs      []string
	Phase    string
	Rollback bool
	// Restart, when set, restarts what the phase names, each verified (the request's Layout is
	// the node's); nil leaves it to the operator.
	Restart *restart.Request
	// Out gets the phase's results; Log warnings.
	Out, Log io.Writer
	// The new CA as certctl ca rotate's flags give it (carotate.Options.ReadGiven):
	// --new-ca-dir, or --new-ca-cert and --new-ca-key; none: the phase generates it or reads
	// new.crt.
	NewCADir, NewCACert, NewCAKey string
	// KubeletProbe is a file (not under --root) with a client certificate of the new cluster CA
	// and its key (kubelet.NewProbe): what a kubelet's reload of a client CA file the phase
	// changed in place is checked with. None: that kubelet is restarted instead.
	KubeletProbe string
	// ReloadTimeout bounds the wait for the kubelet to reload a client CA file the phase
	// changed in place before it is restarted instead; default DefaultReloadTimeout.
	ReloadTimeout time.Duration
}

// CommandLine is the command of a phase (or of its rollback) of cas as given (none: all), as
// the backup and the journal name it.
func CommandLine(cas []string, phase string, rollback bool) string {
	line := "certctl ca rotate " + cmp.Or(strings.Join(cas, " "), "all")
	if rollback {
		return line + " --rollback"
	}
	return line + " --phase " + phase
}

// Run applies the phase (or its rollback) on the node and, with Restart, restarts what it
// names. Before anything changes, a phase of etcd-ca that will restart this node's etcd member
// is refused while another member is unhealthy. A forward phase with a restart defers its
// manifest edits to the restart, which installs each as it restarts that component; a rollback
// puts its manifests back in place with the files they name (it removes files the running
// manifests name: docs/ca-rotation.md).
func Run(ctx context.Context, o Options) (noderesult.Result, error) {
	nr := noderesult.Result{Command: "ca rotate"}
	if o.Phase == "" && !o.Rollback {
		return nr, errors.New("give --phase trust, issue or drop (one phase at a time, on every node), or --rollback")
	}
	if err := o.Rotate.ReadGiven(o.NewCADir, o.NewCACert, o.NewCAKey, o.CAs); err != nil {
		return nr, err
	}
	restarting := o.Restart != nil && !o.Rotate.DryRun
	if restarting && slices.Contains(o.CAs, "etcd-ca") {
		if _, err := failpoint.BeforeCheck(ctx, o.Restart.Layout, pki.CompEtcd); err != nil {
			return nr, err
		}
		if err := restart.CheckStackedEtcd(ctx, o.Restart.Layout, o.Restart.Progress); err != nil {
			return nr, fmt.Errorf("%w; nothing was changed", err)
		}
	}
	if restarting {
		// A phase's manifests, and a rollback's, go to the pending manifests: the restart
		// installs each as it restarts that component, drained and verified.
		if err := restart.ClaimPending(o.Rotate.Layout); err != nil {
			return nr, err
		}
		o.Rotate.DeferManifests = true
		defer func() {
			if _, err := restart.ReleasePending(o.Rotate.Layout, o.Log); err != nil {
				fmt.Fprintln(o.Log, "warning:", err)
			}
		}()
	}
	results, err := carotate.Run(o.Rotate, o.CAs, o.Phase, o.Rollback)
	carotate.Render(o.Out, results)
	if err != nil || !restarting {
		return nr, err
	}
	var comps []string
	for _, r := range results {
		for _, c := range r.Restart {
			if !slices.Contains(comps, c) {
				comps = append(comps, c)
			}
		}
	}
	reload, wait := reloaded(results), cmp.Or(o.ReloadTimeout, DefaultReloadTimeout)
	var probe *probe
	if len(reload) > 0 && !slices.Contains(comps, restart.Kubelet) {
		p, err := o.readProbe()
		switch {
		case err != nil:
			return nr, err
		case p == nil:
			fmt.Fprintf(o.Out, "the kubelet's client CA file %s changed in place; no client certificate of the new CA to check its reload with (--kubelet-probe, as cluster ca-rotate gives it): restarting the kubelet\n", strings.Join(reload, ", "))
			comps = append(comps, restart.Kubelet)
		default:
			probe = p
			start := time.Now()
			if err := kubeletTakes(ctx, *o.Restart, reload, p, wait); err != nil {
				fmt.Fprintf(o.Out, "the kubelet did not take its client CA file without a restart (%v): restarting it\n", err)
				comps = append(comps, restart.Kubelet)
			} else {
				fmt.Fprintf(o.Out, "the kubelet reloaded its client CA file %s (seen in %s): not restarted\n", strings.Join(reload, ", "), time.Since(start).Round(time.Millisecond))
			}
		}
	}
	if err := restart.Changed(ctx, *o.Restart, comps); err != nil {
		var failed *restart.FailedError
		if o.Rollback || !errors.As(err, &failed) {
			return nr, err
		}
		return nr, rollBack(ctx, o, results, failed)
	}
	if probe != nil && slices.Contains(comps, restart.Kubelet) {
		// Restarted, it read the file at start: it must take the probe as the file says now.
		if err := kubeletTakes(ctx, *o.Restart, reload, probe, wait); err != nil {
			return nr, fmt.Errorf("the kubelet, restarted, does not authenticate clients as its clientCAFile says: %w", err)
		}
	}
	nr.Components, nr.KubeletRestarted = comps, slices.Contains(comps, restart.Kubelet)
	return nr, nil
}

// DefaultReloadTimeout bounds the wait for a kubelet to reload a client CA file changed in
// place: its authenticator watches the file (inotify) and takes it at once; a kubelet that does
// not reload it (before 1.36, or ReloadKubeletClientCAFile off) is restarted past this.
const DefaultReloadTimeout = 15 * time.Second

// reloaded lists the kubelet client CA files the phase's results changed in place.
func reloaded(results []*carotate.Result) []string {
	var files []string
	for _, r := range results {
		if r != nil && r.KubeletClientCA != "" && !slices.Contains(files, r.KubeletClientCA) {
			files = append(files, r.KubeletClientCA)
		}
	}
	return files
}

// probe is a client certificate of the rotation's new CA (kubelet.NewProbe).
type probe struct {
	pair tls.Certificate
	leaf *x509.Certificate
}

// readProbe reads o.KubeletProbe; nil when none is given.
func (o Options) readProbe() (*probe, error) {
	if o.KubeletProbe == "" {
		return nil, nil
	}
	data, err := os.ReadFile(o.KubeletProbe)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", o.KubeletProbe, err)
	}
	pair, leaf, err := kubelet.ReadProbe(o.KubeletProbe, data)
	if err != nil {
		return nil, err
	}
	return &probe{pair: pair, leaf: leaf}, nil
}

// kubeletTakes waits until the node's kubelet (on the request's serving address) authenticates
// the probe exactly when each of files (its clientCAFile: one in practice) holds the probe's CA.
func kubeletTakes(ctx context.Context, r restart.Request, files []string, p *probe, timeout time.Duration) error {
	addr := cmp.Or(r.KubeletWait.ServingAddr, "127.0.0.1:10250")
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("read %s: %w", f, err)
		}
		want := slices.ContainsFunc(pki.CertificatesIn(data), func(c *x509.Certificate) bool { return p.leaf.CheckSignatureFrom(c) == nil })
		if err := kubelet.WaitAuthenticates(ctx, addr, f, p.pair, want, timeout); err != nil {
			return err
		}
	}
	return nil
}

// RolledBackError: Component did not come back healthy on the files of the phase (Cause), so
// the phase was rolled back on the node and Restarted (Component included) run again, healthy,
// on the files from before it.
type RolledBackError struct {
	Phase     string
	CAs       []string
	Component string
	Restarted []string
	Cause     error
}

func (e *RolledBackError) Error() string {
	return fmt.Sprintf("phase %s of %s: %v; rolled back on this node (every file as before the phase; %s restarted on them and healthy): fix the cause and run the phase again",
		e.Phase, strings.Join(e.CAs, " "), e.Cause, strings.Join(e.Restarted, ", "))
}

func (e *RolledBackError) Unwrap() error { return e.Cause }

// rollBack undoes a forward phase on the node after a component did not come back on its files
// (a static pod: the kubelet-only restart of a worker fails without undoing): the phase's
// rollback restores every file it changed for the CAs it changed (the pending manifests no
// restart took yet are in its backup as absent: removed, never installed), and every component
// that restarted on the new files (the failed one included) restarts on the old ones, verified
// as in the phase. Without this, the component that failed would stay down, the ones after it
// would get their new manifests from the kubelet unverified.
func rollBack(ctx context.Context, o Options, results []*carotate.Result, failed *restart.FailedError) error {
	var cas []string
	for _, r := range results {
		if !r.Skipped && !r.AlreadyDone {
			cas = append(cas, r.CA)
		}
	}
	comps := failed.Restarted
	fmt.Fprintf(o.Out, "%s did not come back on the files of phase %s: rolling the phase back on this node and restarting %s\n", failed.Component, o.Phase, strings.Join(comps, ", "))
	back, err := carotate.Run(o.Rotate, cas, o.Phase, true)
	carotate.Render(o.Out, back)
	if err != nil {
		return fmt.Errorf("%w; and rolling phase %s back failed: %w (certctl ca rotate %s --rollback)", failed, o.Phase, err, strings.Join(cas, " "))
	}
	undo := *o.Restart
	undo.Undo = true
	if err := restart.Changed(ctx, undo, comps); err != nil {
		return fmt.Errorf("%w; phase %s rolled back, but restarting %s on the old files failed: %w", failed, o.Phase, strings.Join(comps, ", "), err)
	}
	return &RolledBackError{Phase: o.Phase, CAs: cas, Component: failed.Component, Restarted: comps, Cause: failed}
}
