package cluster

import (
	"bytes"
	"context"
	"fmt"
	"slices"

	certificatesv1 "k8s.io/api/certificates/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// TrustBundleName is the ClusterTrustBundle (certificates.k8s.io/v1, GA and served by default
// from Kubernetes 1.37) in which cluster ca-rotate publishes the cluster CA a client must
// trust after each phase: old + new from trust to issue, the new alone after drop, the old
// alone after trust's rollback. Pods project it with a clusterTrustBundle volume source
// (name: certctl-cluster-ca), beside what kube-root-ca.crt gives them. It has no signerName:
// it describes the cluster's own CA, not a signer's.
const TrustBundleName = "certctl-cluster-ca"

// trustBundleServed reports whether the API server serves ClusterTrustBundles in
// certificates.k8s.io/v1 (from discovery, not from an error's wording).
func trustBundleServed(cs kubernetes.Interface) (bool, error) {
	list, err := cs.Discovery().ServerResourcesForGroupVersion(certificatesv1.SchemeGroupVersion.String())
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("discover %s: %w", certificatesv1.SchemeGroupVersion, err)
	}
	return slices.ContainsFunc(list.APIResources, func(r metav1.APIResource) bool { return r.Name == "clustertrustbundles" }), nil
}

// publishTrustBundle makes the ClusterTrustBundle TrustBundleName carry pemData (created, or
// updated when it differs) and says what it did. On a cluster that does not serve the API
// (Kubernetes 1.36 and older, unless its beta was turned on) it publishes nothing and says so.
func publishTrustBundle(ctx context.Context, cs kubernetes.Interface, pemData []byte) (string, error) {
	served, err := trustBundleServed(cs)
	if err != nil {
		return "", err
	}
	if !served {
		return "not published: this API server does not serve certificates.k8s.io/v1 ClusterTrustBundle (Kubernetes 1.37 and later do)", nil
	}
	api := cs.CertificatesV1().ClusterTrustBundles()
	n := bytes.Count(pemData, []byte("BEGIN CERTIFICATE"))
	cur, err := api.Get(ctx, TrustBundleName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		ctb := &certificatesv1.ClusterTrustBundle{
			ObjectMeta: metav1.ObjectMeta{Name: TrustBundleName, Labels: map[string]string{"app.kubernetes.io/managed-by": "certctl"}},
			Spec:       certificatesv1.ClusterTrustBundleSpec{TrustBundle: string(pemData)},
		}
		if _, err := api.Create(ctx, ctb, metav1.CreateOptions{}); err != nil {
			return "", fmt.Errorf("create ClusterTrustBundle %s: %w", TrustBundleName, err)
		}
		return fmt.Sprintf("created with %d CA certificate(s)", n), nil
	case err != nil:
		return "", fmt.Errorf("read ClusterTrustBundle %s: %w", TrustBundleName, err)
	case cur.Spec.TrustBundle == string(pemData):
		return fmt.Sprintf("unchanged (%d CA certificate(s))", n), nil
	}
	cur.Spec.TrustBundle = string(pemData)
	if _, err := api.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
		return "", fmt.Errorf("update ClusterTrustBundle %s: %w", TrustBundleName, err)
	}
	return fmt.Sprintf("updated: %d CA certificate(s)", n), nil
}
