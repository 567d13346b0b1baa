// Package cluster runs certctl on every node of a cluster through Kubernetes itself: one
// short-lived Job per node, pinned with nodeName, with the node's root at /host; a
// coordination.k8s.io Lease keeps two cluster-wide runs (or a run and a scheduled CronJob)
// from working at once. No SSH, no agent of certctl's own.
package cluster

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"

	"github.com/certctl/certctl/pkg/apiretry"
	"github.com/certctl/certctl/pkg/kubelet"
	"github.com/certctl/certctl/pkg/noderequest"
	"github.com/certctl/certctl/pkg/noderesult"
)

// Labels on everything certctl creates in the cluster.
const (
	LabelName      = "app.kubernetes.io/name"
	LabelComponent = "app.kubernetes.io/component"
	LabelNode      = "certctl.io/node"
	containerName  = "certctl"
)

// JobSpec says what to run on one node.
type JobSpec struct {
	Namespace string
	Node      string
	Image     string
	Component string // "status" or "renew": a label, and part of the name
	// Request is what certctl does on the node (pkg/noderequest), which the Job runs as
	// `certctl --root /host node run --request JSON`; its Result and Record say where the
	// answer comes back.
	Request noderequest.Request
	// Privileged jobs (renew) get the host's PID and network namespaces, a writable /host and
	// privileges: certctl restarts static pods through the node's kubelet and container
	// runtime and checks what they serve on the node's addresses. Read-only jobs (status)
	// get none of that.
	Privileged bool
	// Deadline bounds the pod's run (activeDeadlineSeconds).
	Deadline time.Duration
	// Secret, when set, is mounted read-only at SecretDir (only the keys SecretItems names,
	// when any): how a node gets the new CA during a CA rotation, the pod still without any
	// API credentials.
	Secret      string
	SecretItems []string
	// ReadyWait: how long the node may take to be Ready before its Job is made (a kubelet the
	// step before restarted reports again in seconds). A node not Ready by then gets no Job:
	// RunJob fails with a *NodeNotReadyError at once instead of at the Job's timeout. Default
	// 30s.
	ReadyWait time.Duration
	// NodeLost: how long the node may stay not Ready while its Job waits for certctl to start
	// there. Then RunJob stops waiting (*NodeNotReadyError, During) and deletes the Job: the
	// node controller marks a node whose kubelet stopped posting (stopped, or its network cut)
	// Unknown after its grace period (50s), so such a node is noticed about NodeLost after
	// that. Once certctl has started on the node only the timeout ends the wait. Default 30s.
	NodeLost time.Duration
	// ContainerErrorGrace: how long the kubelet may fail to create certctl's container
	// (CreateContainerConfigError, CreateContainerError, RunContainerError) before RunJob takes
	// it as final (*ContainerError). The kubelet retries these, and some pass by themselves (a
	// kubelet restarted a moment ago has not listed the Services it builds the container's
	// environment from); a missing Secret does not. Default 45s.
	ContainerErrorGrace time.Duration
}

func (s JobSpec) containerErrorGrace() time.Duration {
	if s.ContainerErrorGrace > 0 {
		return s.ContainerErrorGrace
	}
	return 45 * time.Second
}

// ContainerError: the node's kubelet could not create or run certctl's container for Grace
// (ContainerErrorGrace), with Reason (the container's waiting reason) all that time. It wraps
// ErrNotRun: certctl did not run on the node.
type ContainerError struct {
	Node, Reason, Message string
	Grace                 time.Duration
}

func (e *ContainerError) Error() string {
	return fmt.Sprintf("%v: its kubelet could not create the container for %s (%s: %s)", ErrNotRun, e.Grace, e.Reason, e.Message)
}

func (e *ContainerError) Unwrap() error { return ErrNotRun }

func (s JobSpec) readyWait() time.Duration {
	if s.ReadyWait > 0 {
		return s.ReadyWait
	}
	return 30 * time.Second
}

func (s JobSpec) nodeLost() time.Duration {
	if s.NodeLost > 0 {
		return s.NodeLost
	}
	return 30 * time.Second
}

// AnnotationWork on a node's Job is a digest of what it runs (component, node, image,
// arguments, Secret): a later run of the same command finds the Job an earlier run left
// (its orchestrator killed) and adopts it instead of doing the node's work twice.
const AnnotationWork = "certctl.io/work"

// work is s's AnnotationWork.
func (s JobSpec) work() string {
	h := sha256.New()
	for _, f := range append([]string{s.Component, s.Node, s.Image, s.Secret, strings.Join(s.SecretItems, ",")}, s.args()...) {
		h.Write([]byte(f))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// SecretDir is where a JobSpec's Secret is mounted.
const SecretDir = "/rotation"

// Job is the Job object for s. Its pod mounts no service-account token: it works on the
// node's files and never talks to the API.
func (s JobSpec) Job() *batchv1.Job {
	labels := map[string]string{LabelName: "certctl", LabelComponent: s.Component, LabelNode: s.Node}
	deadline := int64(s.Deadline / time.Second)
	if deadline <= 0 {
		deadline = 600
	}
	pod := corev1.PodSpec{
		NodeName:                     s.Node,
		RestartPolicy:                corev1.RestartPolicyNever,
		AutomountServiceAccountToken: ptr.To(false),
		EnableServiceLinks:           ptr.To(false),
		// Run wherever the node is, whatever its taints (control-plane, NotReady...).
		Tolerations:           []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
		PriorityClassName:     "system-node-critical",
		HostNetwork:           true, // no pod network needed: a node without CNI still answers
		ActiveDeadlineSeconds: &deadline,
		Containers: []corev1.Container{{
			Name:            containerName,
			Image:           s.Image,
			ImagePullPolicy: corev1.PullIfNotPresent,
			Args:            s.args(),
			// Its own pod, which a restarted kubelet must list again before certctl ends
			// (kubelet.WaitOptions.Self).
			Env: []corev1.EnvVar{
				{Name: kubelet.EnvPodNamespace, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
				{Name: kubelet.EnvPodName, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
			},
			VolumeMounts:    []corev1.VolumeMount{{Name: "host", MountPath: "/host", ReadOnly: !s.Privileged}},
			SecurityContext: &corev1.SecurityContext{RunAsUser: ptr.To(int64(0))},
		}},
		Volumes: []corev1.Volume{{Name: "host", VolumeSource: corev1.VolumeSource{
			HostPath: &corev1.HostPathVolumeSource{Path: "/", Type: ptr.To(corev1.HostPathDirectory)},
		}}},
	}
	if s.Secret != "" {
		src := &corev1.SecretVolumeSource{SecretName: s.Secret, DefaultMode: ptr.To(int32(0o400))}
		for _, k := range s.SecretItems {
			src.Items = append(src.Items, corev1.KeyToPath{Key: k, Path: k})
		}
		pod.Volumes = append(pod.Volumes, corev1.Volume{Name: "rotation", VolumeSource: corev1.VolumeSource{Secret: src}})
		pod.Containers[0].VolumeMounts = append(pod.Containers[0].VolumeMounts, corev1.VolumeMount{Name: "rotation", MountPath: SecretDir, ReadOnly: true})
	}
	if s.Privileged {
		pod.HostPID = true
		pod.Containers[0].SecurityContext.Privileged = ptr.To(true)
	} else {
		pod.Containers[0].SecurityContext.AllowPrivilegeEscalation = ptr.To(false)
		pod.Containers[0].SecurityContext.ReadOnlyRootFilesystem = ptr.To(true)
	}
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: jobPrefix(s.Component, s.Node),
			Namespace:    s.Namespace,
			Labels:       labels,
			Annotations:  map[string]string{AnnotationWork: s.work()},
		},
		Spec: batchv1.JobSpec{
			BackoffLimit:            ptr.To(int32(0)),
			TTLSecondsAfterFinished: ptr.To(int32(600)),
			ActiveDeadlineSeconds:   &deadline,
			Template:                corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: pod},
		},
	}
}

// args are certctl's arguments in the Job: the node's root at /host, and the request.
func (s JobSpec) args() []string {
	r := s.Request
	r.Version = noderequest.Version
	b, _ := json.Marshal(r) // plain data: it cannot fail
	return []string{"--root", "/host", "node", "run", "--request", string(b)}
}

// jobPrefix is a valid generateName (a name is at most 63 characters; the API appends 5).
func jobPrefix(component, node string) string {
	p := "certctl-" + component + "-" + strings.ReplaceAll(strings.ToLower(node), ".", "-")
	if len(p) > 50 {
		sum := randHex(3)
		p = strings.TrimRight(p[:43], "-") + "-" + sum
	}
	return p + "-"
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// JobResult is how a node's Job ended.
type JobResult struct {
	Node     string
	Job      string
	ExitCode int32  // the container's, when it terminated
	Logs     string // stdout and stderr of certctl, as the kubelet logged them
	// Termination is the container's termination message: the typed result record a node
	// command writes when its JobSpec asks for one (pkg/noderesult), "" otherwise.
	Termination string
	Took        time.Duration
	// Adopted: the Job was left by an earlier run of the same command (killed while the Job
	// ran, or before it saw the end), and this run took its result instead of running the
	// node's work again.
	Adopted bool
	// Where the time went: from the Job's creation until certctl started (the Job controller
	// making the pod, the kubelet starting it), certctl's run, and from its end until its
	// termination was seen here and its log read (the kubelet reporting, perhaps restarted).
	ToStart, Ran, ToResult time.Duration
	// Started is when certctl started on the node (its container's start; zero when not seen).
	Started time.Time
}

// sinceRestart is the instant after which a kubelet that the Job restarted has reported when
// its node Lease was renewed after it: certctl's start on the node (the restart comes after
// it), or else fallback. Not the result's arrival: certctl ends only once the new kubelet
// lists the Job's pod again (kubelet.WaitOptions.Self), which it has read from the API through
// its kubeconfig; by then the new kubelet may have renewed its Lease already, and its next
// renewal is 10 s later (seen on the lab: a worker 14.6 s instead of 6-7 s). A renewal by the
// old kubelet between certctl's start and the restart counts too: that the new kubelet reaches
// the API is what its listing the pod established.
func (r JobResult) sinceRestart(fallback time.Time) time.Time {
	if r.Started.IsZero() {
		return fallback
	}
	return r.Started
}

// Timing is r's time split, for the progress log.
func (r JobResult) Timing() string {
	if r.Ran == 0 {
		return ""
	}
	return fmt.Sprintf("started %s after the Job was made, ran %s, result here %s later",
		r.ToStart.Round(100*time.Millisecond), r.Ran.Round(100*time.Millisecond), r.ToResult.Round(100*time.Millisecond))
}

// ErrNotRun is wrapped by RunJob's error when the pod never ran certctl (not scheduled,
// image missing, node gone, deadline).
var ErrNotRun = errors.New("certctl did not run on the node")

// ErrNoResult is wrapped by RunJob's error when certctl started on the node but its result did
// not come back within the timeout: the node's network or kubelet cut off while it ran (the
// Node's Ready condition no longer ends a wait once certctl runs). What it did on the node is
// unknown here; its kubelet ends it at the Job's deadline, the same timeout.
var ErrNoResult = errors.New("certctl started on the node, but its result did not come back")

// RunJob creates the Job, waits until its pod has terminated (or timeout), reads certctl's
// logs and deletes the Job and its pod. A non-zero exit of certctl is a result, not an error:
// inspect exits 1 or 2 for findings.
func RunJob(ctx context.Context, cs kubernetes.Interface, s JobSpec, timeout time.Duration) (JobResult, error) {
	res := JobResult{Node: s.Node}
	if _, err := s.Request.Args(); err != nil {
		return res, err
	}
	start := time.Now()
	if err := waitNodeReady(ctx, cs, s.Node, s.readyWait()); err != nil {
		res.Took = time.Since(start)
		return res, err
	}
	job, err := adoptable(ctx, cs, s)
	if err != nil {
		return res, err
	}
	if job != nil {
		res.Adopted = true
	} else if job, err = cs.BatchV1().Jobs(s.Namespace).Create(ctx, s.Job(), metav1.CreateOptions{}); err != nil {
		return res, fmt.Errorf("create the %s job for node %s in namespace %s: %w", s.Component, s.Node, s.Namespace, err)
	}
	res.Job = job.Name
	defer func() {
		// Background: the API deletes the pod too. Best effort: ttlSecondsAfterFinished
		// removes what a failed delete leaves.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = cs.BatchV1().Jobs(s.Namespace).Delete(dctx, job.Name, metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationBackground)})
	}()
	pod, err := waitPod(ctx, cs, s, job.Name, timeout)
	res.Took = time.Since(start)
	if lost := (*NodeNotReadyError)(nil); errors.As(err, &lost) {
		// The node went away before certctl started there: the Job is deleted (deferred). A
		// pod that starts late, when the node comes back, would run into the Job's deadline
		// and be killed mid-work (seen on the lab).
		lost.Job = job.Name
		return res, err
	}
	if err != nil {
		return res, fmt.Errorf("node %s: %w", s.Node, err)
	}
	var finished time.Time
	for _, st := range pod.Status.ContainerStatuses {
		if term := st.State.Terminated; st.Name == containerName && term != nil {
			res.ExitCode, res.Termination = term.ExitCode, term.Message
			if !term.StartedAt.IsZero() && !term.FinishedAt.IsZero() {
				res.ToStart = term.StartedAt.Sub(job.CreationTimestamp.Time)
				res.Ran = term.FinishedAt.Sub(term.StartedAt.Time)
				res.Started = term.StartedAt.Time
				finished = term.FinishedAt.Time
			}
		}
	}
	// The apiserver reads the log from the node's kubelet, which the Job may just have
	// restarted (or left without a serving certificate until its CSR is approved): retry.
	var logs []byte
	var lerr error
	if err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		logs, lerr = cs.CoreV1().Pods(s.Namespace).GetLogs(pod.Name, &corev1.PodLogOptions{Container: containerName}).DoRaw(ctx)
		return lerr == nil, nil
	}); err != nil {
		return res, fmt.Errorf("node %s: read the logs of pod %s/%s: %w", s.Node, s.Namespace, pod.Name, lerr)
	}
	res.Logs = string(logs)
	if !finished.IsZero() {
		res.ToResult = time.Since(finished)
	}
	return res, nil
}

// adoptable returns the Job an earlier run of the same work left on the node, still running
// or succeeded, for RunJob to wait for and take the result of. One that failed is deleted
// (the node's command rolled itself back): the work is run again. nil when there is none.
func adoptable(ctx context.Context, cs kubernetes.Interface, s JobSpec) (*batchv1.Job, error) {
	jobs, err := cs.BatchV1().Jobs(s.Namespace).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(labels.Set{
		LabelName: "certctl", LabelComponent: s.Component, LabelNode: s.Node}).String()})
	if err != nil {
		return nil, fmt.Errorf("list the %s jobs of node %s in namespace %s (an earlier run's?): %w", s.Component, s.Node, s.Namespace, err)
	}
	want := s.work()
	var found *batchv1.Job
	for i := range jobs.Items {
		j := &jobs.Items[i]
		if j.Annotations[AnnotationWork] != want || j.DeletionTimestamp != nil {
			continue
		}
		if jobHas(j, batchv1.JobFailed) {
			_ = cs.BatchV1().Jobs(s.Namespace).Delete(ctx, j.Name, metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationBackground)})
			continue
		}
		if found == nil || j.CreationTimestamp.After(found.CreationTimestamp.Time) {
			found = j
		}
	}
	return found, nil
}

// jobHas: one of the Job's conditions of the types given is true (JobFailed: it failed;
// JobComplete or JobFailed: it ended).
func jobHas(j *batchv1.Job, types ...batchv1.JobConditionType) bool {
	for _, c := range j.Status.Conditions {
		if slices.Contains(types, c.Type) && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// waitPod watches the pod of the Job named job (label job-name) until its certctl container
// has terminated. An error wraps ErrNotRun: the pod never will run certctl (podState), or it
// did not start within timeout (saying what was seen last); or ErrNoResult: certctl started
// but did not end within timeout, as far as the API knows; or it is an *apiretry.GaveUpError:
// the API did not answer for the client's whole wait (the Job goes on on the node).
func waitPod(ctx context.Context, cs kubernetes.Interface, s JobSpec, job string, timeout time.Duration) (*corev1.Pod, error) {
	var listErr atomic.Pointer[error] // the last refused list, from the reflector's goroutine
	var pod *corev1.Pod
	var running atomic.Bool // certctl has started on the node (watchNode then stops looking)
	why := "no pod created yet"
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	lctx, lost := context.WithCancelCause(wctx)
	defer lost(nil)
	lw := jobPods(cs, s.Namespace, job, &listErr, lost)
	errs := &containerErrors{node: s.Node, grace: s.containerErrorGrace(), final: lost}
	defer errs.stop()
	check := func(obj any) (bool, error) {
		p, ok := obj.(*corev1.Pod)
		if !ok {
			return false, nil
		}
		pod = p
		if started(p) {
			running.Store(true)
		}
		st := podState(p, s.Image)
		why = st.why
		errs.see(st.containerErr)
		if st.fatal {
			return false, fmt.Errorf("%w: %s", ErrNotRun, st.why)
		}
		return st.done, nil
	}
	go watchNode(lctx, cs, s.Node, s.nodeLost(), &running, lost)
	wctx = lctx
	// The watch reconnects by itself (the Job may restart this node's apiserver): client-go's
	// log of that is not the operator's business; the outcome is in the error.
	wctx = klog.NewContext(wctx, logr.Discard())
	_, err := watchtools.UntilWithSync(wctx, lw, &corev1.Pod{},
		func(store cache.Store) (bool, error) {
			for _, obj := range store.List() {
				if done, err := check(obj); done || err != nil {
					return done, err
				}
			}
			return false, nil
		},
		func(ev watch.Event) (bool, error) {
			if ev.Type != watch.Added && ev.Type != watch.Modified {
				return false, nil
			}
			return check(ev.Object)
		})
	var notReady *NodeNotReadyError
	var containerErr *ContainerError
	var gaveUp *apiretry.GaveUpError
	switch {
	case err == nil:
		return pod, nil
	case errors.Is(err, ErrNotRun):
		return nil, err
	case errors.As(context.Cause(lctx), &gaveUp):
		return nil, gaveUp
	case errors.As(context.Cause(lctx), &containerErr):
		return nil, containerErr
	case errors.As(context.Cause(lctx), &notReady):
		notReady.Pod = why
		return nil, notReady
	}
	if running.Load() {
		return nil, fmt.Errorf("%w within %s (%s, as last seen): its network or its kubelet may be cut off, and its kubelet ends certctl there at the same deadline", ErrNoResult, timeout, why)
	}
	if pod == nil {
		if e := listErr.Load(); e != nil {
			why = (*e).Error()
		}
	}
	return nil, fmt.Errorf("%w: no result within %s (%s)", ErrNotRun, timeout, why)
}

// jobPods lists and watches the pods of the Job named job, the last refused list kept in
// listErr. A request the client gave up on, the API not answering for its whole wait
// (--api-wait), ends the wait with that *apiretry.GaveUpError as done's cause: the reflector
// would retry it forever.
func jobPods(cs kubernetes.Interface, namespace, job string, listErr *atomic.Pointer[error], done context.CancelCauseFunc) cache.ListerWatcher {
	pods := cs.CoreV1().Pods(namespace)
	sel := "job-name=" + job
	check := func(err error) {
		if g := (*apiretry.GaveUpError)(nil); errors.As(err, &g) {
			done(g)
		}
	}
	return cache.ToListWatcherWithWatchListSemantics(&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.LabelSelector = sel
			l, err := pods.List(ctx, o)
			if err != nil {
				listErr.Store(&err)
				check(err)
			}
			return l, err
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.LabelSelector = sel
			w, err := pods.Watch(ctx, o)
			check(err)
			return w, err
		},
	}, cs)
}

// NodeNotReadyError: the node's Ready condition is not True (its kubelet stopped posting, its
// network is cut, or it says it is not ready), before its Job was made or while it ran.
type NodeNotReadyError struct {
	Node            string
	Status          corev1.ConditionStatus // False or Unknown; "" when the node has no Ready condition
	Reason, Message string
	Since           time.Time // the condition's last transition
	// During: the node went away while its Job waited for certctl to start there; Job is
	// that Job (deleted), Pod what was last seen of its pod.
	During   bool
	Job, Pod string
}

// started: the pod's certctl container has run (running or terminated), as last seen.
func started(p *corev1.Pod) bool {
	for _, st := range p.Status.ContainerStatuses {
		if st.Name == containerName && (st.State.Running != nil || st.State.Terminated != nil) {
			return true
		}
	}
	return false
}

func (e *NodeNotReadyError) Error() string {
	state := "has no Ready condition (its kubelet never reported)"
	if e.Status != "" {
		state = fmt.Sprintf("is not Ready (%s since %s: %s %s)", e.Status, e.Since.UTC().Format(time.RFC3339), e.Reason, strings.TrimSpace(e.Message))
	}
	if e.During {
		return fmt.Sprintf("node %s %s while its Job %s waited to start (pod: %s): its kubelet is down or its network is cut; certctl had not started there, and the Job is deleted", e.Node, state, e.Job, e.Pod)
	}
	return fmt.Sprintf("node %s %s: its kubelet is down or its network is cut; no Job was made there (%v)", e.Node, state, ErrNotRun)
}

// Unwrap: before its Job, certctl did not run on the node.
func (e *NodeNotReadyError) Unwrap() error {
	if e.During {
		return nil
	}
	return ErrNotRun
}

// nodeReady is the node's Ready condition as a *NodeNotReadyError, nil when it is True.
func nodeReady(n *corev1.Node) *NodeNotReadyError {
	for _, c := range n.Status.Conditions {
		if c.Type != corev1.NodeReady {
			continue
		}
		if c.Status == corev1.ConditionTrue {
			return nil
		}
		return &NodeNotReadyError{Node: n.Name, Status: c.Status, Reason: c.Reason, Message: c.Message, Since: c.LastTransitionTime.Time}
	}
	return &NodeNotReadyError{Node: n.Name}
}

// waitNodeReady polls the node until it is Ready, for up to wait: the *NodeNotReadyError of
// the last look when it is not. An error reading the Node is returned as it is (no such
// node, no permission).
func waitNodeReady(ctx context.Context, cs kubernetes.Interface, node string, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		n, err := cs.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("node %s: read its Ready condition: %w", node, err)
		}
		notReady := nodeReady(n)
		if notReady == nil {
			return nil
		}
		if !time.Now().Before(deadline) {
			return notReady
		}
		t := time.NewTimer(min(time.Second, time.Until(deadline)))
		select {
		case <-ctx.Done():
			t.Stop()
			return notReady
		case <-t.C:
		}
	}
}

// watchNode polls the node every few seconds until certctl has started there (running) and
// calls lost with a *NodeNotReadyError (During) once it has been seen not Ready for lostAfter
// without a break. Once certctl runs it stops looking: the node's own work may keep its
// kubelet from reporting for longer than the node controller's grace (a control-plane node's
// kubelet reports through its own apiserver, which a CA rotation's drop keeps down with its
// etcd for minutes: the node went Unknown mid-Job on the lab), and the Job's timeout bounds
// that wait. A failed read is no evidence either way (the API may be restarting).
func watchNode(ctx context.Context, cs kubernetes.Interface, node string, lostAfter time.Duration, running *atomic.Bool, lost context.CancelCauseFunc) {
	poll := min(5*time.Second, max(lostAfter/4, 50*time.Millisecond))
	var since time.Time // first seen not Ready, in this run of polls
	_ = wait.PollUntilContextCancel(ctx, poll, false, func(ctx context.Context) (bool, error) {
		if running.Load() {
			return true, nil
		}
		n, err := cs.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		notReady := nodeReady(n)
		switch {
		case notReady == nil:
			since = time.Time{}
		case since.IsZero():
			since = time.Now()
		case time.Since(since) >= lostAfter:
			notReady.During = true
			lost(notReady)
			return true, nil
		}
		return false, nil
	})
}

// containerErrors follows the error the kubelet has creating certctl's container, as the pod
// shows it: one that keeps its reason for grace is final (its *ContainerError given to final).
// see and stop are called from one goroutine (the watch's conditions, then the wait's end).
type containerErrors struct {
	cur   atomic.Pointer[ContainerError]
	timer *time.Timer
	node  string
	grace time.Duration
	final context.CancelCauseFunc
}

// stop ends the grace of the error seen last, if any: the wait is over.
func (c *containerErrors) stop() {
	if c.timer != nil {
		c.timer.Stop()
	}
}

// see is the pod's container error now (nil: none).
func (c *containerErrors) see(w *corev1.ContainerStateWaiting) {
	if cur := c.cur.Load(); cur != nil && w != nil && cur.Reason == w.Reason {
		return // the same error goes on; its timer runs
	}
	c.stop()
	if w == nil {
		c.cur.Store(nil)
		return
	}
	e := &ContainerError{Node: c.node, Reason: w.Reason, Message: w.Message, Grace: c.grace}
	c.cur.Store(e)
	c.timer = time.AfterFunc(c.grace, func() {
		if c.cur.Load() == e {
			c.final(e)
		}
	})
}

// podStatus is what a pod's status says of certctl's container: it has terminated (done), why
// not, whether it never will (fatal: the image cannot be had, the pod was rejected), or the
// error the kubelet has creating it (containerErr), final only if it lasts.
type podStatus struct {
	done, fatal  bool
	why          string
	containerErr *corev1.ContainerStateWaiting
}

// podState reads p's status.
func podState(p *corev1.Pod, image string) podStatus {
	for _, st := range p.Status.ContainerStatuses {
		if st.Name != containerName {
			continue
		}
		if st.State.Terminated != nil {
			return podStatus{done: true, why: "terminated"}
		}
		if w := st.State.Waiting; w != nil {
			switch w.Reason {
			case "ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName":
				return podStatus{fatal: true, why: fmt.Sprintf("the node cannot get the image %s (%s: %s): load it into the node's runtime or pass --image", image, w.Reason, w.Message)}
			case "CreateContainerConfigError", "CreateContainerError", "RunContainerError":
				return podStatus{why: fmt.Sprintf("%s: %s (the kubelet retries)", w.Reason, w.Message), containerErr: w}
			}
			return podStatus{why: "waiting: " + w.Reason}
		}
		if st.State.Running != nil {
			return podStatus{why: "running"}
		}
	}
	switch p.Status.Phase {
	case corev1.PodFailed:
		// Failed without a terminated container: rejected by the kubelet or past its deadline.
		return podStatus{fatal: true, why: fmt.Sprintf("pod failed: %s %s", p.Status.Reason, p.Status.Message)}
	case corev1.PodPending:
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse {
				return podStatus{why: "not scheduled: " + c.Message}
			}
		}
		return podStatus{why: "pending"}
	}
	return podStatus{why: string(p.Status.Phase)}
}

// Record decodes the node command's record of kind from its log into v (Request.Record):
// noderesult.ReadRecord's errors, the command's exit code and the end of its log added to say
// why there is none.
func (r JobResult) Record(kind string, v any) error {
	err := noderesult.ReadRecord(r.Logs, kind, v)
	var ve *noderesult.RecordVersionError
	if err == nil || errors.As(err, &ve) {
		return err
	}
	return fmt.Errorf("certctl exited %d: %w: %s", r.ExitCode, err, tail(r.Logs, 400))
}

func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) <= n {
		return s
	}
	// Whole lines: the cut line's end is dropped, unless the last line alone is longer.
	t := s[len(s)-n:]
	if i := strings.IndexByte(t, '\n'); i >= 0 && i < len(t)-1 {
		t = t[i+1:]
	}
	return "...\n" + t
}
