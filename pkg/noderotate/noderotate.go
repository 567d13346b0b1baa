// Package noderotate is the node's part of a CA rotation: a phase's file changes (pkg/carotate)
// rolled out by restarting the components they name (pkg/restart), and the result the
// orchestrator of `certctl cluster ca-rotate` reads (pkg/noderesult).
package noderotate

import (
	"context"
	"fmt"
	"io"
	"slices"

	"github.com/certctl/certctl/pkg/carotate"
	"github.com/certctl/certctl/pkg/failpoint"
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
}

// Run applies the phase (or its rollback) on the node and, with Restart, restarts what it
// names. Before anything changes, a phase of etcd-ca that will restart this node's etcd member
// is refused while another member is unhealthy. A forward phase with a restart defers its
// manifest edits to the restart, which installs each as it restarts that component; a rollback
// puts its manifests back in place with the files they name (it removes files the running
// manifests name: docs/ca-rotation.md).
func Run(ctx context.Context, o Options) (noderesult.Result, error) {
	nr := noderesult.Result{Command: "ca rotate"}
	restarting := o.Restart != nil && !o.Rotate.DryRun
	if restarting && slices.Contains(o.CAs, "etcd-ca") {
		if _, err := failpoint.BeforeCheck(ctx, o.Restart.Layout, pki.CompEtcd); err != nil {
			return nr, err
		}
		if err := restart.CheckStackedEtcd(ctx, o.Restart.Layout, o.Restart.Progress); err != nil {
			return nr, fmt.Errorf("%w; nothing was changed", err)
		}
	}
	if restarting && !o.Rollback {
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
	if err := restart.Changed(ctx, *o.Restart, comps); err != nil {
		return nr, err
	}
	nr.Components, nr.KubeletRestarted = comps, slices.Contains(comps, restart.Kubelet)
	return nr, nil
}
