package inspect_test

import (
	"context"
	"slices"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/inspect"
	"github.com/certctl/certctl/pkg/pki"
)

func codesOf(rep *inspect.Report, name string) []string {
	var out []string
	for _, c := range rep.Certificates {
		if c.Name == name {
			for _, f := range c.Findings {
				out = append(out, f.Code)
			}
		}
	}
	return out
}

// TestKubeletAPIAccess, on a real apiserver with its RBAC: the apiserver-kubelet-client
// certificate kubeadm 1.37 writes (CN only) may not use the kubelet API until the
// ClusterRoleBinding kubeadm:apiserver-kubelet-client exists (kubeadm join --control-plane
// does not make it): inspect reports kubelet-api-forbidden with the command that makes it,
// and nothing once it exists. The certificate of kubeadm 1.35.4 (O=kubeadm:cluster-admins)
// is allowed through its group either way.
func TestKubeletAPIAccess(t *testing.T) {
	tr := testenv.KubeadmTree(t, testenv.TreeOptions{})
	cp := testenv.StartControlPlane(t, testenv.ControlPlaneOptions{PKIDir: tr.Layout.PKIDir, KubeconfigDir: tr.Layout.KubeconfigDir})
	cs := cp.Clientset(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	review := inspect.SubjectAccessReviewer(cs)

	check := func(l pki.Layout) *inspect.Report {
		t.Helper()
		rep := inspect.Diagnose(pki.Load(l, pki.Default()), inspect.Options{})
		if err := inspect.CheckKubeletAPIAccess(ctx, review, rep); err != nil {
			t.Fatal(err)
		}
		return rep
	}
	rep := check(tr.Layout)
	codes := codesOf(rep, "apiserver-kubelet-client")
	wantForbidden := testenv.AtLeast(t, tr.Version, "v1.37")
	if got := slices.Contains(codes, inspect.CodeKubeletAPIForbidden); got != wantForbidden {
		t.Fatalf("kubeadm %s, no binding: findings %v, want %s: %v", tr.Version, codes, inspect.CodeKubeletAPIForbidden, wantForbidden)
	}
	if wantForbidden && rep.Worst() != inspect.SevCritical {
		t.Errorf("worst %s, want critical", rep.Worst())
	}

	older := testenv.KubeadmTree(t, testenv.TreeOptions{Version: "v1.35.4"})
	if codes := codesOf(check(older.Layout), "apiserver-kubelet-client"); slices.Contains(codes, inspect.CodeKubeletAPIForbidden) {
		t.Errorf("kubeadm v1.35.4's certificate (O=kubeadm:cluster-admins): %v, want allowed", codes)
	}

	// What kubeadm init makes, and what the finding's remedy creates.
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: inspect.KubeletAPIBinding},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "system:kubelet-api-admin"},
		Subjects:   []rbacv1.Subject{{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: "kube-apiserver-kubelet-client"}},
	}
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// RBAC is read from the apiserver's informer cache: poll until the binding takes effect.
	deadline := time.Now().Add(30 * time.Second)
	for {
		codes := codesOf(check(tr.Layout), "apiserver-kubelet-client")
		if !slices.Contains(codes, inspect.CodeKubeletAPIForbidden) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("binding %s made, still %v", inspect.KubeletAPIBinding, codes)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
