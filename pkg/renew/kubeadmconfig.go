package renew

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/certctl/certctl/pkg/kubeadmconfig"
	"k8s.io/client-go/kubernetes"
)

// KubeadmConfigOptions say how to reach the cluster's kube-system/kubeadm-config, where
// --san is recorded too (apiServer.certSANs, etcd.local.serverCertSANs/peerCertSANs) so that
// kubeadm does not drop the SAN the next time it makes the certificate.
type KubeadmConfigOptions struct {
	// Client talks to the API server with admin.conf. Nil with ClientErr set: the API could
	// not even be configured (no admin.conf); the plan warns and says what to run later.
	Client    kubernetes.Interface
	ClientErr error
	// Timeout bounds the read at plan time and the write at apply time
	// (default kubeadmconfig.DefaultTimeout).
	Timeout time.Duration
}

// KubeadmConfigStep is the plan's step for kubeadm-config.
type KubeadmConfigStep struct {
	Requested []kubeadmconfig.Edit // what --san asks for, per field
	ToAdd     []kubeadmconfig.Edit // what the ConfigMap lacks, read at plan time
	// Err is why the ConfigMap could not be read (API unreachable, not a kubeadm cluster):
	// the step then writes nothing and Later says what to run once it can.
	Err   error
	Later string

	client  kubernetes.Interface
	timeout time.Duration
}

// KubeadmConfigResult is what Apply did to kubeadm-config.
type KubeadmConfigResult struct {
	Added []kubeadmconfig.Edit // written; empty when it already had every SAN
	Err   error                // nothing was written; run Later
	Later string
}

// Changes reports whether the step would write.
func (s *KubeadmConfigStep) Changes() bool { return s != nil && s.Err == nil && len(s.ToAdd) > 0 }

// planKubeadmConfig reads the ConfigMap (read only: a dry run changes nothing) and works out
// which of the requested SANs it lacks.
func planKubeadmConfig(o *KubeadmConfigOptions, targets []string, sans []string) *KubeadmConfigStep {
	if o == nil || len(sans) == 0 {
		return nil
	}
	step := &KubeadmConfigStep{client: o.Client, timeout: o.Timeout}
	if step.timeout <= 0 {
		step.timeout = kubeadmconfig.DefaultTimeout
	}
	for _, n := range targets {
		if f, ok := kubeadmconfig.FieldFor(n); ok {
			step.Requested = append(step.Requested, kubeadmconfig.Edit{Field: f, SANs: sans})
		}
	}
	if len(step.Requested) == 0 {
		return nil
	}
	step.Later = kubeadmconfig.LaterCommand(step.Requested)
	if o.Client == nil {
		step.Err = o.ClientErr
		if step.Err == nil {
			step.Err = fmt.Errorf("no client for the API server")
		}
		return step
	}
	ctx, cancel := context.WithTimeout(context.Background(), step.timeout)
	defer cancel()
	doc, _, err := kubeadmconfig.Read(ctx, o.Client)
	if err != nil {
		step.Err = err
		return step
	}
	if step.ToAdd, err = kubeadmconfig.Missing(doc, step.Requested); err != nil {
		step.Err = err
	}
	return step
}

// apply writes the step after the certificates were renewed. A failure does not undo the
// renewal (the files are right; the ConfigMap is what kubeadm reads next time): it is
// reported with the command to run later.
func (s *KubeadmConfigStep) apply() *KubeadmConfigResult {
	if s == nil {
		return nil
	}
	res := &KubeadmConfigResult{Later: s.Later, Err: s.Err}
	if !s.Changes() {
		return res
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	r, err := kubeadmconfig.Apply(ctx, s.client, s.Requested)
	if err != nil {
		res.Err = err
		return res
	}
	res.Added = r.Added
	return res
}

const configMapName = kubeadmconfig.Namespace + "/" + kubeadmconfig.Name

func editsString(edits []kubeadmconfig.Edit) string {
	var parts []string
	for _, e := range edits {
		parts = append(parts, fmt.Sprintf("%s to ClusterConfiguration.%s", strings.Join(e.SANs, ", "), e.Field))
	}
	return strings.Join(parts, "; ")
}

// render writes the step's lines under the plan table.
func (s *KubeadmConfigStep) render(w io.Writer) {
	if s == nil {
		return
	}
	cm := configMapName
	switch {
	case s.Err != nil:
		fmt.Fprintf(w, "warning: %s will not be updated: %v\n  kubeadm makes certificates from it (next control-plane join, 'kubeadm init phase certs', upgrade) and would drop the SAN again;\n  once the API server is reachable run: %s\n", cm, s.Err, s.Later)
	case len(s.ToAdd) == 0:
		fmt.Fprintf(w, "%s: already has %s\n", cm, editsString(s.Requested))
	default:
		fmt.Fprintf(w, "%s: add %s (so kubeadm keeps the SAN)\n", cm, editsString(s.ToAdd))
	}
}

// Render writes what Apply did to kubeadm-config.
func (r *KubeadmConfigResult) Render(w io.Writer) {
	if r == nil {
		return
	}
	cm := configMapName
	switch {
	case r.Err != nil:
		fmt.Fprintf(w, "warning: %s was not updated: %v\n  once the API server is reachable run: %s\n", cm, r.Err, r.Later)
	case len(r.Added) > 0:
		fmt.Fprintf(w, "%s: added %s\n", cm, editsString(r.Added))
	}
}
