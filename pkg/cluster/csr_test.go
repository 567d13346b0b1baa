package cluster

import (
	"context"
	"crypto"
	"crypto/x509/pkix"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/pki"
	certificatesv1 "k8s.io/api/certificates/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestSignedByNewCA: on a real kube-apiserver with the controller-manager's CSR signer, a
// node's kubelet client certificate and an operator's client certificate come back signed by
// the CA, with the subject asked for and a key that matches; no CSR is left. A CA other than
// the signer's is reported, naming the CSR and why.
func TestSignedByNewCA(t *testing.T) {
	tr := testenv.KubeadmTree(t, testenv.TreeOptions{})
	cp := testenv.StartControlPlane(t, testenv.ControlPlaneOptions{PKIDir: tr.Layout.PKIDir, KubeconfigDir: tr.Layout.KubeconfigDir, CSRSigner: true})
	cs := cp.Clientset(t)
	ca := pki.Load(tr.Layout, pki.Default()).Get("ca").Cert()
	ctx := context.Background()
	for _, r := range []csrRequest{
		{subject: pkix.Name{CommonName: "system:node:worker-1", Organization: []string{"system:nodes"}},
			signer: certificatesv1.KubeAPIServerClientKubeletSignerName, generateName: "test-kubelet-", what: "the kubelet client certificate of worker-1"},
		{subject: pkix.Name{CommonName: "operator", Organization: []string{"kubeadm:cluster-admins"}},
			signer: certificatesv1.KubeAPIServerClientSignerName, generateName: "test-client-", what: "the operator's client certificate"},
	} {
		certPEM, keyPEM, err := signedByNewCA(ctx, cs, r, ca)
		if err != nil {
			t.Fatalf("%s: %v", r.what, err)
		}
		c, err := pki.ParseCertificates("certificate", certPEM)
		if err != nil {
			t.Fatal(err)
		}
		key, err := pki.ParsePrivateKey("key", keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		if c[0].CheckSignatureFrom(ca) != nil || c[0].Subject.CommonName != r.subject.CommonName ||
			strings.Join(c[0].Subject.Organization, ",") != strings.Join(r.subject.Organization, ",") || pki.VerifyKeyPair(c[0].PublicKey, key) != nil {
			t.Errorf("%s: got %s issued by %s", r.what, c[0].Subject, c[0].Issuer)
		}
	}
	other, err := pki.NewCA(mustKey(t), ca, time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	// The certificate comes signed by the controller-manager's CA, not this one: said at once
	// (a signed CSR is not signed again), not after the wait's 2 minutes.
	short, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_, _, err = signedByNewCA(short, cs, csrRequest{subject: pkix.Name{CommonName: "operator"}, signer: certificatesv1.KubeAPIServerClientSignerName,
		generateName: "test-other-", what: "a certificate of another CA"}, other)
	var os *OtherSignerError
	if !errors.As(err, &os) || !strings.HasPrefix(os.CSR, "test-other-") || os.Issuer != ca.Subject.String() {
		t.Errorf("another CA: got %v, want an *OtherSignerError naming the CSR and the issuer %s", err, ca.Subject)
	}
	if short.Err() != nil {
		t.Errorf("another CA: reported only when the context ended")
	}
	csrs, err := cs.CertificatesV1().CertificateSigningRequests().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range csrs.Items {
		if strings.HasPrefix(c.Name, "test-") {
			t.Errorf("CSR %s left behind", c.Name)
		}
	}
}

func mustKey(t *testing.T) crypto.Signer {
	t.Helper()
	k, err := pki.GenerateKey(pki.AlgECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
