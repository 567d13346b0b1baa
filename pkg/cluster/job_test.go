package cluster_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/apiretry"
	"github.com/certctl/certctl/pkg/cluster"
	"github.com/certctl/certctl/pkg/noderequest"
	"github.com/certctl/certctl/pkg/noderesult"
)

// jobCluster is a real etcd + kube-apiserver + the controller-manager's Job controller (it
// makes each Job's pod), and a Node whose "kubelet" is the test: it sets the pod's status as a
// kubelet would and serves the container's log on the node's kubelet port (the apiserver
// proxies `pods/log` there).
func jobCluster(t *testing.T, node string, logs func(path string) string) (*testenv.ControlPlane, kubernetes.Interface) {
	t.Helper()
	tr := testenv.KubeadmTree(t, testenv.TreeOptions{})
	cp := testenv.StartControlPlane(t, testenv.ControlPlaneOptions{PKIDir: tr.Layout.PKIDir, KubeconfigDir: tr.Layout.KubeconfigDir,
		CSRSigner: true, Controllers: []string{"job"}})
	cs := cp.Clientset(t)
	const ip = "127.0.6.1"
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	kubelet := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, logs(r.URL.Path))
	}))
	kubelet.Listener = ln
	kubelet.StartTLS() // the apiserver has no --kubelet-certificate-authority: any certificate
	t.Cleanup(kubelet.Close)
	ctx := context.Background()
	// What the serviceaccount controller (not run here) makes in every namespace: the Job's
	// pod runs as it, without its token.
	if _, err := cs.CoreV1().ServiceAccounts("kube-system").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	n, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}}
	n.Status.DaemonEndpoints.KubeletEndpoint.Port = int32(ln.Addr().(*net.TCPAddr).Port)
	if _, err := cs.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	testenv.SetNodeReady(t, cs, node, corev1.ConditionTrue)
	return cp, cs
}

// podWhere waits (polling, with a deadline) for a pod of component's Jobs that ok accepts;
// nil when none came within a minute.
func podWhere(cs kubernetes.Interface, component string, ok func(*corev1.Pod) bool) *corev1.Pod {
	var pod *corev1.Pod
	_ = wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		pods, err := cs.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{LabelSelector: cluster.LabelComponent + "=" + component})
		if err != nil {
			return false, nil
		}
		for i := range pods.Items {
			if ok(&pods.Items[i]) {
				pod = &pods.Items[i]
				return true, nil
			}
		}
		return false, nil
	})
	return pod
}

// jobPod waits for the pod the Job controller makes for the Job of component on node.
func jobPod(t *testing.T, cp *testenv.ControlPlane, cs kubernetes.Interface, component string) *corev1.Pod {
	t.Helper()
	pod := podWhere(cs, component, func(*corev1.Pod) bool { return true })
	if pod == nil {
		t.Fatalf("no pod for the %s Job within a minute; the controller-manager says:\n%s", component, cp.Logs("kube-controller-manager"))
	}
	return pod
}

// newPod waits for a pod of component's Jobs not in seen, and adds it there: the pod of the
// Job a step made after the pods of earlier steps (which stay: the test runs no garbage
// collector).
func newPod(t *testing.T, cs kubernetes.Interface, component string, seen map[string]bool) *corev1.Pod {
	t.Helper()
	pod := podWhere(cs, component, func(p *corev1.Pod) bool { return !seen[p.Name] })
	if pod == nil {
		t.Fatalf("no new pod for a %s Job within a minute", component)
	}
	seen[pod.Name] = true
	return pod
}

// podOfAnotherJob waits for a pod of component's Jobs that is not the Job named not's: the Job
// RunJob made instead of adopting that one.
func podOfAnotherJob(t *testing.T, cs kubernetes.Interface, component, not string) *corev1.Pod {
	t.Helper()
	pod := podWhere(cs, component, func(p *corev1.Pod) bool { return p.Labels["job-name"] != not })
	if pod == nil {
		t.Fatalf("RunJob made no Job of its own for %s (only %s) within a minute", component, not)
	}
	return pod
}

// setStatusLatest is setStatus on the pod as the apiserver has it now; it returns the pod.
func setStatusLatest(t *testing.T, cs kubernetes.Interface, pod *corev1.Pod, phase corev1.PodPhase, state corev1.ContainerState) *corev1.Pod {
	t.Helper()
	p, err := cs.CoreV1().Pods(pod.Namespace).Get(context.Background(), pod.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	setStatus(t, cs, p, phase, state)
	return p
}

// setStatus sets the certctl container's state, as the kubelet reports it; it returns when the
// apiserver has it.
func setStatus(t *testing.T, cs kubernetes.Interface, pod *corev1.Pod, phase corev1.PodPhase, state corev1.ContainerState) time.Time {
	t.Helper()
	pod.Status.Phase = phase
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "certctl", Image: pod.Spec.Containers[0].Image, State: state}}
	at := time.Now()
	if _, err := cs.CoreV1().Pods(pod.Namespace).UpdateStatus(context.Background(), pod, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("pod %s status: %v", pod.Name, err)
	}
	return at
}

// TestRunJobWatchesThePod: RunJob on a real apiserver and Job controller sees the pod's end
// through a watch, at once (not at the next poll), with certctl's exit code, termination
// message and log; a pod that cannot get its image ends it at once with ErrNotRun; a pod that
// never starts ends it at the timeout with ErrNotRun, saying what was seen last.
func TestRunJobWatchesThePod(t *testing.T) {
	const node = "node-j"
	cp, cs := jobCluster(t, node, func(path string) string {
		if strings.HasSuffix(path, "/certctl") {
			return "certctl ran\n"
		}
		return "unexpected path " + path
	})
	spec := func(component string) cluster.JobSpec {
		return cluster.JobSpec{Namespace: "kube-system", Node: node, Image: "localhost/certctl:test", Component: component, Request: noderequest.Request{Op: noderequest.Inspect}}
	}
	type outcome struct {
		res      cluster.JobResult
		err      error
		returned time.Time
	}
	run := func(s cluster.JobSpec, timeout time.Duration) chan outcome {
		done := make(chan outcome, 1)
		go func() {
			res, err := cluster.RunJob(context.Background(), cs, s, timeout)
			done <- outcome{res, err, time.Now()}
		}()
		return done
	}
	await := func(done chan outcome) outcome {
		select {
		case o := <-done:
			return o
		case <-time.After(2 * time.Minute):
			t.Fatal("RunJob did not return within 2 minutes")
		}
		return outcome{}
	}

	t.Run("terminated", func(t *testing.T) {
		done := run(spec("status"), 2*time.Minute)
		pod := jobPod(t, cp, cs, "status")
		now := metav1.Now()
		at := setStatus(t, cs, pod, corev1.PodFailed, corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			ExitCode: 3, Message: `{"kind":"result"}`, StartedAt: now, FinishedAt: now}})
		o := await(done)
		if o.err != nil || o.res.ExitCode != 3 || o.res.Termination != `{"kind":"result"}` || o.res.Logs != "certctl ran\n" || o.res.Job == "" {
			t.Fatalf("RunJob: %+v, %v", o.res, o.err)
		}
		t.Logf("terminated: RunJob returned %s after the pod's status said so (log read included)", o.returned.Sub(at).Round(time.Millisecond))
	})

	// Issue 21's orchestrator killed mid-Job: the same command again finds the Job the killed
	// run left and takes its result instead of running the node's work twice; one for other
	// arguments is not taken, one that failed is deleted and the work run again.
	t.Run("adopts an earlier run's Job", func(t *testing.T) {
		ctx := context.Background()
		left, err := cs.BatchV1().Jobs("kube-system").Create(ctx, spec("adopt").Job(), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pod := jobPod(t, cp, cs, "adopt")
		done := run(spec("adopt"), 2*time.Minute)
		now := metav1.Now()
		setStatus(t, cs, pod, corev1.PodSucceeded, corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, StartedAt: now, FinishedAt: now}})
		o := await(done)
		if o.err != nil || !o.res.Adopted || o.res.Job != left.Name || o.res.ExitCode != 0 {
			t.Fatalf("RunJob with %s left running: %+v, %v; want it adopted", left.Name, o.res, o.err)
		}
		jobs, err := cs.BatchV1().Jobs("kube-system").List(ctx, metav1.ListOptions{LabelSelector: cluster.LabelComponent + "=adopt"})
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range jobs.Items {
			if j.DeletionTimestamp == nil {
				t.Errorf("job %s left after the adopted one ended", j.Name)
			}
		}

		other := spec("adopt-other")
		other.Request.Record = true
		kept, err := cs.BatchV1().Jobs("kube-system").Create(ctx, spec("adopt-other").Job(), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		done = run(other, 2*time.Minute)
		mine := podOfAnotherJob(t, cs, "adopt-other", kept.Name)
		setStatus(t, cs, mine, corev1.PodSucceeded, corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, StartedAt: now, FinishedAt: now}})
		if o := await(done); o.err != nil || o.res.Adopted || o.res.Job == kept.Name {
			t.Errorf("RunJob with other arguments: %+v, %v; want a Job of its own", o.res, o.err)
		}

		failed, err := cs.BatchV1().Jobs("kube-system").Create(ctx, spec("adopt-failed").Job(), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		fpod := jobPod(t, cp, cs, "adopt-failed")
		setStatus(t, cs, fpod, corev1.PodFailed, corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 3, StartedAt: now, FinishedAt: now}})
		if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			j, err := cs.BatchV1().Jobs("kube-system").Get(ctx, failed.Name, metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			for _, c := range j.Status.Conditions {
				if c.Type == batchv1.JobFailed && c.Status == corev1.ConditionTrue {
					return true, nil
				}
			}
			return false, nil
		}); err != nil {
			t.Fatalf("the Job controller did not mark %s failed: %v", failed.Name, err)
		}
		done = run(spec("adopt-failed"), 2*time.Minute)
		fresh := podOfAnotherJob(t, cs, "adopt-failed", failed.Name)
		setStatus(t, cs, fresh, corev1.PodSucceeded, corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, StartedAt: now, FinishedAt: now}})
		if o := await(done); o.err != nil || o.res.Adopted || o.res.Job == failed.Name || o.res.ExitCode != 0 {
			t.Errorf("RunJob after a failed Job: %+v, %v; want the work run again", o.res, o.err)
		}
		if j, err := cs.BatchV1().Jobs("kube-system").Get(ctx, failed.Name, metav1.GetOptions{}); err == nil && j.DeletionTimestamp == nil {
			t.Errorf("the failed Job %s of the earlier run was left", failed.Name)
		}
	})

	t.Run("image cannot be pulled", func(t *testing.T) {
		done := run(spec("renew"), 2*time.Minute)
		pod := jobPod(t, cp, cs, "renew")
		at := setStatus(t, cs, pod, corev1.PodPending, corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImagePull", Message: "not found"}})
		o := await(done)
		if !errors.Is(o.err, cluster.ErrNotRun) {
			t.Fatalf("RunJob: %v, want ErrNotRun", o.err)
		}
		t.Logf("image cannot be pulled: RunJob returned %s after the pod said so", o.returned.Sub(at).Round(time.Millisecond))
	})

	// A container the kubelet cannot create is final only when that lasts: a kubelet restarted
	// a moment ago fails with CreateContainerConfigError until it has listed the Services, then
	// runs the container; a missing Secret fails until the grace has passed.
	t.Run("container error that passes", func(t *testing.T) {
		s := spec("cerr-passes")
		s.ContainerErrorGrace = time.Minute
		done := run(s, 2*time.Minute)
		pod := jobPod(t, cp, cs, "cerr-passes")
		setStatus(t, cs, pod, corev1.PodPending, corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{
			Reason: "CreateContainerConfigError", Message: "services have not yet been read at least once, cannot construct envvars"}})
		// The error stands a second (the code before ended on it at once), then passes.
		select {
		case o := <-done:
			t.Fatalf("RunJob ended on a container error within its grace: %v", o.err)
		case <-time.After(time.Second):
		}
		now := metav1.Now()
		setStatusLatest(t, cs, pod, corev1.PodSucceeded, corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, StartedAt: now, FinishedAt: now}})
		if o := await(done); o.err != nil || o.res.ExitCode != 0 {
			t.Fatalf("RunJob after the container error passed: %+v, %v; want certctl's result", o.res, o.err)
		}
	})
	t.Run("container error that lasts", func(t *testing.T) {
		s := spec("cerr-lasts")
		s.ContainerErrorGrace = 2 * time.Second
		done := run(s, 2*time.Minute)
		pod := jobPod(t, cp, cs, "cerr-lasts")
		at := setStatus(t, cs, pod, corev1.PodPending, corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{
			Reason: "CreateContainerConfigError", Message: `secret "certctl-ca-rotation" not found`}})
		o := await(done)
		var cerr *cluster.ContainerError
		if !errors.As(o.err, &cerr) || !errors.Is(o.err, cluster.ErrNotRun) || cerr.Reason != "CreateContainerConfigError" || cerr.Node != node {
			t.Fatalf("RunJob: %v, want a ContainerError (CreateContainerConfigError on %s) wrapping ErrNotRun", o.err, node)
		}
		if took := o.returned.Sub(at); took < s.ContainerErrorGrace || took > time.Minute {
			t.Errorf("ended %s after the error, want after its grace (%s)", took, s.ContainerErrorGrace)
		}
		t.Logf("container error that lasts: RunJob ended %s after it was shown (grace %s): %v", o.returned.Sub(at).Round(time.Millisecond), s.ContainerErrorGrace, o.err)
	})

	// Issue 21's node gone: a node not Ready gets no Job, and RunJob says so within
	// ReadyWait instead of at the Job's timeout; a node that goes away while its Job runs
	// ends the wait once it has been not Ready for NodeLost, the Job left for the next run,
	// which adopts it once the node is back.
	t.Run("node not Ready: no Job", func(t *testing.T) {
		testenv.SetNodeReady(t, cs, node, corev1.ConditionUnknown)
		defer testenv.SetNodeReady(t, cs, node, corev1.ConditionTrue)
		s := spec("notready")
		s.ReadyWait = 500 * time.Millisecond
		start := time.Now()
		o := await(run(s, 2*time.Minute))
		var notReady *cluster.NodeNotReadyError
		if !errors.As(o.err, &notReady) || !errors.Is(o.err, cluster.ErrNotRun) || notReady.Status != corev1.ConditionUnknown || notReady.During {
			t.Fatalf("RunJob on a node not Ready: %v, want a NodeNotReadyError (Unknown, before any Job)", o.err)
		}
		if took := o.returned.Sub(start); took < s.ReadyWait || took > time.Minute {
			t.Errorf("refused after %s, want after ReadyWait (%s)", took, s.ReadyWait)
		}
		jobs, err := cs.BatchV1().Jobs("kube-system").List(context.Background(), metav1.ListOptions{LabelSelector: cluster.LabelComponent + "=notready"})
		if err != nil || len(jobs.Items) != 0 {
			t.Errorf("jobs made for a node not Ready: %d, %v", len(jobs.Items), err)
		}
		t.Logf("node not Ready: %v", o.err)
	})

	t.Run("node Ready again within ReadyWait", func(t *testing.T) {
		testenv.SetNodeReady(t, cs, node, corev1.ConditionFalse)
		s := spec("readyagain")
		s.ReadyWait = 2 * time.Minute
		done := run(s, 2*time.Minute)
		testenv.SetNodeReady(t, cs, node, corev1.ConditionTrue) // a kubelet restarted reports again
		pod := jobPod(t, cp, cs, "readyagain")
		now := metav1.Now()
		setStatus(t, cs, pod, corev1.PodSucceeded, corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, StartedAt: now, FinishedAt: now}})
		if o := await(done); o.err != nil {
			t.Fatalf("RunJob: %v", o.err)
		}
	})

	// Once certctl runs on the node, its Ready condition no longer ends the wait: the node's
	// own work (a control-plane node's apiserver and etcd down for minutes in a CA rotation's
	// drop) may keep its kubelet from reporting longer than the node controller's grace.
	t.Run("node not Ready while certctl runs there: waited for", func(t *testing.T) {
		s := spec("busy")
		s.NodeLost = time.Second // RunJob's watch sees the pod running within it (milliseconds)
		done := run(s, 2*time.Minute)
		pod := jobPod(t, cp, cs, "busy")
		now := metav1.Now()
		pod = setStatusLatest(t, cs, pod, corev1.PodRunning, corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}})
		testenv.SetNodeReady(t, cs, node, corev1.ConditionUnknown)
		defer testenv.SetNodeReady(t, cs, node, corev1.ConditionTrue)
		select {
		case o := <-done:
			t.Fatalf("RunJob returned while certctl ran on a node not Ready: %+v, %v", o.res, o.err)
		case <-time.After(5 * s.NodeLost): // what would have ended it, five times over
		}
		setStatusLatest(t, cs, pod, corev1.PodSucceeded, corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, StartedAt: now, FinishedAt: metav1.Now()}})
		if o := await(done); o.err != nil || o.res.ExitCode != 0 {
			t.Fatalf("RunJob: %+v, %v; want the result", o.res, o.err)
		}
	})

	// A pod the node never started is not left behind: when the node comes back it would start
	// late and run into the Job's deadline (killed mid-work, seen on the lab).
	t.Run("node lost before its Job's pod started", func(t *testing.T) {
		ctx := context.Background()
		s := spec("lostpending")
		s.NodeLost = time.Second
		done := run(s, 2*time.Minute)
		pod := jobPod(t, cp, cs, "lostpending")
		testenv.SetNodeReady(t, cs, node, corev1.ConditionUnknown)
		o := await(done)
		testenv.SetNodeReady(t, cs, node, corev1.ConditionTrue)
		var notReady *cluster.NodeNotReadyError
		if !errors.As(o.err, &notReady) || !notReady.During {
			t.Fatalf("RunJob with the node lost before the pod started: %v, want a NodeNotReadyError, not started", o.err)
		}
		if j, err := cs.BatchV1().Jobs("kube-system").Get(ctx, pod.Labels["job-name"], metav1.GetOptions{}); err == nil && j.DeletionTimestamp == nil {
			t.Errorf("the Job %s whose pod never started was left", j.Name)
		}
	})

	// Issue 21's balancer stopped mid-command: the command's API (here a proxy in front of the
	// apiserver) goes away while it waits for a Job's pod. The client gives up after its wait
	// (--api-wait) and RunJob returns that, typed, at once: not the Job's timeout, not the
	// node's failure. The Job is left for the next run to adopt (it goes on on the node).
	t.Run("the API lost while the pod runs", func(t *testing.T) {
		ctx := context.Background()
		lb := startProxy(t, strings.TrimPrefix(cp.URL, "https://"))
		rc := cp.RESTConfig(t)
		rc.Host = "https://" + lb.Addr()
		apiretry.Wrap(rc, apiretry.Options{Wait: 2 * time.Second, First: 50 * time.Millisecond})
		viaLB, err := kubernetes.NewForConfig(rc)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan outcome, 1)
		go func() {
			res, err := cluster.RunJob(ctx, viaLB, spec("apilost"), 2*time.Minute)
			done <- outcome{res, err, time.Now()}
		}()
		pod := jobPod(t, cp, cs, "apilost")
		now := metav1.Now()
		setStatus(t, cs, pod, corev1.PodRunning, corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}})
		lb.Close()
		o := await(done)
		var gave *apiretry.GaveUpError
		if !errors.As(o.err, &gave) || errors.Is(o.err, cluster.ErrNoResult) || errors.Is(o.err, cluster.ErrNotRun) {
			t.Fatalf("RunJob with its API gone: %v, want the API given up on (*apiretry.GaveUpError)", o.err)
		}
		if j, err := cs.BatchV1().Jobs("kube-system").Get(ctx, pod.Labels["job-name"], metav1.GetOptions{}); err != nil || j.DeletionTimestamp != nil {
			t.Errorf("the Job of the node, still running there, is gone (%v): the next run cannot adopt it", err)
		}
		t.Logf("RunJob returned %v", o.err)
	})

	// The Runner every cluster command uses: a node's certctl that fails fails the node, naming
	// the command, its exit code and what it said; a record asked for and not written is an
	// error of its own (the orchestrator decides from records only).
	t.Run("runner: certctl fails on the node", func(t *testing.T) {
		r := cluster.Runner{Namespace: "kube-system", Image: "localhost/certctl:test", JobTimeout: 2 * time.Minute, Progress: io.Discard}
		done := make(chan outcome, 1)
		go func() {
			res, err := r.Run(context.Background(), cs, cluster.JobSpec{Node: node, Component: "runner",
				Request: noderequest.Request{Op: noderequest.CAShow, Names: []string{"etcd-ca"}, Record: true}}, 3)
			done <- outcome{res, err, time.Now()}
		}()
		pod := jobPod(t, cp, cs, "runner")
		if req, err := noderequest.Decode(pod.Spec.Containers[0].Args[5]); err != nil || !req.Record || req.Op != noderequest.CAShow {
			t.Errorf("the Job runs %v (%v), want ca show with its record", pod.Spec.Containers[0].Args, err)
		}
		now := metav1.Now()
		setStatus(t, cs, pod, corev1.PodFailed, corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 3, StartedAt: now, FinishedAt: now}})
		o := await(done)
		if o.err == nil || !strings.Contains(o.err.Error(), "certctl ca show exited 3 on the node: certctl ran") {
			t.Fatalf("Run: %v", o.err)
		}
		var v map[string]any
		if err := o.res.Record(noderesult.KindCAShow, &v); !errors.Is(err, noderesult.ErrNoRecord) || !strings.Contains(err.Error(), "exited 3") {
			t.Errorf("the record of a run that wrote none: %v", err)
		}
	})

	// Issue 20's contract at the orchestrator: the endpoint's step for a node decides from the
	// result record in the pod's termination message only. A message that is no record (the
	// command's human words, as an older certctl printed them), none at all, or a record of
	// another version fails that node at once, naming it and what to do; a record saying the
	// kubelet restarted makes it wait for that kubelet (here, never reporting: the wait's own
	// error), one saying not ends the step.
	t.Run("orchestrator: the node's result record decides", func(t *testing.T) {
		valid := func(kubeletRestarted bool) string {
			b, err := json.Marshal(noderesult.Result{Version: noderesult.Version, Command: "kubeconfig set-server", KubeletRestarted: kubeletRestarted})
			if err != nil {
				t.Fatal(err)
			}
			return string(b)
		}
		seen := map[string]bool{}
		for _, tc := range []struct {
			name    string
			message string
			wantErr []string // each in the error; none: no error
			is      error
		}{
			{name: "human words, no record", message: "restarting the kubelet\nkubelet restarted", wantErr: []string{"node-j", "not a certctl result record"}},
			{name: "no record", message: "", wantErr: []string{"node-j"}, is: noderesult.ErrNone},
			{name: "another version", message: `{"version":"certctl.io/node-result/v9","kubeletRestarted":true}`, wantErr: []string{"node-j", "v9", noderesult.Version, "--image"}},
			{name: "kubelet restarted: its report awaited", message: valid(true), wantErr: []string{"kubelet of node-j not reporting within 2s"}},
			{name: "kubelet not restarted", message: valid(false)},
		} {
			t.Run(tc.name, func(t *testing.T) {
				o := cluster.EndpointOptions{Runner: cluster.Runner{Namespace: "kube-system", Image: "localhost/certctl:test", JobTimeout: time.Minute, Progress: io.Discard},
					Checks: cluster.Checks{ReadyTimeout: 2 * time.Second}}
				done := make(chan error, 1)
				go func() {
					done <- cluster.MoveNode(context.Background(), cs, o, node, "https://10.2.1.151:6443", "https://10.2.1.139:6443")
				}()
				pod := newPod(t, cs, "endpoint", seen)
				now := metav1.Now()
				setStatus(t, cs, pod, corev1.PodSucceeded, corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
					ExitCode: 0, Message: tc.message, StartedAt: now, FinishedAt: now}})
				var err error
				select {
				case err = <-done:
				case <-time.After(2 * time.Minute):
					t.Fatal("the node's step did not return within 2 minutes")
				}
				if len(tc.wantErr) == 0 {
					if err != nil {
						t.Fatalf("with the record %s: %v", tc.message, err)
					}
					return
				}
				if err == nil {
					t.Fatalf("with the termination message %q the node's step succeeded", tc.message)
				}
				for _, want := range tc.wantErr {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q lacks %q", err, want)
					}
				}
				if tc.is != nil && !errors.Is(err, tc.is) {
					t.Errorf("error %v is not %v", err, tc.is)
				}
			})
		}
	})

	// Issue 21's network cut while certctl runs on the node: the pod last seen running, no
	// result within the timeout. Not "did not run": what it did there is unknown here.
	t.Run("started, no result", func(t *testing.T) {
		done := run(spec("cutoff"), 3*time.Second)
		pod := jobPod(t, cp, cs, "cutoff")
		setStatusLatest(t, cs, pod, corev1.PodRunning, corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}})
		o := await(done)
		if !errors.Is(o.err, cluster.ErrNoResult) || errors.Is(o.err, cluster.ErrNotRun) || !strings.Contains(o.err.Error(), "node "+node) {
			t.Fatalf("RunJob: %v, want ErrNoResult naming node %s", o.err, node)
		}
		t.Logf("started, no result: %v", o.err)
	})

	t.Run("never starts", func(t *testing.T) {
		start := time.Now()
		o := await(run(spec("endpoint"), 3*time.Second))
		if !errors.Is(o.err, cluster.ErrNotRun) || o.returned.Sub(start) < 3*time.Second {
			t.Fatalf("RunJob: %v after %s, want ErrNotRun at the 3s timeout", o.err, o.returned.Sub(start))
		}
	})
}

// proxy is a TCP proxy on loopback (the balancer in front of an apiserver); Close stops it and
// cuts every connection through it, as a stopped haproxy does.
type proxy struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln}
	t.Cleanup(p.Close)
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, in, out)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(out, in); out.Close() }()
			go func() { _, _ = io.Copy(in, out); in.Close() }()
		}
	}()
	return p
}

func (p *proxy) Addr() string { return p.ln.Addr().String() }

func (p *proxy) Close() {
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}
