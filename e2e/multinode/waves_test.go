package multinode

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/certctl/certctl/internal/multilab"
	"github.com/certctl/certctl/pkg/cluster"
)

// Two more workers for TestWorkerWaves (worker1 is the lab's).
var waveWorkers = []multilab.Node{{Name: "worker5", IP: "10.2.1.157"}, {Name: "worker6", IP: "10.2.1.158"}}

// jobTimes records, from a watch, when each node's Job of one component was seen created and
// seen ended (succeeded, failed, or deleted: certctl deletes a node's Job when it has its
// result).
type jobTimes struct {
	mu      sync.Mutex
	created map[string]time.Time
	ended   map[string]time.Time
	failed  map[string]bool
	stop    context.CancelFunc
	done    chan error
}

func watchJobs(t *testing.T, cs kubernetes.Interface, component string) *jobTimes {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w, err := cs.BatchV1().Jobs("kube-system").Watch(ctx, metav1.ListOptions{LabelSelector: cluster.LabelComponent + "=" + component})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	jt := &jobTimes{created: map[string]time.Time{}, ended: map[string]time.Time{}, failed: map[string]bool{}, stop: cancel, done: make(chan error, 1)}
	go func() {
		defer w.Stop()
		for ev := range w.ResultChan() {
			j, ok := ev.Object.(*batchv1.Job)
			if !ok {
				continue
			}
			node, now := j.Labels[cluster.LabelNode], time.Now()
			jt.mu.Lock()
			if _, seen := jt.created[node]; !seen && ev.Type != watch.Deleted {
				jt.created[node] = now
			}
			if _, seen := jt.ended[node]; !seen && (finished(j) || ev.Type == watch.Deleted) {
				jt.ended[node] = now
				jt.failed[node] = j.Status.Failed > 0 // certctl deletes a Job once it has its pod's result, often before the Job counts it succeeded
			}
			jt.mu.Unlock()
		}
		jt.done <- ctx.Err()
	}()
	return jt
}

// Stop ends the watch; the test fails when it ended before (a gap in what was seen).
func (jt *jobTimes) Stop(t *testing.T) {
	t.Helper()
	jt.stop()
	if err := <-jt.done; err == nil {
		t.Fatal("the watch of the Jobs ended before the command did: the times are incomplete")
	}
}

// TestWorkerWaves is issue 22's waves on the real lab with three workers: `cluster endpoint
// --max-parallel 2` (to the endpoint the cluster uses: each node's Job runs, nothing changes)
// runs the control-plane nodes one at a time and then worker1 and worker5 at once (both Jobs
// created before either ended), worker6 only after both. With worker5's kubelet stopped, the
// wave of worker1 and worker5 fails naming worker5, worker1's Job runs to its end, worker6
// gets no Job; with the kubelet back, the same command finishes.
func TestWorkerWaves(t *testing.T) {
	requireLab(t)
	cs := clientset(t)
	endpoint := controlPlaneEndpoint(t, cs)
	for _, w := range waveWorkers {
		lab(t, "add-node", w.Name, w.IP)
		t.Cleanup(func() {
			if r, err := multilab.Lab(context.Background(), "remove-node", w.Name); err != nil || r.Code != 0 {
				t.Errorf("remove-node %s: %v %s", w.Name, err, r)
			}
			_ = cs.CoreV1().Nodes().Delete(context.Background(), w.Name, metav1.DeleteOptions{})
		})
		lab(t, "join", w.Name, endpoint, "--discovery-timeout", "2m")
	}
	for _, w := range waveWorkers {
		waitNodeReady(t, cs, w.Name, 3*time.Minute)
	}
	nodes, err := multilab.Nodes()
	if err != nil {
		t.Fatal(err)
	}
	cps := controlPlanes(nodes)
	args := []string{"cluster", "endpoint", endpoint, "--image", multilab.Image, "--max-parallel", "2"}

	jt := watchJobs(t, cs, "endpoint")
	r := certctlHere(t, args...)
	jt.Stop(t)
	if r.Code != 0 {
		t.Fatalf("cluster endpoint %s --max-parallel 2: %s", endpoint, r)
	}
	order := []string{}
	for _, n := range cps {
		order = append(order, n.Name)
	}
	for i := 1; i < len(order); i++ {
		if !jt.created[order[i]].After(jt.ended[order[i-1]]) {
			t.Errorf("%s's Job was created before %s's ended: control-plane nodes must go one at a time", order[i], order[i-1])
		}
	}
	w1, w5, w6 := "worker1", waveWorkers[0].Name, waveWorkers[1].Name
	for _, n := range append(order, w1, w5, w6) {
		if jt.created[n].IsZero() || jt.ended[n].IsZero() || jt.failed[n] {
			t.Fatalf("%s: Job created %v, ended %v, failed %v", n, jt.created[n], jt.ended[n], jt.failed[n])
		}
	}
	if !jt.created[w1].After(jt.ended[order[len(order)-1]]) {
		t.Errorf("worker1's Job was created before the last control-plane node's ended")
	}
	if !jt.created[w5].Before(jt.ended[w1]) || !jt.created[w1].Before(jt.ended[w5]) {
		t.Errorf("worker1 and worker5 are one wave but did not run at once: worker1 %v-%v, worker5 %v-%v",
			jt.created[w1].Format(time.StampMilli), jt.ended[w1].Format(time.StampMilli), jt.created[w5].Format(time.StampMilli), jt.ended[w5].Format(time.StampMilli))
	}
	if !jt.created[w6].After(jt.ended[w1]) || !jt.created[w6].After(jt.ended[w5]) {
		t.Errorf("worker6's Job was created before its previous wave (worker1, worker5) ended")
	}
	t.Logf("waves: worker1 %s, worker5 %s at once; worker6 %s after",
		jt.ended[w1].Sub(jt.created[w1]).Round(100*time.Millisecond), jt.ended[w5].Sub(jt.created[w5]).Round(100*time.Millisecond), jt.ended[w6].Sub(jt.created[w6]).Round(100*time.Millisecond))
	assertNoJobs(t)

	// worker5 goes away: its wave fails naming it, worker1 (same wave) is done, worker6 untouched.
	lab(t, "kubelet", w5, "stop")
	back := false
	t.Cleanup(func() {
		if !back {
			lab(t, "kubelet", w5, "start")
		}
	})
	jt = watchJobs(t, cs, "endpoint")
	r = certctlHere(t, args...)
	jt.Stop(t)
	if r.Code == 0 || !strings.Contains(r.Stderr, "node "+w5+" failed") {
		t.Fatalf("cluster endpoint with %s's kubelet stopped: want it to stop naming %s, got %s", w5, w5, r)
	}
	if jt.ended[w1].IsZero() || jt.failed[w1] {
		t.Errorf("worker1, in the wave of the node that went away, did not run to its end: created %v, ended %v, failed %v", jt.created[w1], jt.ended[w1], jt.failed[w1])
	}
	if !jt.created[w6].IsZero() {
		t.Errorf("worker6, in the wave after the failed one, got a Job")
	}
	assertNoJobs(t)

	lab(t, "kubelet", w5, "start")
	back = true
	waitNodeReady(t, cs, w5, 3*time.Minute)
	jt = watchJobs(t, cs, "endpoint")
	r = certctlHere(t, args...)
	jt.Stop(t)
	if r.Code != 0 {
		t.Fatalf("cluster endpoint with %s back: %s", w5, r)
	}
	if jt.ended[w6].IsZero() || jt.failed[w6] {
		t.Errorf("worker6 not done by the run after %s came back", w5)
	}
	assertNoJobs(t)

	// Issue 21's fault 2 in a wave: worker5's network cut as soon as its Job is made, worker1's
	// running beside it. The command stops naming worker5 (within --job-timeout), worker1 runs
	// to its end, worker6 gets no Job; with the network back the same command finishes.
	jt = watchJobs(t, cs, "endpoint")
	start := time.Now()
	cmd, out, exited := startCertctl(t, append(slices.Clone(args), "--kubeconfig", multilab.AdminKubeconfig(), "--job-timeout", "60s")...)
	if err := jt.made(w5, 3*time.Minute); err != nil {
		_ = cmd.Process.Kill()
		<-exited
		t.Fatalf("%s's Job never made: %v\n%s", w5, err, out.String())
	}
	restore := cutNetwork(t, w5)
	cutAt := time.Now()
	t.Logf("%s's network cut %s after the command started, its Job made, worker1's in the same wave", w5, cutAt.Sub(start).Round(100*time.Millisecond))
	err = endsWithin(t, cmd, out, exited, 5*time.Minute, "cluster endpoint, "+w5+"'s network cut in its wave (--job-timeout 60s),")
	jt.Stop(t)
	t.Logf("the command ended %s after the cut: %v\n%s", time.Since(cutAt).Round(100*time.Millisecond), err, out.String())
	if err == nil || !strings.Contains(out.String(), "node "+w5+" failed") || strings.Contains(out.String(), "node "+w1+" failed") {
		t.Fatalf("with %s's network cut in its wave, the command must stop naming it alone: %v\n%s", w5, err, out.String())
	}
	if jt.ended[w1].IsZero() || jt.failed[w1] {
		t.Errorf("worker1, in the wave of the node cut off, did not run to its end: created %v, ended %v, failed %v", jt.created[w1], jt.ended[w1], jt.failed[w1])
	}
	if !jt.created[w6].IsZero() {
		t.Errorf("worker6, in the wave after the failed one, got a Job")
	}
	restore()
	t.Logf("%s Ready again %s after its network came back", w5, waitNodeReady(t, cs, w5, 3*time.Minute).Round(time.Second))
	jt = watchJobs(t, cs, "endpoint")
	r = certctlHere(t, args...)
	jt.Stop(t)
	if r.Code != 0 || jt.ended[w6].IsZero() || jt.failed[w6] {
		t.Fatalf("cluster endpoint with %s's network back: worker6 ended %v failed %v: %s", w5, jt.ended[w6], jt.failed[w6], r)
	}
	assertNoJobs(t)
}

// made waits until node's Job has been seen created.
func (jt *jobTimes) made(node string, timeout time.Duration) error {
	return wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		jt.mu.Lock()
		defer jt.mu.Unlock()
		return !jt.created[node].IsZero(), nil
	})
}
