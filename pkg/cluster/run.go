package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
)

// JobNameLabel is the label the Job controller puts on a Job's pods.
const JobNameLabel = "batch.kubernetes.io/job-name"

// RunOptions say how to run the Jobs.
type RunOptions struct {
	JobOptions
	// Parallel is how many nodes are inspected at once (default 4): a 500-node cluster must
	// not get 500 pods at once.
	Parallel int
	// StartTimeout is how long a node's pod may take to appear and start (image pull,
	// scheduling) before the node is listed as not-run (default 90s).
	StartTimeout time.Duration
	// Poll is the interval of the status polls (default 1s).
	Poll time.Duration
	// Logs returns a finished pod's log; nil reads it through the API (pods/log).
	Logs func(ctx context.Context, cs kubernetes.Interface, pod *corev1.Pod) ([]byte, error)
}

// Run inspects every node through its own Job, at most Parallel at a time, and returns one
// result per node, in the order of nodes. A node whose Job cannot be created, whose pod does
// not start in time, or whose output is not a report is a not-run result with the reason.
func Run(ctx context.Context, cs kubernetes.Interface, nodes []string, o RunOptions) []NodeResult {
	o.JobOptions.defaults()
	if o.Parallel <= 0 {
		o.Parallel = 4
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = 90 * time.Second
	}
	if o.Poll <= 0 {
		o.Poll = time.Second
	}
	if o.Logs == nil {
		o.Logs = apiLogs
	}
	results := make([]NodeResult, len(nodes))
	sem := make(chan struct{}, o.Parallel)
	done := make(chan struct{})
	for i, node := range nodes {
		go func() {
			sem <- struct{}{}
			defer func() { <-sem; done <- struct{}{} }()
			results[i] = runNode(ctx, cs, node, o)
		}()
	}
	for range nodes {
		<-done
	}
	return results
}

func runNode(ctx context.Context, cs kubernetes.Interface, node string, o RunOptions) NodeResult {
	notRun := func(format string, a ...any) NodeResult {
		return NodeResult{Node: node, State: StateNotRun, Reason: fmt.Sprintf(format, a...)}
	}
	job, err := NodeJob(node, o.JobOptions)
	if err != nil {
		return notRun("%v", err)
	}
	jobs := cs.BatchV1().Jobs(o.Namespace)
	created, err := jobs.Create(ctx, job, metav1.CreateOptions{FieldManager: "certctl"})
	if err != nil {
		return notRun("create Job %s: %v", job.Name, err)
	}
	cleanup := func() {
		bg := metav1.DeletePropagationBackground
		dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = jobs.Delete(dctx, created.Name, metav1.DeleteOptions{PropagationPolicy: &bg})
	}
	var pod *corev1.Pod
	var why string
	started := false
	createdAt := time.Now()
	errNotStarted := errors.New("not started")
	limit := o.StartTimeout + o.Deadline
	err = wait.PollUntilContextTimeout(ctx, o.Poll, limit, true, func(ctx context.Context) (bool, error) {
		if !started && time.Since(createdAt) > o.StartTimeout {
			return false, errNotStarted
		}
		list, err := cs.CoreV1().Pods(o.Namespace).List(ctx, metav1.ListOptions{LabelSelector: JobNameLabel + "=" + created.Name})
		if err != nil {
			why = err.Error()
			return false, nil
		}
		if j, err := jobs.Get(ctx, created.Name, metav1.GetOptions{}); err == nil {
			for _, c := range j.Status.Conditions {
				if c.Type == batchv1.JobFailed && c.Status == corev1.ConditionTrue && len(list.Items) == 0 {
					return false, fmt.Errorf("Job failed: %s: %s", c.Reason, c.Message)
				}
			}
		}
		if len(list.Items) == 0 {
			why = "no pod was created for the Job (is the Job controller running?)"
			return false, nil
		}
		p := &list.Items[0]
		pod = p
		switch p.Status.Phase {
		case corev1.PodSucceeded, corev1.PodFailed:
			return true, nil
		case corev1.PodRunning:
			started = true
		}
		why = pendingReason(p)
		return false, nil
	})
	if err != nil {
		cleanup()
		if errors.Is(err, errNotStarted) || errors.Is(err, context.DeadlineExceeded) || wait.Interrupted(err) {
			if started {
				return notRun("the pod on %s did not finish within %s", node, o.Deadline)
			}
			return notRun("did not start within %s: %s", o.StartTimeout, why)
		}
		return notRun("%v", err)
	}
	code := exitCode(pod)
	logs, err := o.Logs(ctx, cs, pod)
	if err != nil {
		return notRun("read the log of pod %s: %v", pod.Name, err)
	}
	return ParseResult(node, logs, code)
}

// pendingReason says why a pod is not running yet (Unschedulable, ErrImagePull, ...).
func pendingReason(p *corev1.Pod) string {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse {
			return fmt.Sprintf("pod %s not scheduled: %s %s", p.Name, c.Reason, c.Message)
		}
	}
	for _, s := range p.Status.ContainerStatuses {
		if w := s.State.Waiting; w != nil {
			return fmt.Sprintf("pod %s waiting: %s %s", p.Name, w.Reason, w.Message)
		}
	}
	return fmt.Sprintf("pod %s is %s", p.Name, p.Status.Phase)
}

func exitCode(p *corev1.Pod) int {
	for _, s := range p.Status.ContainerStatuses {
		if t := s.State.Terminated; t != nil {
			return int(t.ExitCode)
		}
	}
	return -1
}

func apiLogs(ctx context.Context, cs kubernetes.Interface, pod *corev1.Pod) ([]byte, error) {
	rc, err := cs.CoreV1().Pods(pod.Namespace).GetLogs(pod.Name, &corev1.PodLogOptions{Container: "certctl"}).Stream(ctx)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(io.LimitReader(rc, 16<<20))
}
