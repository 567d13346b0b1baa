package cluster

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/pki"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// TestClusterInfoEdits, on a real kube-apiserver: cluster-info as kubeadm makes it (a
// kubeconfig with the cluster CA and the first node's server) gets a new CA bundle and a new
// server, each written once (the same edit again is "unchanged" and leaves the
// resourceVersion alone) and read back; an optional ConfigMap that does not exist is
// skipped, cluster-info missing is an error.
func TestClusterInfoEdits(t *testing.T) {
	tr := testenv.KubeadmTree(t, testenv.TreeOptions{})
	cp := testenv.StartControlPlane(t, testenv.ControlPlaneOptions{PKIDir: tr.Layout.PKIDir, KubeconfigDir: tr.Layout.KubeconfigDir})
	cs := cp.Clientset(t)
	ctx := context.Background()

	if _, err := clusterInfoServer(ctx, cs); err == nil || !strings.Contains(err.Error(), "kube-public/cluster-info") {
		t.Fatalf("cluster-info missing: %v", err)
	}
	caPEM, err := os.ReadFile(filepath.Join(tr.Layout.PKIDir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[""] = &clientcmdapi.Cluster{Server: "https://10.0.0.1:6443", CertificateAuthorityData: caPEM}
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ConfigMaps(ClusterInfoNamespace).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: ClusterInfoName, Namespace: ClusterInfoNamespace}, Data: map[string]string{"kubeconfig": string(data)},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rv := func() string {
		cm, err := cs.CoreV1().ConfigMaps(ClusterInfoNamespace).Get(ctx, ClusterInfoName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return cm.ResourceVersion
	}

	other, err := pki.NewCA(mustKey(t), pki.CertificatesIn(caPEM)[0], pki.CertificatesIn(caPEM)[0].NotBefore, pki.CertificatesIn(caPEM)[0].NotAfter)
	if err != nil {
		t.Fatal(err)
	}
	bundle := append(append([]byte{}, caPEM...), pki.EncodeCertificates(other)...)
	for i, want := range []string{"certificate-authority-data: 2 CA certificate(s)", "unchanged"} {
		before := rv()
		what, err := setClusterInfoCA(ctx, cs, bundle)
		if err != nil || what != want {
			t.Fatalf("set the CA (%d): %q, %v; want %q", i, what, err, want)
		}
		if (rv() != before) != (i == 0) {
			t.Errorf("set the CA (%d): resourceVersion %s -> %s", i, before, rv())
		}
	}
	if got, err := clusterInfoCA(ctx, cs); err != nil || string(got) != string(bundle) {
		t.Errorf("the CA read back: %d bytes, %v; want the bundle", len(got), err)
	}
	for i, want := range []string{"server https://10.0.0.1:6443 -> https://10.2.1.139:6443", "unchanged (https://10.2.1.139:6443)"} {
		what, err := moveConfigMapKubeconfig(ctx, cs, ClusterInfoNamespace, ClusterInfoName, "kubeconfig", "https://10.0.0.1:6443", "https://10.2.1.139:6443")
		if err != nil || what != want {
			t.Fatalf("move the server (%d): %q, %v; want %q", i, what, err, want)
		}
	}
	if got, err := clusterInfoServer(ctx, cs); err != nil || got != "https://10.2.1.139:6443" {
		t.Errorf("the server read back: %q, %v", got, err)
	}
	if what, err := moveConfigMapKubeconfig(ctx, cs, "kube-system", "kube-proxy", "kubeconfig.conf", "https://10.0.0.1:6443", "https://10.2.1.139:6443"); err != nil || what != "" {
		t.Errorf("an optional ConfigMap that does not exist: %q, %v", what, err)
	}
}

// TestPublishTrustBundle, on a real apiserver (v1.37: certificates.k8s.io/v1 ClusterTrustBundle
// served by default): the bundle is created with the CAs given, left alone when it already
// carries them, updated when they change (old + new, then the new alone), and a pod-readable
// object is what the API returns.
func TestPublishTrustBundle(t *testing.T) {
	tr := testenv.KubeadmTree(t, testenv.TreeOptions{})
	cp := testenv.StartControlPlane(t, testenv.ControlPlaneOptions{PKIDir: tr.Layout.PKIDir, KubeconfigDir: tr.Layout.KubeconfigDir})
	cs := cp.Clientset(t)
	ctx := context.Background()
	served, err := trustBundleServed(cs)
	if err != nil || !served {
		t.Fatalf("ClusterTrustBundle served: %v %v, want true on %s", served, err, tr.Version)
	}
	oldPEM, err := os.ReadFile(filepath.Join(tr.Layout.PKIDir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	newPEM, err := os.ReadFile(filepath.Join(tr.Layout.PKIDir, "front-proxy-ca.crt")) // any other CA
	if err != nil {
		t.Fatal(err)
	}
	bundle := append(append([]byte{}, oldPEM...), newPEM...)
	for i, step := range []struct {
		pem  []byte
		want string
	}{
		{bundle, "created with 2"},
		{bundle, "unchanged (2"},
		{newPEM, "updated: 1"},
	} {
		got, err := publishTrustBundle(ctx, cs, step.pem)
		if err != nil || !strings.HasPrefix(got, step.want) {
			t.Fatalf("step %d: %q %v, want %q", i, got, err, step.want)
		}
		ctb, err := cs.CertificatesV1().ClusterTrustBundles().Get(ctx, TrustBundleName, metav1.GetOptions{})
		if err != nil || ctb.Spec.TrustBundle != string(step.pem) {
			t.Fatalf("step %d: the bundle in the API differs (%v)", i, err)
		}
	}
}
