package cluster

import (
	"context"
	"crypto/x509"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/certctl/certctl/pkg/noderequest"
)

// MoveNode is the endpoint's step for one node (its Job, its result read, the wait for its
// kubelet when the result says it was restarted), for the orchestrator's branches on what a
// node's Job returns (job_test.go).
func MoveNode(ctx context.Context, cs kubernetes.Interface, o EndpointOptions, node, from, to string) error {
	o.defaults()
	out := &NodeOutcome{Node: node}
	return o.moveNode(ctx, cs, out, noderequest.Request{Op: noderequest.SetServer, Server: to, From: from})
}

// EtcdForRotation is the check CARotate makes before anything changes for a rotation of cas
// (Runner.etcdForRotation), a member given settle after the Jobs on its node ended.
func EtcdForRotation(ctx context.Context, cs kubernetes.Interface, r Runner, settle time.Duration, cas []string) ([]EtcdMemberState, error) {
	r.defaults(time.Minute)
	r.etcdSettle = settle
	return r.etcdForRotation(ctx, cs, cas, false)
}

// SinceRestart is r.sinceRestart: from when a restarted kubelet's Lease renewal counts.
func SinceRestart(r JobResult, fallback time.Time) time.Time { return r.sinceRestart(fallback) }

// WorkerRotationSpec is what a rotation of the cluster CA (its Secret in place, newCert its new
// CA) does for a worker in phase: the Secret read (newCAs), the kubelet probe put into the Secret (kubeletProbe), then
// the worker's Job spec (nodeSpec).
func WorkerRotationSpec(ctx context.Context, cs kubernetes.Interface, namespace, phase string, newCert *x509.Certificate) (JobSpec, error) {
	o := &CARotateOptions{Phase: phase}
	o.Namespace = namespace
	sec, err := cs.CoreV1().Secrets(namespace).Get(ctx, CARotationSecret, metav1.GetOptions{})
	if err != nil {
		return JobSpec{}, err
	}
	r := &rotation{o: o, cs: cs, cas: []string{"ca"}, cluster: true, workers: []corev1.Node{{}}, newCert: newCert,
		secret: sec, step: phaseSteps[phaseKey{phase, false}]}
	if err := r.kubeletProbe(ctx); err != nil {
		return JobSpec{}, err
	}
	return r.nodeSpec("worker1", false), nil
}
