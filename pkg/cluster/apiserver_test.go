package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/cluster"
	"github.com/certctl/certctl/pkg/sandbox"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
)

func apiserver(t *testing.T) kubernetes.Interface {
	t.Helper()
	tr := testenv.KubeadmTree(t, testenv.TreeOptions{})
	cp := testenv.StartControlPlane(t, testenv.ControlPlaneOptions{PKIDir: tr.Layout.PKIDir, KubeconfigDir: tr.Layout.KubeconfigDir})
	cs := cp.Clientset(t)
	// The ServiceAccount admission plugin wants the namespace's default ServiceAccount, which
	// kube-controller-manager would create.
	_, err := cs.CoreV1().ServiceAccounts("kube-system").Create(context.Background(),
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	return cs
}

// TestJobsOnRealAPIServer: the Job of every node is accepted by a real API server's
// validation (server-side), with its spec intact; without a Job controller no pod ever
// appears, so every node is listed as not-run with the reason, and its Job is removed.
func TestJobsOnRealAPIServer(t *testing.T) {
	cs := apiserver(t)
	ctx := context.Background()
	nodes := []string{"master-1", "ip-10-2-1-154.eu-west-1.compute.internal", strings.Repeat("n", 63)}
	for _, n := range nodes {
		j, err := cluster.NodeJob(n, cluster.JobOptions{Image: "localhost/certctl:dev", Run: "check"})
		if err != nil {
			t.Fatal(err)
		}
		got, err := cs.BatchV1().Jobs("kube-system").Create(ctx, j, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			t.Fatalf("the API server refuses the Job for %s: %v", n, err)
		}
		ps := got.Spec.Template.Spec
		if ps.NodeName != n || *ps.AutomountServiceAccountToken || !ps.Containers[0].VolumeMounts[0].ReadOnly || *got.Spec.TTLSecondsAfterFinished != 600 {
			t.Errorf("%s: the stored Job lost fields: %+v", n, got.Spec)
		}
	}
	res := cluster.Run(ctx, cs, nodes, cluster.RunOptions{
		JobOptions: cluster.JobOptions{Image: "localhost/certctl:dev", Run: "r1"}, StartTimeout: 2 * time.Second, Poll: 200 * time.Millisecond,
	})
	for i, r := range res {
		if r.Node != nodes[i] || r.State != cluster.StateNotRun || !strings.Contains(r.Reason, "no pod was created") {
			t.Errorf("%s: %+v, want not-run: no pod was created", nodes[i], r)
		}
	}
	if st := cluster.Aggregate(res); st.Worst != cluster.StateNotRun || st.Counts[cluster.StateNotRun] != 3 {
		t.Errorf("aggregate %+v", st)
	}
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		l, err := cs.BatchV1().Jobs("kube-system").List(ctx, metav1.ListOptions{LabelSelector: cluster.LabelRun + "=r1"})
		return err == nil && len(l.Items) == 0, nil
	})
	if err != nil {
		t.Errorf("the Jobs of nodes that did not run were not removed: %v", err)
	}
}

// TestRunWithPods plays the Job controller and the kubelets on a real API server: for each
// Job it creates the pod and sets its status (finished with inspect's exit code, or stuck on
// an image pull); the log is a real inspect report. Run must give each node its result, list
// the stuck one as not-run with the kubelet's reason, and never have more than Parallel Jobs
// at once.
func TestRunWithPods(t *testing.T) {
	cs := apiserver(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	healthy, faulty := report(t), report(t, sandbox.FaultAPIServerExpired)
	plan := map[string]struct {
		code int
		log  []byte
		pull bool
	}{
		"cp-1": {0, healthy, false}, "cp-2": {2, faulty, false}, "w-1": {0, healthy, false},
		"w-2": {0, healthy, false}, "w-3": {0, nil, true}, "w-4": {0, healthy, false},
	}
	var nodes []string
	for n := range plan {
		nodes = append(nodes, n)
	}
	var maxLive atomic.Int32
	var mu sync.Mutex
	handled, finished := map[string]bool{}, map[string]bool{}
	// The Job controller and the kubelets, every 50 ms until the test ends.
	go wait.UntilWithContext(ctx, func(ctx context.Context) {
		{
			l, err := cs.BatchV1().Jobs("kube-system").List(ctx, metav1.ListOptions{LabelSelector: cluster.LabelRun + "=r2"})
			if err == nil {
				// In flight: Jobs whose pod has not finished (a stuck one is deleted by Run
				// when it gives up on it).
				n := int32(0)
				mu.Lock()
				for _, j := range l.Items {
					if !finished[j.Name] {
						n++
					}
				}
				mu.Unlock()
				if n > maxLive.Load() {
					maxLive.Store(n)
				}
				for _, j := range l.Items {
					mu.Lock()
					done := handled[j.Name]
					handled[j.Name] = true
					mu.Unlock()
					if done {
						continue
					}
					node := j.Spec.Template.Spec.NodeName
					p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: j.Name + "-x", Namespace: "kube-system",
						Labels: map[string]string{cluster.JobNameLabel: j.Name}}, Spec: j.Spec.Template.Spec}
					p, err := cs.CoreV1().Pods("kube-system").Create(ctx, p, metav1.CreateOptions{})
					if err != nil {
						t.Errorf("create pod for %s: %v", node, err)
						continue
					}
					if plan[node].pull {
						p.Status.Phase = corev1.PodPending
						p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "certctl", State: corev1.ContainerState{
							Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImagePull", Message: "localhost/certctl:dev not found"}}}}
					} else {
						p.Status.Phase = corev1.PodSucceeded
						if plan[node].code != 0 {
							p.Status.Phase = corev1.PodFailed
						}
						p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "certctl", State: corev1.ContainerState{
							Terminated: &corev1.ContainerStateTerminated{ExitCode: int32(plan[node].code)}}}}
					}
					if _, err := cs.CoreV1().Pods("kube-system").UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
						t.Errorf("pod status for %s: %v", node, err)
					}
					mu.Lock()
					finished[j.Name] = !plan[node].pull
					mu.Unlock()
				}
			}
		}
	}, 50*time.Millisecond)
	logs := func(ctx context.Context, cs kubernetes.Interface, pod *corev1.Pod) ([]byte, error) {
		p, ok := plan[pod.Spec.NodeName]
		if !ok {
			return nil, errors.New("unknown node")
		}
		return p.log, nil
	}
	res := cluster.Run(ctx, cs, nodes, cluster.RunOptions{
		JobOptions: cluster.JobOptions{Image: "localhost/certctl:dev", Run: "r2"},
		Parallel:   2, StartTimeout: 3 * time.Second, Poll: 100 * time.Millisecond, Logs: logs,
	})
	for i, r := range res {
		want := map[bool]string{false: cluster.StateOK, true: cluster.StateNotRun}[plan[nodes[i]].pull]
		if plan[nodes[i]].code == 2 {
			want = cluster.StateCritical
		}
		if r.Node != nodes[i] || r.State != want {
			t.Errorf("%s: %+v, want %s", nodes[i], r, want)
		}
		if plan[nodes[i]].pull && !strings.Contains(r.Reason, "ErrImagePull") {
			t.Errorf("%s: reason %q does not say ErrImagePull", nodes[i], r.Reason)
		}
	}
	if m := maxLive.Load(); m > 2 || m < 1 {
		t.Errorf("%d Jobs in flight at once with Parallel 2", m)
	}
	fmt.Fprintln(testWriter{t}, "max Jobs at once:", maxLive.Load())
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// TestLeaseTwoHolders: two certctl runs against a real API server: the second is refused
// while the first holds the lease (naming the holder), takes it once it is released or has
// expired, and of two racing for a free lease exactly one wins.
func TestLeaseTwoHolders(t *testing.T) {
	cs := apiserver(t)
	ctx := context.Background()
	a, err := cluster.AcquireLease(ctx, cs, "kube-system", "certctl", "node-a", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	_, err = cluster.AcquireLease(ctx, cs, "kube-system", "certctl", "node-b", time.Minute)
	var held *cluster.HeldError
	if !errors.As(err, &held) || held.Holder != "node-a" {
		t.Fatalf("second holder: err %v, want held by node-a", err)
	}
	if again, err := cluster.AcquireLease(ctx, cs, "kube-system", "certctl", "node-a", time.Minute); err != nil || again == nil {
		t.Errorf("the holder itself cannot renew: %v", err)
	}
	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
	b, err := cluster.AcquireLease(ctx, cs, "kube-system", "certctl", "node-b", time.Minute)
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	if err := a.Release(ctx); err != nil { // not a's any more: a no-op
		t.Fatal(err)
	}
	if _, err := cluster.AcquireLease(ctx, cs, "kube-system", "certctl", "node-a", time.Minute); !errors.As(err, &held) || held.Holder != "node-b" {
		t.Errorf("a's stale Release freed b's lease: %v", err)
	}
	_ = b

	// Expiry: a holder that dies without releasing loses the lease after its duration.
	if _, err := cluster.AcquireLease(ctx, cs, "kube-system", "short", "dead", time.Second); err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := cluster.AcquireLease(ctx, cs, "kube-system", "short", "alive", time.Minute)
		return err == nil, nil
	})
	if err != nil {
		t.Errorf("an expired lease was not taken over: %v", err)
	}

	// Races: two holders at once for a free lease, several times.
	for i := range 5 {
		name := fmt.Sprintf("race-%d", i)
		var wins atomic.Int32
		var wg sync.WaitGroup
		for _, h := range []string{"x", "y"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := cluster.AcquireLease(ctx, cs, "kube-system", name, h, time.Minute); err == nil {
					wins.Add(1)
				} else if !errors.As(err, new(*cluster.HeldError)) {
					t.Errorf("%s/%s: %v", name, h, err)
				}
			}()
		}
		wg.Wait()
		if wins.Load() != 1 {
			t.Errorf("%s: %d winners", name, wins.Load())
		}
	}
}
