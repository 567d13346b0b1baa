package testenv

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// SetNodeReady sets the Node's Ready condition as its kubelet (status True or False) or the
// node controller, once the kubelet has stopped posting (Unknown), would: with no kubelet in
// a test's control plane, the test says whether the node is up.
func SetNodeReady(t testing.TB, cs kubernetes.Interface, node string, status corev1.ConditionStatus) {
	t.Helper()
	ctx := context.Background()
	n, err := cs.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("node %s: %v", node, err)
	}
	why := map[corev1.ConditionStatus][2]string{ // reason, message
		corev1.ConditionTrue:    {"KubeletReady", "kubelet is posting ready status"},
		corev1.ConditionFalse:   {"KubeletNotReady", "container runtime network not ready"},
		corev1.ConditionUnknown: {"NodeStatusUnknown", "Kubelet stopped posting node status."},
	}[status]
	reason, msg := why[0], why[1]
	now := metav1.Now()
	cond := corev1.NodeCondition{Type: corev1.NodeReady, Status: status, Reason: reason, Message: msg, LastHeartbeatTime: now, LastTransitionTime: now}
	replaced := false
	for i, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			n.Status.Conditions[i], replaced = cond, true
		}
	}
	if !replaced {
		n.Status.Conditions = append(n.Status.Conditions, cond)
	}
	if _, err := cs.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("node %s: set Ready %s: %v", node, status, err)
	}
}
