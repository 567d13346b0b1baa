package kubeletserving

import (
	"fmt"

	"github.com/certctl/certctl/templates"
	"k8s.io/apimachinery/pkg/util/validation"
)

// ManifestOptions shape the in-cluster approver's manifest.
type ManifestOptions struct {
	Image       string // an image with certctl as its entrypoint; required
	Namespace   string // default kube-system
	Name        string // default certctl-kubelet-serving-approver (also the Lease's name)
	Replicas    int    // default 2
	MetricsPort int    // default 9402
	DNSPatterns []string
	NoDeny      bool
}

// Manifest renders templates/approver/kubelet-serving-approver.yaml: ServiceAccount, the
// minimal RBAC (read/watch CSRs and Nodes, update the approval of CSRs for the
// kubernetes.io/kubelet-serving signer only, its own Lease) and a Deployment running
// `certctl kubelet-serving approve --watch --leader-elect`.
func Manifest(o ManifestOptions) ([]byte, error) {
	if o.Image == "" {
		return nil, fmt.Errorf("--image is required: an image with certctl at its entrypoint")
	}
	if o.Namespace == "" {
		o.Namespace = ApproverNamespace
	}
	if o.Name == "" {
		o.Name = ApproverName
	}
	if o.Replicas == 0 {
		o.Replicas = 2
	}
	if o.MetricsPort == 0 {
		o.MetricsPort = 9402
	}
	for _, v := range []string{o.Namespace, o.Name} {
		if errs := validation.IsDNS1123Label(v); len(errs) > 0 {
			return nil, fmt.Errorf("%q is not a valid name: %s", v, errs[0])
		}
	}
	if o.Replicas < 1 || o.MetricsPort < 1 || o.MetricsPort > 65535 {
		return nil, fmt.Errorf("replicas %d / metrics port %d out of range", o.Replicas, o.MetricsPort)
	}
	var extra []string
	for _, p := range o.DNSPatterns {
		extra = append(extra, "--dns-pattern="+p)
	}
	if o.NoDeny {
		extra = append(extra, "--no-deny")
	}
	return templates.Render("approver/kubelet-serving-approver.yaml", map[string]any{
		"Image": o.Image, "Namespace": o.Namespace, "Name": o.Name, "Replicas": o.Replicas, "MetricsPort": o.MetricsPort, "ExtraArgs": extra,
	})
}
