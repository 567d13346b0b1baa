package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"k8s.io/client-go/kubernetes"

	"github.com/certctl/certctl/pkg/kubeadmconfig"
)

// KubeadmConfigChange is what a cluster renewal's --san does to kube-system/kubeadm-config:
// done once by the command, before the first node, never by the nodes' Jobs (they run
// certctl renew --skip-kubeadm-config).
type KubeadmConfigChange struct {
	Requested []kubeadmconfig.Edit `json:"requested"`
	// Added: what the ConfigMap lacked (a dry run: what it would add). Empty when it had
	// every SAN already.
	Added  []kubeadmconfig.Edit `json:"added,omitempty"`
	DryRun bool                 `json:"dryRun,omitempty"`
}

// String is one line for the report.
func (c *KubeadmConfigChange) String() string {
	cm := kubeadmconfig.Namespace + "/" + kubeadmconfig.Name
	switch {
	case len(c.Added) == 0:
		return fmt.Sprintf("%s: already has %s", cm, edits(c.Requested, "in"))
	case c.DryRun:
		return fmt.Sprintf("%s: would add %s (dry run: not changed)", cm, edits(c.Added, "to"))
	}
	return fmt.Sprintf("%s: added %s", cm, edits(c.Added, "to"))
}

func edits(es []kubeadmconfig.Edit, prep string) string {
	var parts []string
	for _, e := range es {
		parts = append(parts, fmt.Sprintf("%s %s ClusterConfiguration.%s", strings.Join(e.SANs, ", "), prep, e.Field))
	}
	return strings.Join(parts, "; ")
}

// kubeadmConfigEdits are the kubeadm-config fields a renewal of names with sans touches, as
// certctl renew on a node decides: --san goes to the apiserver certificate unless names
// name serving certificates (etcd-server, etcd-peer).
func kubeadmConfigEdits(names, sans []string) []kubeadmconfig.Edit {
	if len(sans) == 0 {
		return nil
	}
	if len(names) == 0 || slices.Contains(names, "all") {
		names = []string{"apiserver"}
	}
	var out []kubeadmconfig.Edit
	for _, n := range names {
		if f, ok := kubeadmconfig.FieldFor(n); ok {
			out = append(out, kubeadmconfig.Edit{Field: f, SANs: sans})
		}
	}
	return out
}

// UpdateKubeadmConfig records sans in kube-system/kubeadm-config for the certificates names
// renews (nil when there is nothing to record): read, edited and updated with its
// resourceVersion, again from a fresh read on a conflict (retry.RetryOnConflict), so a
// concurrent change is never overwritten. dryRun only reads.
func UpdateKubeadmConfig(ctx context.Context, cs kubernetes.Interface, names, sans []string, dryRun bool) (*KubeadmConfigChange, error) {
	req := kubeadmConfigEdits(names, sans)
	if len(req) == 0 {
		return nil, nil
	}
	c := &KubeadmConfigChange{Requested: req, DryRun: dryRun}
	if dryRun {
		doc, _, err := kubeadmconfig.Read(ctx, cs)
		if err != nil {
			return nil, kubeadmConfigErr(err)
		}
		if c.Added, err = kubeadmconfig.Missing(doc, req); err != nil {
			return nil, kubeadmConfigErr(err)
		}
		return c, nil
	}
	res, err := kubeadmconfig.Apply(ctx, cs, req)
	if err != nil {
		return nil, kubeadmConfigErr(err)
	}
	c.Added = res.Added
	return c, nil
}

func kubeadmConfigErr(err error) error {
	hint := "fix that and run again, or pass --skip-kubeadm-config to renew without recording the SAN (certctl kubeadm-config add-san records it later)"
	if errors.Is(err, kubeadmconfig.ErrNotFound) {
		hint = "pass --skip-kubeadm-config to renew without recording the SAN"
	}
	return fmt.Errorf("record --san in %s/%s (nothing renewed yet): %w; %s", kubeadmconfig.Namespace, kubeadmconfig.Name, err, hint)
}
