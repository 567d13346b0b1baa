package cluster

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// EtcdMemberState is what the API says of one control-plane node's stacked etcd member: its
// static pod's mirror pod (kube-system, component=etcd) as the node's kubelet reports it.
type EtcdMemberState struct {
	Node string `json:"node"`
	Pod  string `json:"pod,omitempty"` // "" when the node has no etcd mirror pod
	// Ready is the pod's Ready condition: the kubelet's readiness probe of etcd (kubeadm's
	// probes /readyz on the member's metrics port) passing.
	Ready bool `json:"ready"`
	// Why says what is wrong when not Ready: the condition's reason and message, or that the
	// pod is missing.
	Why string `json:"why,omitempty"`
}

func (s EtcdMemberState) String() string {
	if s.Ready {
		return s.Node + ": ready"
	}
	return s.Node + ": " + s.Why
}

// EtcdNotReadyError refuses an operation that restarts etcd members while one of them is not
// ready: restarting another could leave the cluster below quorum (3 members tolerate one down,
// not two). Members holds every control-plane node's state, the ready ones too.
type EtcdNotReadyError struct {
	Members []EtcdMemberState
}

// NotReady returns the members that are not ready.
func (e *EtcdNotReadyError) NotReady() []EtcdMemberState {
	var out []EtcdMemberState
	for _, m := range e.Members {
		if !m.Ready {
			out = append(out, m)
		}
	}
	return out
}

func (e *EtcdNotReadyError) Error() string {
	var all []string
	for _, m := range e.Members {
		all = append(all, m.String())
	}
	names := make([]string, 0, len(e.NotReady()))
	for _, m := range e.NotReady() {
		names = append(names, m.Node)
	}
	return fmt.Sprintf("the etcd member of %s is not ready, and this operation restarts etcd on every control-plane node: one more member down could cost the quorum (members: %s). Bring the member back (kubectl -n kube-system describe pod etcd-%s; its kubelet's log), then run the same command again; nothing was changed",
		strings.Join(names, ", "), strings.Join(all, "; "), names[0])
}

// CheckEtcdMembers reads the state of each control-plane node's etcd member from its mirror
// pod and returns *EtcdNotReadyError when one is missing or not ready. A cluster whose
// control-plane nodes have no etcd pod at all (external etcd) has nothing to check: nil, with
// no states. It is the cluster-wide check made before anything changes; each node's Job checks
// the members itself again (etcd's own member status) right before its etcd restarts.
func CheckEtcdMembers(ctx context.Context, cs kubernetes.Interface, cps []corev1.Node) ([]EtcdMemberState, error) {
	pods, err := cs.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{LabelSelector: "component=etcd"})
	if err != nil {
		return nil, fmt.Errorf("list the etcd pods in kube-system (component=etcd): %w", err)
	}
	if len(pods.Items) == 0 {
		return nil, nil // external etcd: no member restarts with a node
	}
	byNode := map[string]*corev1.Pod{}
	for i := range pods.Items {
		p := &pods.Items[i]
		byNode[p.Spec.NodeName] = p
	}
	var states []EtcdMemberState
	bad := false
	for _, n := range cps {
		st := EtcdMemberState{Node: n.Name}
		p := byNode[n.Name]
		switch {
		case p == nil:
			st.Why = "no etcd pod (its static pod's manifest gone, or its kubelet not reporting)"
		case p.DeletionTimestamp != nil:
			st.Pod, st.Why = p.Name, "its etcd pod is being deleted"
		default:
			st.Pod = p.Name
			st.Ready, st.Why = podReady(p)
		}
		bad = bad || !st.Ready
		states = append(states, st)
	}
	if bad {
		return states, &EtcdNotReadyError{Members: states}
	}
	return states, nil
}

// podReady is the pod's Ready condition, and what it says when false.
func podReady(p *corev1.Pod) (bool, string) {
	for _, c := range p.Status.Conditions {
		if c.Type != corev1.PodReady {
			continue
		}
		if c.Status == corev1.ConditionTrue {
			return true, ""
		}
		why := "not ready"
		if c.Reason != "" {
			why += " (" + c.Reason + ")"
		}
		if c.Message != "" {
			why += ": " + c.Message
		}
		return false, why
	}
	return false, "not ready (no Ready condition: its kubelet has not reported it yet)"
}

// CheckEtcdForRotation is CheckEtcdMembers for a rotation of cas: only etcd-ca's phases restart
// etcd, and a dry run restarts nothing (nil, nil).
func CheckEtcdForRotation(ctx context.Context, cs kubernetes.Interface, cas []string, dryRun bool) ([]EtcdMemberState, error) {
	if dryRun || !slices.Contains(cas, "etcd-ca") {
		return nil, nil
	}
	cps, _, err := splitNodes(ctx, cs)
	if err != nil {
		return nil, err
	}
	return CheckEtcdMembers(ctx, cs, cps)
}
