package kubeletserving_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/certctl/certctl/pkg/csrwait"
	"github.com/certctl/certctl/pkg/kubeletserving"
	certv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestApproveByNameRefusesOtherSigner: `kubelet-serving approve NAME` on a CSR of another
// signer (here a kube-apiserver client certificate, filed on a real apiserver) is refused
// with an error naming it and the signer, and the CSR stays pending: never denied. A valid
// kubelet serving CSR named beside it is not decided either (refused before anything).
func TestApproveByNameRefusesOtherSigner(t *testing.T) {
	c := newCluster(t)
	ctx := context.Background()
	c.addNode(t, "node-a", addr(corev1.NodeInternalIP, "10.0.0.1"), addr(corev1.NodeHostName, "node-a"))
	a := c.nodeClient(t, "node-a")
	c.file(t, c.admin, "someones-client-cert", csrSpec{cn: "ops", orgs: []string{"ops"},
		usages: []certv1.KeyUsage{certv1.UsageDigitalSignature, certv1.UsageClientAuth}, signer: certv1.KubeAPIServerClientSignerName})
	c.file(t, a, "serving-a", csrSpec{cn: "system:node:node-a", orgs: []string{"system:nodes"}, ips: []string{"10.0.0.1"}, dns: []string{"node-a"}})

	for _, names := range [][]string{{"someones-client-cert"}, {"serving-a", "someones-client-cert"}} {
		for _, o := range []kubeletserving.ApproveOptions{{Names: names}, {Names: names, DryRun: true}} {
			d, err := kubeletserving.Approve(ctx, c.admin, o)
			var other *kubeletserving.OtherSignerError
			if !errors.As(err, &other) || other.CSR != "someones-client-cert" || other.Signer != certv1.KubeAPIServerClientSignerName {
				t.Fatalf("approve %v (dry run %v): %v, %+v; want a refusal naming the CSR and its signer", names, o.DryRun, err, d)
			}
			for _, want := range []string{"someones-client-cert", certv1.KubeAPIServerClientSignerName, "kubectl certificate approve|deny"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			if len(d) != 0 {
				t.Errorf("decisions %+v, want none", d)
			}
		}
	}
	for _, name := range []string{"someones-client-cert", "serving-a"} {
		csr, err := c.admin.CertificatesV1().CertificateSigningRequests().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !csrwait.Pending(csr) {
			t.Errorf("%s: conditions %+v, want it still pending", name, csr.Status.Conditions)
		}
	}
	// --all passes over it silently, and decides the kubelet's.
	d, err := kubeletserving.Approve(ctx, c.admin, kubeletserving.ApproveOptions{All: true})
	if err != nil || len(d) != 1 || d[0].CSR != "serving-a" || d[0].Action != kubeletserving.ActionApproved {
		t.Fatalf("--all: %+v, %v; want only serving-a approved", d, err)
	}
	if csr, _ := c.admin.CertificatesV1().CertificateSigningRequests().Get(ctx, "someones-client-cert", metav1.GetOptions{}); !csrwait.Pending(csr) {
		t.Errorf("--all decided another signer's CSR: %+v", csr.Status.Conditions)
	}
}
