package cluster

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/flowcontrol"

	"github.com/certctl/certctl/pkg/lease"
	"github.com/certctl/certctl/pkg/noderequest"
)

// Runner is how a cluster command runs certctl on its nodes: one Job per node in Namespace
// with Image (JobSpec), each bounded by JobTimeout, its progress written to Progress, the
// whole run under the Lease (Hold). Every cluster command (status, renew, endpoint, ca-rotate)
// has one; none runs Jobs for another.
type Runner struct {
	Namespace     string // where the Jobs run; default kube-system
	Image         string // an image whose entrypoint is certctl
	JobTimeout    time.Duration
	LeaseDuration time.Duration // default 60s
	Identity      string        // the Lease's holder; default lease.Identity()
	Progress      io.Writer     // default io.Discard; written from several goroutines (waves) one line at a time
	// JobsPerSecond bounds the rate at which Jobs are created (default 20, bursts of 40: the
	// rate kube-controller-manager's own client defaults to): a wave of many workers does not
	// flood the API. The client's own limit (QPS 50, burst 100) bounds the rest.
	JobsPerSecond float32

	jobs flowcontrol.RateLimiter
	// etcdSettle: how long a member is given to be ready after the certctl Jobs on its node
	// ended (etcdForRotation); default etcdSettle.
	etcdSettle time.Duration
}

// defaults fills what is unset; jobTimeout is the command's default for JobTimeout.
func (r *Runner) defaults(jobTimeout time.Duration) {
	if r.Namespace == "" {
		r.Namespace = "kube-system"
	}
	if r.JobTimeout <= 0 {
		r.JobTimeout = jobTimeout
	}
	if r.LeaseDuration <= 0 {
		r.LeaseDuration = 60 * time.Second
	}
	if r.Identity == "" {
		r.Identity = lease.Identity()
	}
	if r.Progress == nil {
		r.Progress = io.Discard
	}
	if _, ok := r.Progress.(*lineWriter); !ok {
		r.Progress = &lineWriter{w: r.Progress}
	}
	if r.JobsPerSecond <= 0 {
		r.JobsPerSecond = 20
	}
	if r.jobs == nil {
		r.jobs = flowcontrol.NewTokenBucketRateLimiter(r.JobsPerSecond, 2*int(max(r.JobsPerSecond, 1)))
	}
}

// lineWriter serializes writes: the progress lines of a wave's nodes never interleave.
type lineWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lineWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// waveStarted logs each wave of more than one node (nodes: the command's report, by index).
func (r *Runner) waveStarted(nodes []NodeOutcome) func(wave []int) {
	return func(wave []int) {
		if len(wave) < 2 {
			return
		}
		names := make([]string, len(wave))
		for i, n := range wave {
			names[i] = nodes[n].Node
		}
		r.logf("%d workers at once: %s", len(wave), strings.Join(names, ", "))
	}
}

// needImage refuses a run without an image.
func (r *Runner) needImage() error {
	if r.Image == "" {
		return fmt.Errorf("no image: pass --image with an image whose entrypoint is certctl")
	}
	return nil
}

func (r *Runner) logf(format string, a ...any) {
	fmt.Fprintf(r.Progress, "%s %s\n", time.Now().UTC().Format(time.RFC3339), fmt.Sprintf(format, a...))
}

// Job runs spec on its node (namespace, image and deadline from r) and returns how it ended,
// whatever certctl's exit code: for a caller that reports each node's outcome (status).
func (r *Runner) Job(ctx context.Context, cs kubernetes.Interface, spec JobSpec) (JobResult, error) {
	if r.jobs != nil {
		if err := r.jobs.Wait(ctx); err != nil {
			return JobResult{Node: spec.Node}, fmt.Errorf("job on %s not created: %w", spec.Node, err)
		}
	}
	spec.Namespace, spec.Image, spec.Deadline = r.Namespace, r.Image, r.JobTimeout
	return RunJob(ctx, cs, spec, r.JobTimeout)
}

// Run runs spec.Request in a Job on spec.Node, logs its command line and the last echo
// lines of certctl's log, and fails naming the command when certctl exits non-zero. The result
// comes back in both cases: the caller keeps the log.
func (r *Runner) Run(ctx context.Context, cs kubernetes.Interface, spec JobSpec, echo int) (JobResult, error) {
	args, err := spec.Request.Args()
	if err != nil {
		return JobResult{Node: spec.Node}, err
	}
	r.logf("%s: job: certctl --root /host %s", spec.Node, strings.Join(args, " "))
	res, err := r.Job(ctx, cs, spec)
	if res.Adopted {
		r.logf("%s: job %s was left by an earlier run of this command (killed?): waited for it and took its result, the node's work not run twice", spec.Node, res.Job)
	}
	if err != nil {
		return res, err
	}
	for _, l := range lastLines(res.Logs, echo) {
		r.logf("%s:   | %s", spec.Node, l)
	}
	if t := res.Timing(); t != "" {
		r.logf("%s: job %s", spec.Node, t)
	}
	if res.ExitCode != 0 {
		return res, fmt.Errorf("certctl %s exited %d on the node: %s", spec.Request.Op, res.ExitCode, tail(res.Logs, 800))
	}
	return res, nil
}

// leaseReleaseTimeout bounds the release of the Lease at the end of a run: an API that does
// not answer then must not keep the command from ending (the Lease expires by itself).
const leaseReleaseTimeout = 10 * time.Second

// Hold takes the Lease for the run (waiting for another holder as lease.Acquire does) and
// returns it with the function that releases it, within leaseReleaseTimeout, also when ctx
// has ended.
func (r *Runner) Hold(ctx context.Context, cs kubernetes.Interface) (*lease.Lease, func(), error) {
	held, err := lease.Acquire(ctx, cs, lease.Options{Identity: r.Identity, Duration: r.LeaseDuration})
	if err != nil {
		return nil, nil, err
	}
	return held, func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), leaseReleaseTimeout)
		defer cancel()
		_ = held.Release(rctx)
	}, nil
}

// Checks bound how long a cluster command waits, from where it runs, for what a node's Job did
// to show: an apiserver ready as expected (VerifyTimeout, default 3m), a kubelet reporting
// again or the cluster's copies settled (ReadyTimeout, default 2m); Port is the apiservers'
// (default 6443).
type Checks struct {
	VerifyTimeout time.Duration
	ReadyTimeout  time.Duration
	Port          int
}

func (c *Checks) defaults() {
	if c.VerifyTimeout <= 0 {
		c.VerifyTimeout = 3 * time.Minute
	}
	if c.ReadyTimeout <= 0 {
		c.ReadyTimeout = 2 * time.Minute
	}
	if c.Port == 0 {
		c.Port = 6443
	}
}

// RestartFlags are what a node's restart takes from the cluster command: --stop-grace and
// --lb-drain.
type RestartFlags struct {
	// StopGrace: behind a load balancer, an apiserver stopped with a grace closes its listener
	// (new connections go to the other apiservers) and finishes the requests in flight
	// instead of cutting them.
	StopGrace time.Duration
	// LBDrain: each node's apiserver refuses new connections from other machines for this
	// long before it is stopped, so the load balancer takes it out before it fails a request
	// (restart.Drain).
	LBDrain time.Duration
}

// request is f as a node request's restart.
func (f RestartFlags) request() *noderequest.Restart {
	return &noderequest.Restart{StopGrace: noderequest.Duration(f.StopGrace), LBDrain: noderequest.Duration(f.LBDrain)}
}
