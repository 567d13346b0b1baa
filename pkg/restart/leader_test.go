package restart

import (
	"context"
	"testing"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/pki"
)

// TestReleaseLeader: on a real apiserver, with the controller-manager's own kubeconfig (its
// RBAC: the bootstrap role that lets it update its Lease), the Lease of this host's stopped
// instance is released (no holder, 1 s), another host's is left alone, and a component that
// elects no leader is not asked.
func TestReleaseLeader(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and kube-apiserver")
	}
	tr := testenv.KubeadmTree(t, testenv.TreeOptions{})
	cp := testenv.StartControlPlane(t, testenv.ControlPlaneOptions{PKIDir: tr.Layout.PKIDir, KubeconfigDir: tr.Layout.KubeconfigDir})
	cs := cp.Clientset(t)
	ctx := context.Background()
	kcm := &component{name: pki.CompControllerManager, flags: map[string]string{"kubeconfig": cp.Kubeconfig(t, "controller-manager.conf"), "leader-elect": "true"}}
	tests := []struct {
		name, holder string
		comp         *component
		want         bool // released
	}{
		{"this host's instance", "master-1_3b9c", kcm, true},
		{"another host's instance", "master-2_77aa", kcm, false},
		{"a host whose name only begins like this one", "master-10_77aa", kcm, false},
		{"leader election off", "master-1_3b9c", &component{name: pki.CompControllerManager, flags: map[string]string{"kubeconfig": kcm.flags["kubeconfig"], "leader-elect": "false"}}, false},
		{"etcd elects no leader this way", "master-1_3b9c", &component{name: pki.CompEtcd, flags: map[string]string{}}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_ = cs.CoordinationV1().Leases("kube-system").Delete(ctx, "kube-controller-manager", metav1.DeleteOptions{})
			lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "kube-controller-manager", Namespace: "kube-system"},
				Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(tc.holder), LeaseDurationSeconds: ptr.To[int32](15),
					AcquireTime: ptr.To(metav1.NowMicro()), RenewTime: ptr.To(metav1.NowMicro())}}
			if _, err := cs.CoordinationV1().Leases("kube-system").Create(ctx, lease, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			r, err := releaseLeader(ctx, pki.Layout{}, tc.comp, "master-1") // the kubeconfig path is absolute, no root
			if err != nil {
				t.Fatal(err)
			}
			got, err := cs.CoordinationV1().Leases("kube-system").Get(ctx, "kube-controller-manager", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			released := *got.Spec.HolderIdentity == "" && *got.Spec.LeaseDurationSeconds == 1
			if released != tc.want || (r != nil && r.Released) != tc.want {
				t.Errorf("holder %s: lease now %q for %ds (report %+v), want released=%v", tc.holder, *got.Spec.HolderIdentity, *got.Spec.LeaseDurationSeconds, r, tc.want)
			}
		})
	}
}
