package cluster

import (
	"context"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
)

// TestWaitKubeletReports: after a node's kubelet was restarted the orchestrator goes on only
// once that kubelet renewed its node Lease after the restart and the Node is Ready; a kubelet
// that does not come back ends the wait at its timeout saying which of the two is missing.
// (A unit test of the branches on a fake clientset; the real kubelets are waited for in the
// multi-node lab's endpoint and ca-rotate tests.)
func TestWaitKubeletReports(t *testing.T) {
	restart := time.Now()
	lease := func(renewed time.Time) *coordinationv1.Lease {
		return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "w1", Namespace: "kube-node-lease"},
			Spec: coordinationv1.LeaseSpec{RenewTime: &metav1.MicroTime{Time: renewed}}}
	}
	node := func(ready corev1.ConditionStatus) *corev1.Node {
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "w1"},
			Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: ready}}}}
	}
	for _, tc := range []struct {
		name    string
		objects []runtime.Object
		later   []runtime.Object // updated while the wait runs (seen through its watches)
		want    string           // "" for back
	}{
		{name: "renewed and Ready while waiting", objects: []runtime.Object{lease(restart.Add(-time.Minute)), node(corev1.ConditionUnknown)},
			later: []runtime.Object{lease(restart.Add(time.Second)), node(corev1.ConditionTrue)}},
		{name: "back", objects: []runtime.Object{lease(restart.Add(2 * time.Second)), node(corev1.ConditionTrue)}},
		{name: "Lease not renewed since the restart", objects: []runtime.Object{lease(restart.Add(-time.Minute)), node(corev1.ConditionTrue)}, want: "has not renewed its node Lease"},
		{name: "renewed but not Ready", objects: []runtime.Object{lease(restart.Add(time.Second)), node(corev1.ConditionUnknown)}, want: "not Ready"},
		{name: "no Lease", objects: []runtime.Object{node(corev1.ConditionTrue)}, want: "has not renewed its node Lease"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs := fake.NewClientset(tc.objects...)
			timeout := 1200 * time.Millisecond
			updated := make(chan error, 1)
			if tc.later != nil {
				timeout = 10 * time.Second // the updates are what ends the wait
				go func() {
					ctx := context.Background()
					for _, o := range tc.later {
						var err error
						switch o := o.(type) {
						case *coordinationv1.Lease:
							_, err = cs.CoordinationV1().Leases(o.Namespace).Update(ctx, o, metav1.UpdateOptions{})
						case *corev1.Node:
							_, err = cs.CoreV1().Nodes().Update(ctx, o, metav1.UpdateOptions{})
						}
						if err != nil {
							updated <- err
							return
						}
					}
					updated <- nil
				}()
			} else {
				updated <- nil
			}
			err := waitKubeletReports(context.Background(), cs, "w1", restart, timeout)
			if uerr := <-updated; uerr != nil {
				t.Fatal(uerr)
			}
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("unexpected: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "kubelet of w1 not reporting within")):
				t.Errorf("got %v, want an error saying %q", err, tc.want)
			}
		})
	}
}
