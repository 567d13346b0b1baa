package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
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
	// started is when the pod's etcd container started running, as its kubelet reports it (zero
	// when it does not run): a member not ready shortly after is starting, not down.
	started time.Time
	// unreported: the pod has no Ready condition, its kubelet has not reported it yet (a mirror
	// pod made again after its static pod changed, or a kubelet that just reached its apiserver).
	unreported bool
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
	down := e.NotReady()
	return fmt.Sprintf("the etcd member of %s is not ready, and this operation restarts etcd on every control-plane node: one more member down could cost the quorum (members: %s). Bring the member back (kubectl -n kube-system describe pod etcd-%s; its kubelet's log), then run the same command again; nothing was changed",
		memberNodes(down), memberList(e.Members), down[0].Node)
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
			st.started = etcdStarted(p)
			st.unreported = !hasCondition(p, corev1.PodReady)
		}
		bad = bad || !st.Ready
		states = append(states, st)
	}
	if bad {
		return states, &EtcdNotReadyError{Members: states}
	}
	return states, nil
}

// etcdStarted is when the etcd container of p started running (zero when it is not running).
func etcdStarted(p *corev1.Pod) time.Time {
	for _, c := range p.Status.ContainerStatuses {
		if c.Name == "etcd" && c.State.Running != nil {
			return c.State.Running.StartedAt.Time
		}
	}
	return time.Time{}
}

// starting names the members of ms that are not ready and either not reported yet by their
// kubelet or whose etcd container started running less than settle before now: starting up (its
// readiness probe not passed yet, or its state not posted yet), not down.
func starting(ms []EtcdMemberState, now time.Time, settle time.Duration) []string {
	var out []string
	for _, m := range ms {
		if !m.Ready && (m.unreported || !m.started.IsZero() && now.Sub(m.started) < settle) {
			out = append(out, m.Node)
		}
	}
	return out
}

// startingWait is how long members that are starting are waited for: settle, or twice that
// when one of ms is not reported yet. Its kubelet may be the one whose apiserver was down (a
// rollback restarts the node's etcd and apiserver): its watch of the node's pods then comes
// back after a back-off of up to about a minute (client-go's reflector: 30 s at most, jittered
// up to twice that), and only then does it see the mirror pod it made and post the pod's
// status. Seen on the lab (2026-12-06): cp2's etcd mirror pod made again 0.1 s after its
// apiserver came back, its status not posted 1 min later.
func startingWait(ms []EtcdMemberState, settle time.Duration) time.Duration {
	for _, m := range ms {
		if !m.Ready && m.unreported {
			return 2 * settle
		}
	}
	return settle
}

// hasCondition says whether the pod's status carries a condition of type ct.
func hasCondition(p *corev1.Pod, ct corev1.PodConditionType) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == ct {
			return true
		}
	}
	return false
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

// etcdSettle is how long a member is given, after the last certctl Job on its node ended, for
// its kubelet to report the etcd pod ready again (Runner.etcdForRotation).
const etcdSettle = time.Minute

// etcdForRotation is CheckEtcdForRotation for a run that may follow a killed one. A member
// not ready on a node where a certctl Job still runs is that Job's doing: an earlier run of the
// command was killed while its Job restarted the node's etcd (seen in CI: the run after a
// killed trust found cp1's etcd pod gone and refused, while the Job it would have adopted was
// bringing it back). Such a member is waited for, polling the API, until the Jobs on its node
// have ended (their deadline bounds it) and its pod is ready, or etcdSettle after they ended;
// then the check decides. So is a member that is starting, for at most etcdSettle (twice that
// when not reported: startingWait): its etcd
// container started running less than etcdSettle ago, or its pod has no Ready condition yet (the
// run before restarted it, or rolled its node back: seen on the lab, the same command run again
// at once found the member 14 s into its start, or its mirror pod not reported yet by a kubelet
// whose apiserver had been down). A member down otherwise (no pod, its container not running,
// or running long and not ready) is refused at once.
func (r *Runner) etcdForRotation(ctx context.Context, cs kubernetes.Interface, cas []string, dryRun bool) ([]EtcdMemberState, error) {
	states, err := CheckEtcdForRotation(ctx, cs, cas, dryRun)
	var nr *EtcdNotReadyError
	if !errors.As(err, &nr) {
		return states, err
	}
	settle := r.etcdSettle
	if settle <= 0 {
		settle = etcdSettle
	}
	var quiet time.Time     // when the not-ready members' nodes were first seen without a running Job
	var startWait time.Time // until when members that are starting are waited for
	waited := false
	perr := wait.PollUntilContextCancel(ctx, 2*time.Second, true, func(ctx context.Context) (bool, error) {
		if waited {
			if states, err = CheckEtcdForRotation(ctx, cs, cas, dryRun); !errors.As(err, &nr) {
				if err == nil {
					r.logf("the etcd members are ready again: %s", memberList(states))
				}
				return true, nil
			}
		}
		busy, until, lerr := r.runningJobs(ctx, cs, nr.NotReady())
		if lerr != nil {
			err = errors.Join(err, lerr)
			return true, nil
		}
		now := time.Now()
		up := starting(nr.NotReady(), now, settle)
		upFor := startingWait(nr.NotReady(), settle)
		if len(up) > 0 && startWait.IsZero() {
			startWait = now.Add(upFor)
		}
		switch {
		case len(busy) > 0 && now.Before(until.Add(settle)):
			quiet = time.Time{}
		case len(busy) > 0:
			return true, nil // a Job past its deadline and settle: the check decides
		case !startWait.IsZero() && now.Before(startWait):
			quiet = time.Time{}
		case !startWait.IsZero():
			return true, nil // seen starting settle ago, still not ready: the check decides
		case !waited:
			return true, nil // nothing of certctl's runs there: refused at once
		case quiet.IsZero():
			quiet = now
		case now.Sub(quiet) > settle:
			return true, nil
		}
		if !waited {
			if len(busy) > 0 {
				r.logf("the etcd member of %s is not ready while certctl's Job %s runs there (an earlier run of this command, killed?): waiting for it to end and the member to be ready again (its deadline %s, then %s)",
					memberNodes(nr.NotReady()), strings.Join(busy, ", "), until.UTC().Format(time.RFC3339), settle)
			} else {
				r.logf("the etcd member of %s is starting (its container started less than %s ago, or its kubelet has not reported it yet) and is not ready: waiting up to %s for it", strings.Join(up, ", "), settle, upFor)
			}
			waited = true
		}
		return false, nil
	})
	if perr != nil {
		return states, errors.Join(err, perr)
	}
	return states, err
}

// runningJobs lists the certctl Jobs (any command's) that have not ended on the nodes of
// members, and the latest deadline among them (creation + activeDeadlineSeconds).
func (r *Runner) runningJobs(ctx context.Context, cs kubernetes.Interface, members []EtcdMemberState) ([]string, time.Time, error) {
	var busy []string
	var until time.Time
	for _, m := range members {
		jobs, err := cs.BatchV1().Jobs(r.Namespace).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(labels.Set{LabelName: "certctl", LabelNode: m.Node}).String()})
		if err != nil {
			return nil, until, fmt.Errorf("list the certctl jobs of node %s in namespace %s (is one of an earlier run restarting its etcd?): %w", m.Node, r.Namespace, err)
		}
		for i := range jobs.Items {
			j := &jobs.Items[i]
			if j.DeletionTimestamp != nil || jobHas(j, batchv1.JobComplete, batchv1.JobFailed) {
				continue
			}
			busy = append(busy, j.Name)
			end := j.CreationTimestamp.Time
			if d := j.Spec.ActiveDeadlineSeconds; d != nil {
				end = end.Add(time.Duration(*d) * time.Second)
			}
			if end.After(until) {
				until = end
			}
		}
	}
	return busy, until, nil
}

func memberNodes(ms []EtcdMemberState) string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Node)
	}
	return strings.Join(out, ", ")
}

func memberList(ms []EtcdMemberState) string {
	var out []string
	for _, m := range ms {
		out = append(out, m.String())
	}
	return strings.Join(out, "; ")
}
