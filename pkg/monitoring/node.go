package monitoring

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/certctl/certctl/pkg/fsutil"
	"github.com/certctl/certctl/pkg/inspect"
	"github.com/certctl/certctl/pkg/live"
	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/schedule"
)

// NodeOptions say what InspectNode looks at beside the node's files.
type NodeOptions struct {
	Layout   pki.Layout
	Diagnose inspect.Options
	// Live dials the node's endpoints (LiveTimeout each) and compares what they serve with
	// the files (inspect --live).
	Live        bool
	LiveTimeout time.Duration
	// Review, when set, asks the API what the certificates' identities may do (inspect --api).
	Review inspect.AccessReviewer
	// Analyze reads a systemd calendar expression (the schedule's next run); nil: none.
	Analyze schedule.CalendarAnalyzer
	// Textfile, when set, is a directory (on this machine, not under the root) that gets
	// certctl.prom, atomically, for node_exporter's textfile collector.
	Textfile string
}

// InspectNode is `certctl inspect`'s report of the node: its certificates diagnosed, what its
// endpoints serve, what the API allows, and the node's state the metrics and alerts need (the
// last renewal run, CA rotations in progress, the schedule's next run). Warnings are what could
// not be read of that state: the report stands without it.
func InspectNode(ctx context.Context, o NodeOptions) (rep *inspect.Report, warnings []error, err error) {
	inv := pki.Load(o.Layout, pki.Default())
	rep = inspect.Diagnose(inv, o.Diagnose)
	if o.Live {
		live.Check(ctx, inv, rep, o.LiveTimeout)
	}
	if o.Review != nil {
		if err := inspect.CheckKubeletAPIAccess(ctx, o.Review, rep); err != nil {
			return nil, nil, fmt.Errorf("--api: %w", err)
		}
	}
	warnings = AddNodeState(o.Layout, rep, o.Analyze)
	if o.Textfile != "" {
		var buf bytes.Buffer
		if err := inspect.RenderPrometheus(&buf, rep); err != nil {
			return nil, nil, err
		}
		if err := fsutil.WriteFileAtomic(filepath.Join(o.Textfile, "certctl.prom"), buf.Bytes(), 0o644); err != nil {
			return nil, nil, fmt.Errorf("--textfile-dir: %w", err)
		}
	}
	return rep, warnings, nil
}

// RecordNode diagnoses the node's certificates and records their warning and critical findings
// as Events on the Node named node (renew --events-node, the scheduled CronJobs).
func RecordNode(ctx context.Context, cs kubernetes.Interface, l pki.Layout, node string) ([]NodeEvent, error) {
	rep := inspect.Diagnose(pki.Load(l, pki.Default()), inspect.Options{})
	return Record(ctx, cs, RecordOptions{Node: node, Report: rep})
}

// RecordNodeWith is RecordNode with a client of config, its outcome said on log: a failure is
// a warning there (a renewal's outcome stands whatever the Events).
func RecordNodeWith(ctx context.Context, config func() (*rest.Config, error), l pki.Layout, node string, log io.Writer) {
	var evs []NodeEvent
	rc, err := config()
	if err == nil {
		var cs kubernetes.Interface
		if cs, err = kubernetes.NewForConfig(rc); err == nil {
			evs, err = RecordNode(ctx, cs, l, node)
		}
	}
	if err != nil {
		fmt.Fprintf(log, "warning: events on node %s: %v\n", node, err)
		return
	}
	fmt.Fprintf(log, "recorded %d event(s) on node %s\n", len(evs), node)
}
