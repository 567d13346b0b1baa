package testenv_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/certctl/certctl/internal/testenv"
	certv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/certctl/certctl/pkg/pki"
)

func TestKubeadmTree(t *testing.T) {
	tr := testenv.KubeadmTree(t, testenv.TreeOptions{CertSANs: []string{"10.2.0.100", "lb.example.com"}})
	for _, f := range []string{"pki/ca.crt", "pki/ca.key", "pki/apiserver.crt", "pki/apiserver-kubelet-client.crt", "pki/apiserver-etcd-client.crt",
		"pki/front-proxy-ca.crt", "pki/front-proxy-client.crt", "pki/sa.key", "pki/sa.pub", "pki/etcd/ca.crt", "pki/etcd/server.crt",
		"pki/etcd/peer.crt", "pki/etcd/healthcheck-client.crt", "admin.conf", "super-admin.conf", "controller-manager.conf", "scheduler.conf", "kubelet.conf"} {
		if _, err := os.Stat(filepath.Join(tr.Layout.KubeconfigDir, f)); err != nil {
			t.Errorf("kubeadm did not write %s: %v", f, err)
		}
	}
	data, _ := os.ReadFile(filepath.Join(tr.Layout.PKIDir, "apiserver.crt"))
	certs, err := pki.ParseCertificates("apiserver.crt", data)
	if err != nil {
		t.Fatal(err)
	}
	if certs[0].VerifyHostname("10.2.0.100") != nil || certs[0].VerifyHostname("lb.example.com") != nil {
		t.Errorf("apiserver.crt lacks the extra SANs: %v %v", certs[0].DNSNames, certs[0].IPAddresses)
	}
	exp := tr.CheckExpiration(t)
	if !exp["apiserver"].Equal(certs[0].NotAfter) {
		t.Errorf("kubeadm says apiserver expires %s, the file says %s", exp["apiserver"], certs[0].NotAfter)
	}
}

func TestControlPlane(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd, kube-apiserver and kube-controller-manager")
	}
	tr := testenv.KubeadmTree(t, testenv.TreeOptions{})
	start := time.Now()
	cp := testenv.StartControlPlane(t, testenv.ControlPlaneOptions{PKIDir: tr.Layout.PKIDir, KubeconfigDir: tr.Layout.KubeconfigDir, CSRSigner: true})
	t.Logf("etcd + kube-apiserver + kube-controller-manager ready in %s", time.Since(start).Round(time.Millisecond))

	served := testenv.ServedCert(t, cp.APIServerAddr)
	data, _ := os.ReadFile(filepath.Join(tr.Layout.PKIDir, "apiserver.crt"))
	block, _ := pem.Decode(data)
	if !slices.Equal(served.Raw, block.Bytes) {
		t.Fatalf("the apiserver does not serve apiserver.crt")
	}

	cs := cp.Clientset(t) // admin.conf: group kubeadm:cluster-admins
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	nss, err := cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatalf("admin.conf cannot list namespaces: %v", err)
	}
	var names []string
	for _, n := range nss.Items {
		names = append(names, n.Name)
	}
	for _, want := range []string{"default", "kube-system"} {
		if !slices.Contains(names, want) {
			t.Errorf("namespace %s missing from %v", want, names)
		}
	}

	// An approved CSR really gets signed by the controller-manager with the tree's CA.
	key, _ := pki.GenerateKey(pki.AlgECDSAP256)
	csrPEM, err := pki.CreateCSR(key, pki.Template{Subject: pkixName("system:node:worker-1", "system:nodes")})
	if err != nil {
		t.Fatal(err)
	}
	csr := &certv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{Name: "test-csr"},
		Spec: certv1.CertificateSigningRequestSpec{Request: csrPEM, SignerName: certv1.KubeAPIServerClientKubeletSignerName,
			Usages: []certv1.KeyUsage{certv1.UsageDigitalSignature, certv1.UsageClientAuth}},
	}
	created, err := cs.CertificatesV1().CertificateSigningRequests().Create(ctx, csr, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	created.Status.Conditions = append(created.Status.Conditions, certv1.CertificateSigningRequestCondition{
		Type: certv1.CertificateApproved, Status: corev1.ConditionTrue, Reason: "Test", Message: "approved by the test"})
	if _, err := cs.CertificatesV1().CertificateSigningRequests().UpdateApproval(ctx, created.Name, created, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	var signed []byte
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		got, err := cs.CertificatesV1().CertificateSigningRequests().Get(ctx, created.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		signed = got.Status.Certificate
		return len(signed) > 0, nil
	})
	if err != nil {
		t.Fatalf("approved CSR not signed: %v\n%s", err, cp.Logs("kube-controller-manager"))
	}
	certs, err := pki.ParseCertificates("signed", signed)
	if err != nil {
		t.Fatal(err)
	}
	caData, _ := os.ReadFile(filepath.Join(tr.Layout.PKIDir, "ca.crt"))
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caData)
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("signed certificate does not verify against ca.crt: %v", err)
	}

	cp.RestartAPIServer(t)
	if _, err := cs.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{}); err != nil {
		t.Errorf("after restart: %v", err)
	}
}
