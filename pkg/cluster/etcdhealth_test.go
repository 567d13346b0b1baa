package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/certctl/certctl/pkg/cluster"
	"github.com/certctl/certctl/pkg/pki"
)

// etcdPod is what a control-plane node's kubelet reports of its etcd static pod: the mirror
// pod etcd-NODE in kube-system with kubeadm's labels, and its Ready condition.
func etcdPod(t *testing.T, cs kubernetes.Interface, node string, ready corev1.ConditionStatus) {
	t.Helper()
	etcdPodStarted(t, cs, node, ready, time.Time{})
}

// etcdPodStarted is etcdPod whose etcd container the kubelet reports running since started
// (zero: no container status).
func etcdPodStarted(t *testing.T, cs kubernetes.Interface, node string, ready corev1.ConditionStatus, started time.Time) {
	t.Helper()
	ctx := context.Background()
	p, err := cs.CoreV1().Pods("kube-system").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "etcd-" + node, Labels: map[string]string{"component": "etcd", "tier": "control-plane"}},
		Spec: corev1.PodSpec{NodeName: node, AutomountServiceAccountToken: new(bool),
			Containers: []corev1.Container{{Name: "etcd", Image: "registry.k8s.io/etcd:3.7.0-0"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Status.Phase = corev1.PodRunning
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: ready, Reason: map[corev1.ConditionStatus]string{corev1.ConditionFalse: "ContainersNotReady"}[ready],
		Message: map[corev1.ConditionStatus]string{corev1.ConditionFalse: "containers with unready status: [etcd]"}[ready]}}
	if !started.IsZero() {
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "etcd", Image: p.Spec.Containers[0].Image, Ready: ready == corev1.ConditionTrue,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(started)}}}}
	}
	if _, err := cs.CoreV1().Pods("kube-system").UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestCheckEtcdMembers: against a real apiserver holding the nodes and etcd mirror pods a
// kubeadm cluster has, the rotation of etcd-ca is refused while a member is missing or not
// ready, with every member's state in a typed error; nothing is asked of a rotation that does
// not restart etcd, of a dry run, or of a cluster with external etcd.
func TestCheckEtcdMembers(t *testing.T) {
	tests := []struct {
		name     string
		pods     map[string]corev1.ConditionStatus // node -> its etcd pod's Ready ("" no pod)
		cas      []string
		dryRun   bool
		notReady []string // nil: allowed
		states   int      // member states returned
	}{
		{name: "all ready", pods: map[string]corev1.ConditionStatus{"cp1": "True", "cp2": "True", "cp3": "True"}, cas: []string{"etcd-ca"}, states: 3},
		{name: "one not ready", pods: map[string]corev1.ConditionStatus{"cp1": "True", "cp2": "True", "cp3": "False"}, cas: []string{"ca", "etcd-ca"}, notReady: []string{"cp3"}, states: 3},
		{name: "one without its pod", pods: map[string]corev1.ConditionStatus{"cp1": "True", "cp2": "", "cp3": "True"}, cas: []string{"etcd-ca"}, notReady: []string{"cp2"}, states: 3},
		{name: "two down", pods: map[string]corev1.ConditionStatus{"cp1": "False", "cp2": "", "cp3": "True"}, cas: []string{"etcd-ca", "front-proxy-ca"}, notReady: []string{"cp1", "cp2"}, states: 3},
		{name: "not etcd-ca", pods: map[string]corev1.ConditionStatus{"cp1": "True", "cp2": "True", "cp3": "False"}, cas: []string{"ca", "front-proxy-ca"}},
		{name: "dry run", pods: map[string]corev1.ConditionStatus{"cp1": "True", "cp2": "True", "cp3": "False"}, cas: []string{"etcd-ca"}, dryRun: true},
		{name: "external etcd", pods: map[string]corev1.ConditionStatus{"cp1": "", "cp2": "", "cp3": ""}, cas: []string{"etcd-ca"}},
	}
	_, cp := controlPlane(t)
	admin := cp.Clientset(t)
	ctx := context.Background()
	// What the serviceaccount controller (not run here) makes in every namespace.
	if _, err := admin.CoreV1().ServiceAccounts("kube-system").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Each case its own nodes (and pods) in the one apiserver.
			for _, p := range []string{"cp1", "cp2", "cp3"} {
				if _, err := admin.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%d", p, i),
					Labels: map[string]string{pki.ControlPlaneLabel: ""}}}, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
				if tc.pods[p] != "" {
					etcdPod(t, admin, fmt.Sprintf("%s-%d", p, i), tc.pods[p])
				}
			}
			t.Cleanup(func() {
				for _, p := range []string{"cp1", "cp2", "cp3"} {
					n := fmt.Sprintf("%s-%d", p, i)
					_ = admin.CoreV1().Nodes().Delete(ctx, n, metav1.DeleteOptions{})
					_ = admin.CoreV1().Pods("kube-system").Delete(ctx, "etcd-"+n, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
				}
			})
			states, err := cluster.CheckEtcdForRotation(ctx, admin, tc.cas, tc.dryRun)
			if len(states) != tc.states {
				t.Errorf("%d member states, want %d: %+v", len(states), tc.states, states)
			}
			var nr *cluster.EtcdNotReadyError
			if tc.notReady == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.As(err, &nr) {
				t.Fatalf("err %v, want an EtcdNotReadyError", err)
			}
			var got []string
			for _, m := range nr.NotReady() {
				got = append(got, m.Node)
				if m.Why == "" {
					t.Errorf("%s not ready without a reason", m.Node)
				}
			}
			var want []string
			for _, n := range tc.notReady {
				want = append(want, fmt.Sprintf("%s-%d", n, i))
			}
			if !slices.Equal(got, want) {
				t.Errorf("not ready %v, want %v (%v)", got, want, err)
			}
			if len(nr.Members) != 3 {
				t.Errorf("the error holds %d members, want all 3: %v", len(nr.Members), err)
			}
		})
	}
	etcdWaitsForItsJob(t, admin)
}

// signal is a progress writer that closes wrote at its first line: the check has decided to
// wait (it writes nothing otherwise).
type signal struct {
	once  sync.Once
	wrote chan struct{}
	t     *testing.T
}

func (s *signal) Write(p []byte) (int, error) {
	s.t.Logf("progress: %s", strings.TrimSpace(string(p)))
	s.once.Do(func() { close(s.wrote) })
	return len(p), nil
}

// etcdWaitsForItsJob: the run after a killed one (CI: the orchestrator of ca-rotate's trust
// killed while cp1's Job restarted its etcd) finds the member down while the Job it would
// adopt still runs on that node: it waits for that Job to end and the member to be ready,
// rather than refusing; a member down where no certctl Job runs is refused at once, and one
// that stays down after its node's Job ended is refused once settle has passed. A member whose
// etcd container started running less than settle ago (the run before restarted it, or rolled
// its node back) is waited for, at most settle; one running longer and not ready is refused at
// once.
func etcdWaitsForItsJob(t *testing.T, admin kubernetes.Interface) {
	ctx := context.Background()
	tests := []struct {
		name    string
		jobOn   string        // the node (of cp1..cp3) with a running certctl Job, "" none
		jobDead time.Duration // the Job's activeDeadlineSeconds
		back    bool          // the member comes back (pod ready, Job deleted) once the check waits
		started time.Duration // cp3's etcd container running since this long, not ready (0: no pod)
		bare    bool          // cp3's etcd pod made, its status not reported yet
		waits   bool          // the check waits (writes progress) before deciding
		refused bool
		atLeast time.Duration // the check decides no sooner (settle is 3 s)
	}{
		{name: "a killed run's job restarting the member", jobOn: "cp3", jobDead: 10 * time.Minute, back: true, waits: true},
		{name: "the job's deadline passed, the member still down", jobOn: "cp3", jobDead: time.Second, waits: true, refused: true},
		{name: "a job on another node", jobOn: "cp2", jobDead: 10 * time.Minute, refused: true},
		{name: "no job", refused: true},
		{name: "the member just started, no job", started: time.Second, back: true, waits: true},
		{name: "the member just started and stays not ready", started: time.Second, waits: true, refused: true, atLeast: 3 * time.Second},
		{name: "the member running long, not ready", started: 10 * time.Minute, refused: true},
		{name: "the member's pod not reported yet, no job", bare: true, back: true, waits: true},
		// A kubelet whose apiserver was down may see its new mirror pod a minute late: twice settle.
		{name: "the member's pod never reported", bare: true, waits: true, refused: true, atLeast: 6 * time.Second},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			node := func(p string) string { return fmt.Sprintf("w%s-%d", p, i) }
			for _, p := range []string{"cp1", "cp2", "cp3"} {
				if _, err := admin.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node(p),
					Labels: map[string]string{pki.ControlPlaneLabel: ""}}}, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
				switch {
				case p != "cp3":
					etcdPod(t, admin, node(p), corev1.ConditionTrue)
				case tc.started > 0:
					etcdPodStarted(t, admin, node(p), corev1.ConditionFalse, time.Now().Add(-tc.started))
				case tc.bare:
					if _, err := admin.CoreV1().Pods("kube-system").Create(ctx, &corev1.Pod{
						ObjectMeta: metav1.ObjectMeta{Name: "etcd-" + node(p), Labels: map[string]string{"component": "etcd", "tier": "control-plane"}},
						Spec: corev1.PodSpec{NodeName: node(p), AutomountServiceAccountToken: new(bool),
							Containers: []corev1.Container{{Name: "etcd", Image: "registry.k8s.io/etcd:3.7.0-0"}}},
					}, metav1.CreateOptions{}); err != nil {
						t.Fatal(err)
					}
				}
			}
			var job string
			if tc.jobOn != "" {
				j, err := admin.BatchV1().Jobs("kube-system").Create(ctx, cluster.JobSpec{Namespace: "kube-system", Node: node(tc.jobOn), Image: "localhost/certctl:dev",
					Component: "carotate", Deadline: tc.jobDead, Privileged: true}.Job(), metav1.CreateOptions{})
				if err != nil {
					t.Fatal(err)
				}
				job = j.Name
			}
			t.Cleanup(func() {
				for _, p := range []string{"cp1", "cp2", "cp3"} {
					_ = admin.CoreV1().Nodes().Delete(ctx, node(p), metav1.DeleteOptions{})
					_ = admin.CoreV1().Pods("kube-system").Delete(ctx, "etcd-"+node(p), metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
				}
				if job != "" {
					_ = admin.BatchV1().Jobs("kube-system").Delete(ctx, job, metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationBackground)})
				}
			})
			sig := &signal{wrote: make(chan struct{}), t: t}
			type result struct {
				states []cluster.EtcdMemberState
				err    error
			}
			done := make(chan result, 1)
			began := time.Now()
			go func() {
				states, err := cluster.EtcdForRotation(ctx, admin, cluster.Runner{Namespace: "kube-system", Progress: sig}, 3*time.Second, []string{"etcd-ca"})
				done <- result{states, err}
			}()
			var r result
			select {
			case r = <-done:
				if tc.waits {
					t.Fatalf("decided without waiting: %v", r.err)
				}
			case <-sig.wrote:
				if !tc.waits {
					t.Fatalf("waits, with no certctl Job on the member's node")
				}
				switch {
				case tc.back && (tc.started > 0 || tc.bare): // its readiness probe passes, its kubelet reports it
					p, err := admin.CoreV1().Pods("kube-system").Get(ctx, "etcd-"+node("cp3"), metav1.GetOptions{})
					if err != nil {
						t.Fatal(err)
					}
					p.Status.Phase = corev1.PodRunning
					p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
					if _, err := admin.CoreV1().Pods("kube-system").UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
						t.Fatal(err)
					}
				case tc.back:
					etcdPod(t, admin, node("cp3"), corev1.ConditionTrue)
					if err := admin.BatchV1().Jobs("kube-system").Delete(ctx, job, metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationBackground)}); err != nil {
						t.Fatal(err)
					}
				}
				select {
				case r = <-done:
				case <-time.After(time.Minute):
					t.Fatal("still waiting a minute later")
				}
			case <-time.After(time.Minute):
				t.Fatal("neither decided nor waiting after a minute")
			}
			if took := time.Since(began); took < tc.atLeast {
				t.Errorf("decided after %s, want a wait of at least %s", took, tc.atLeast)
			}
			var nr *cluster.EtcdNotReadyError
			switch {
			case tc.refused && !errors.As(r.err, &nr):
				t.Fatalf("err %v, want an EtcdNotReadyError", r.err)
			case tc.refused && (len(nr.NotReady()) != 1 || nr.NotReady()[0].Node != node("cp3")):
				t.Errorf("refused for %v, want %s alone", nr.NotReady(), node("cp3"))
			case !tc.refused && r.err != nil:
				t.Fatalf("refused: %v", r.err)
			case !tc.refused && len(r.states) != 3:
				t.Errorf("%d member states, want 3", len(r.states))
			}
		})
	}
}
