package kubeletserving

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// The in-cluster approver's defaults (templates/approver).
const (
	ApproverName      = "certctl-kubelet-serving-approver"
	ApproverNamespace = "kube-system"
)

// Metrics are the approver's Prometheus metrics, on a registry of their own.
type Metrics struct {
	reg      *prometheus.Registry
	approved prometheus.Counter
	denied   *prometheus.CounterVec
	pending  *prometheus.CounterVec
	errors   prometheus.Counter
	leader   prometheus.Gauge
}

// NewMetrics registers the approver's metrics.
func NewMetrics() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		approved: prometheus.NewCounter(prometheus.CounterOpts{Name: "certctl_kubelet_serving_csr_approved_total",
			Help: "kubernetes.io/kubelet-serving CSRs approved."}),
		denied: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "certctl_kubelet_serving_csr_denied_total",
			Help: "kubernetes.io/kubelet-serving CSRs denied, by reason."}, []string{"reason"}),
		pending: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "certctl_kubelet_serving_csr_left_pending_total",
			Help: "kubernetes.io/kubelet-serving CSRs that failed the checks and were left pending (--no-deny), by reason."}, []string{"reason"}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{Name: "certctl_kubelet_serving_approver_errors_total",
			Help: "Errors talking to the apiserver; the approver retries."}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{Name: "certctl_kubelet_serving_approver_leader",
			Help: "1 while this replica holds the lease and decides CSRs."}),
	}
	m.reg.MustRegister(m.approved, m.denied, m.pending, m.errors, m.leader)
	return m
}

// Observe counts a decision.
func (m *Metrics) Observe(d Decision) {
	switch d.Action {
	case ActionApproved:
		m.approved.Inc()
	case ActionDenied:
		m.denied.WithLabelValues(d.Code).Inc()
	case ActionLeftPending:
		m.pending.WithLabelValues(d.Code).Inc()
	}
}

// SetLeader records whether this replica decides CSRs.
func (m *Metrics) SetLeader(on bool) {
	if on {
		m.leader.Set(1)
	} else {
		m.leader.Set(0)
	}
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// ApproverOptions drive RunApprover.
type ApproverOptions struct {
	Client   kubernetes.Interface
	Approve  ApproveOptions // Policy, NoDeny, DryRun
	Identity string         // this replica's name (the pod name)
	// LeaseNamespace/LeaseName: the Lease the replicas elect a leader on (default
	// kube-system/certctl-kubelet-serving-approver).
	LeaseNamespace, LeaseName string
	// Leader election timing; defaults 15s / 10s / 2s (kube-controller-manager's).
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	Metrics                                   *Metrics // nil: none
	Report                                    func(Decision)
	// Log receives leadership changes and retried errors, one line each.
	Log func(format string, a ...any)
}

// RunApprover runs one replica of the in-cluster approver until ctx is done: it competes for
// the Lease and, while it holds it, decides kubernetes.io/kubelet-serving CSRs as they arrive
// (Watch: the checks of Validate, a reason on every decision). When ctx is cancelled it
// releases the Lease, so another replica takes over within its retry period; when it loses
// the Lease otherwise, it stops deciding and competes again.
func RunApprover(ctx context.Context, o ApproverOptions) error {
	if o.Identity == "" {
		return fmt.Errorf("the approver needs an identity (its pod name)")
	}
	if o.LeaseNamespace == "" {
		o.LeaseNamespace = ApproverNamespace
	}
	if o.LeaseName == "" {
		o.LeaseName = ApproverName
	}
	if o.LeaseDuration == 0 {
		o.LeaseDuration, o.RenewDeadline, o.RetryPeriod = 15*time.Second, 10*time.Second, 2*time.Second
	}
	if o.Log == nil {
		o.Log = func(string, ...any) {}
	}
	report := func(d Decision) {
		if o.Metrics != nil {
			o.Metrics.Observe(d)
		}
		if o.Report != nil {
			o.Report(d)
		}
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: o.LeaseNamespace, Name: o.LeaseName},
		Client:     o.Client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: o.Identity},
	}
	for ctx.Err() == nil {
		// leaderelection runs the callbacks in goroutines of their own; they are waited for
		// before the next round (and before RunApprover returns), so no decision is reported
		// and nothing is logged by an approver that has returned.
		var callbacks roundCallbacks
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock: lock, ReleaseOnCancel: true, Name: o.LeaseName,
			LeaseDuration: o.LeaseDuration, RenewDeadline: o.RenewDeadline, RetryPeriod: o.RetryPeriod,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(ctx context.Context) {
					if !callbacks.enter() {
						return
					}
					defer callbacks.leave()
					o.Log("%s: leading (lease %s/%s): deciding kubelet-serving CSRs", o.Identity, o.LeaseNamespace, o.LeaseName)
					if o.Metrics != nil {
						o.Metrics.leader.Set(1)
					}
					for ctx.Err() == nil {
						if err := Watch(ctx, o.Client, o.Approve, report); err != nil {
							if o.Metrics != nil {
								o.Metrics.errors.Inc()
							}
							o.Log("%s: %v (retrying)", o.Identity, err)
							select {
							case <-ctx.Done():
							case <-time.After(o.RetryPeriod):
							}
						}
					}
				},
				OnStoppedLeading: func() {
					if o.Metrics != nil {
						o.Metrics.leader.Set(0)
					}
					o.Log("%s: not leading", o.Identity)
				},
				OnNewLeader: func(id string) {
					if !callbacks.enter() {
						return
					}
					defer callbacks.leave()
					if id != o.Identity {
						o.Log("%s: %s leads", o.Identity, id)
					}
				},
			},
		})
		if err != nil {
			return fmt.Errorf("leader election: %w", err)
		}
		le.Run(ctx)
		callbacks.close()
	}
	return nil
}

// roundCallbacks tracks the callbacks of one leader-election round, which leaderelection
// starts in goroutines of their own: close waits for those running and makes any that starts
// later return at once.
type roundCallbacks struct {
	mu      sync.Mutex
	closed  bool
	running sync.WaitGroup
}

func (r *roundCallbacks) enter() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.running.Add(1)
	return true
}

func (r *roundCallbacks) leave() { r.running.Done() }

func (r *roundCallbacks) close() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.running.Wait()
}
