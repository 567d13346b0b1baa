package inspect

import (
	"context"
	"fmt"
	"slices"
	"strings"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// KubeletAPIBinding is the ClusterRoleBinding kubeadm makes (init, upgrade apply) so that the
// apiserver's kubelet client certificate, which has no O from kubeadm 1.37 on (and 1.35.5,
// 1.36.1: kubernetes#138957, kubeadm#3310), may use the kubelet API.
const KubeletAPIBinding = "kubeadm:apiserver-kubelet-client"

// apiserverKubeletClient is the certificate's name in the inventory (pki.Default).
const apiserverKubeletClient = "apiserver-kubelet-client"

// kubeletAPIAccess is what the apiserver does on a kubelet for kubectl logs and exec: the
// verbs of the nodes/proxy subresource that the ClusterRole system:kubelet-api-admin grants.
var kubeletAPIAccess = []authorizationv1.ResourceAttributes{
	{Verb: "get", Resource: "nodes", Subresource: "proxy"},
	{Verb: "create", Resource: "nodes", Subresource: "proxy"},
}

// AccessReviewer answers whether a user with groups may do what attrs say (a
// SubjectAccessReview in the cluster).
type AccessReviewer func(ctx context.Context, user string, groups []string, attrs authorizationv1.ResourceAttributes) (bool, error)

// SubjectAccessReviewer asks the API server with a SubjectAccessReview.
func SubjectAccessReviewer(cs kubernetes.Interface) AccessReviewer {
	return func(ctx context.Context, user string, groups []string, attrs authorizationv1.ResourceAttributes) (bool, error) {
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User: user, Groups: append(slices.Clone(groups), "system:authenticated"), ResourceAttributes: &attrs}}
		res, err := cs.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
		if err != nil {
			return false, fmt.Errorf("ask the API server whether %s may %s %s/%s: %w", user, attrs.Verb, attrs.Resource, attrs.Subresource, err)
		}
		return res.Status.Allowed, nil
	}
}

// CheckKubeletAPIAccess asks, for the apiserver-kubelet-client certificate of rep (a
// control-plane node's), whether the identity it carries (CN the user, O the groups) may use
// the kubelet API, and adds a critical finding when it may not. It decides from the
// authorizer's answer, not from the certificate's O: a cluster may grant the rights by any
// binding. It does nothing on a node without that certificate.
func CheckKubeletAPIAccess(ctx context.Context, review AccessReviewer, rep *Report) error {
	for i := range rep.Certificates {
		c := &rep.Certificates[i]
		if c.Name != apiserverKubeletClient || c.CommonName == "" {
			continue
		}
		var denied []string
		for _, attrs := range kubeletAPIAccess {
			ok, err := review(ctx, c.CommonName, c.Organizations, attrs)
			if err != nil {
				return err
			}
			if !ok {
				denied = append(denied, attrs.Verb+" "+attrs.Resource+"/"+attrs.Subresource)
			}
		}
		if len(denied) == 0 {
			continue
		}
		who := "user " + c.CommonName
		if len(c.Organizations) > 0 {
			who += " (groups " + strings.Join(c.Organizations, ", ") + ")"
		} else {
			who += " (no O: its rights must come from the ClusterRoleBinding " + KubeletAPIBinding + ")"
		}
		c.add(Finding{SevCritical, CodeKubeletAPIForbidden,
			fmt.Sprintf("the apiserver authenticates to kubelets as %s, which may not %s: kubectl logs, exec and port-forward fail with Forbidden", who, strings.Join(denied, ", ")),
			fmt.Sprintf("kubectl create clusterrolebinding %s --clusterrole=system:kubelet-api-admin --user=%s (what kubeadm init and upgrade apply make; kubeadm join --control-plane does not)", KubeletAPIBinding, c.CommonName)})
		c.settle()
	}
	return nil
}
