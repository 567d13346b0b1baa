// Package cluster holds the building blocks of `certctl cluster status`: one Job per node
// that runs `certctl inspect -o json` against the host's files (mounted read-only), the
// parsing of each Job's result, their aggregation over the cluster, and a Lease for mutual
// exclusion between certctl runs on different machines. It never prints.
package cluster

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Labels on every Job and pod certctl creates.
const (
	LabelApp  = "app.kubernetes.io/name"
	AppName   = "certctl"
	LabelNode = "certctl.io/node"
	LabelRun  = "certctl.io/run"
)

// JobOptions shape the per-node Jobs.
type JobOptions struct {
	Namespace string // default kube-system
	Image     string // required, e.g. localhost/certctl:dev
	Run       string // an id shared by the Jobs of one run (label certctl.io/run)
	// TTL after the Job finishes before the API server deletes it (default 10 minutes).
	TTL time.Duration
	// Deadline for the pod to finish once started (default 2 minutes).
	Deadline time.Duration
	// Args are certctl's arguments after --root /host (default: inspect -o json).
	Args []string
}

func (o *JobOptions) defaults() {
	if o.Namespace == "" {
		o.Namespace = "kube-system"
	}
	if o.TTL == 0 {
		o.TTL = 10 * time.Minute
	}
	if o.Deadline == 0 {
		o.Deadline = 2 * time.Minute
	}
	if len(o.Args) == 0 {
		o.Args = []string{"inspect", "-o", "json"}
	}
}

// JobName is the Job's name for node in run: a DNS-1123 label whatever the node's name
// (node names may be 253 characters long and contain dots).
func JobName(run, node string) string {
	sum := sha256.Sum256([]byte(node))
	base := strings.ToLower(strings.NewReplacer(".", "-", "_", "-").Replace(node))
	if len(base) > 30 {
		base = base[:30]
	}
	base = strings.Trim(base, "-")
	name := fmt.Sprintf("certctl-%s-%s-%s", run, base, hex.EncodeToString(sum[:])[:8])
	if len(name) > validation.DNS1123LabelMaxLength {
		name = name[:validation.DNS1123LabelMaxLength]
	}
	return strings.Trim(name, "-")
}

// NodeJob is the Job that inspects node: pinned to it with nodeName (no scheduler needed,
// so it runs on a cordoned node too), tolerating every taint (control-plane, NoExecute,
// not-ready), the host's / mounted read-only at /host, no service-account token, removed
// by the API server TTL after it finishes, never retried (a failure is a result).
func NodeJob(node string, o JobOptions) (*batchv1.Job, error) {
	o.defaults()
	if o.Image == "" {
		return nil, fmt.Errorf("job for node %s: an image is required (--image)", node)
	}
	if o.Run == "" || len(validation.IsDNS1123Label(o.Run)) > 0 {
		return nil, fmt.Errorf("job for node %s: run id %q is not a DNS-1123 label", node, o.Run)
	}
	ttl := int32(o.TTL / time.Second)
	deadline := int64(o.Deadline / time.Second)
	backoff := int32(0)
	no, yes := false, true
	root := int64(0)
	labels := map[string]string{LabelApp: AppName, LabelRun: o.Run}
	if len(validation.IsValidLabelValue(node)) == 0 {
		labels[LabelNode] = node
	}
	hostPathDir := corev1.HostPathDirectory
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: JobName(o.Run, node), Namespace: o.Namespace, Labels: labels,
			Annotations: map[string]string{"certctl.io/node": node}},
		Spec: batchv1.JobSpec{
			BackoffLimit:            &backoff,
			ActiveDeadlineSeconds:   &deadline,
			TTLSecondsAfterFinished: &ttl,
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					NodeName:                     node,
					RestartPolicy:                corev1.RestartPolicyNever,
					AutomountServiceAccountToken: &no,
					Tolerations:                  []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
					PriorityClassName:            "system-node-critical",
					Containers: []corev1.Container{{
						Name:    "certctl",
						Image:   o.Image,
						Command: []string{"/usr/local/bin/certctl"},
						Args:    append([]string{"--root", "/host"}, o.Args...),
						// Reading private keys needs root; nothing is written.
						SecurityContext: &corev1.SecurityContext{
							RunAsUser: &root, ReadOnlyRootFilesystem: &yes, AllowPrivilegeEscalation: &no,
						},
						VolumeMounts:             []corev1.VolumeMount{{Name: "host", MountPath: "/host", ReadOnly: true}},
						TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
					}},
					Volumes: []corev1.Volume{{Name: "host", VolumeSource: corev1.VolumeSource{
						HostPath: &corev1.HostPathVolumeSource{Path: "/", Type: &hostPathDir}}}},
				},
			},
		},
	}, nil
}
