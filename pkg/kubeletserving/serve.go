package kubeletserving

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"
)

// ServeOptions drive Serve: `approve --watch` as a long-running process (the in-cluster
// approver of 'kubelet-serving manifest'). The ApproverOptions' Client, Approve, Report and Log
// are used in every case; the Lease's only with LeaderElect.
type ServeOptions struct {
	ApproverOptions
	// LeaderElect: decide only while holding the Lease (several replicas); Identity defaults
	// to $POD_NAME, then the hostname.
	LeaderElect bool
	// MetricsAddr, when set, serves Prometheus /metrics (the decisions, leadership) and
	// /healthz there.
	MetricsAddr string
}

// Serve decides kubelet-serving CSRs as they arrive until ctx is done: from this process alone
// (Watch), or while it holds the Lease (RunApprover).
func Serve(ctx context.Context, o ServeOptions) error {
	m := NewMetrics()
	if o.MetricsAddr != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", m.Handler())
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
		ln, err := net.Listen("tcp", o.MetricsAddr)
		if err != nil {
			return fmt.Errorf("--metrics-addr: %w", err)
		}
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		defer srv.Close()
	}
	report := o.Report
	if report == nil {
		report = func(Decision) {}
	}
	if !o.LeaderElect {
		m.SetLeader(true)
		return Watch(ctx, o.Client, o.Approve, func(d Decision) { m.Observe(d); report(d) })
	}
	le := o.ApproverOptions
	if le.Identity == "" {
		le.Identity = os.Getenv("POD_NAME")
	}
	if le.Identity == "" {
		le.Identity, _ = os.Hostname()
	}
	le.Metrics, le.Report = m, report
	if le.Log == nil {
		le.Log = func(string, ...any) {}
	}
	return RunApprover(ctx, le)
}
