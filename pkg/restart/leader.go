package restart

import (
	"context"
	"fmt"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/certctl/certctl/pkg/pki"
)

// leaderLeases are the leader-election Leases of the components that elect a leader, by default
// (their --leader-elect-resource-name).
var leaderLeases = map[string]string{
	pki.CompControllerManager: "kube-controller-manager",
	pki.CompScheduler:         "kube-scheduler",
}

// leaderWait bounds the release of a leader Lease: it saves seconds, it must not cost them.
const leaderWait = 2 * time.Second

// leaderRelease is what releaseLeader did.
type leaderRelease struct {
	Lease    string // namespace/name
	Holder   string // the identity that held it
	Released bool
}

// releaseLeader gives up the leader-election Lease of a component whose container on this node
// certctl has just stopped, when this node's instance held it: what the component does itself on
// a graceful exit (client-go's ReleaseOnCancel; the scheduler does, the controller-manager only
// behind the alpha gate ControllerManagerReleaseLeaderElectionLockOnExit of 1.36). Without it
// the other nodes' instances wait out the Lease (15 s): no controller runs meanwhile, so a Job
// the next node's work needs gets no pod. The holder is this node's when its identity is
// "<hostname>_<uuid>" with this host's name (how both components name themselves); the update
// is guarded by the Lease's resourceVersion, so a Lease another instance took meanwhile is left
// alone. It talks with the component's own kubeconfig (its identity may update its Lease).
func releaseLeader(ctx context.Context, l pki.Layout, c *component, hostname string) (*leaderRelease, error) {
	name, ok := leaderLeases[c.name]
	if !ok || c.flags["leader-elect"] == "false" || c.flags["kubeconfig"] == "" || hostname == "" {
		return nil, nil
	}
	if n := c.flags["leader-elect-resource-name"]; n != "" {
		name = n
	}
	ns := "kube-system"
	if n := c.flags["leader-elect-resource-namespace"]; n != "" {
		ns = n
	}
	out := &leaderRelease{Lease: ns + "/" + name}
	kubeconfig := pki.UnderRoot(l.Root, c.flags["kubeconfig"])
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return out, fmt.Errorf("read %s: %w", kubeconfig, err)
	}
	cfg.Timeout = leaderWait
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return out, fmt.Errorf("%s: %w", kubeconfig, err)
	}
	ctx, cancel := context.WithTimeout(ctx, leaderWait)
	defer cancel()
	lease, err := cs.CoordinationV1().Leases(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return out, fmt.Errorf("get lease %s: %w", out.Lease, err)
	}
	if lease.Spec.HolderIdentity != nil {
		out.Holder = *lease.Spec.HolderIdentity
	}
	if !strings.HasPrefix(out.Holder, hostname+"_") {
		return out, nil
	}
	now := metav1.NewMicroTime(time.Now())
	one, empty := int32(1), ""
	lease.Spec.HolderIdentity, lease.Spec.LeaseDurationSeconds = &empty, &one
	lease.Spec.AcquireTime, lease.Spec.RenewTime = &now, &now
	if _, err := cs.CoordinationV1().Leases(ns).Update(ctx, lease, metav1.UpdateOptions{}); err != nil {
		return out, fmt.Errorf("release lease %s: %w", out.Lease, err)
	}
	out.Released = true
	return out, nil
}
