package kubeletserving

import (
	"crypto/x509/pkix"
	"net"
	"net/url"
	"strings"
	"testing"

	"github.com/certctl/certctl/pkg/pki"
	certv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func testCSR(t *testing.T, user string, groups []string, tmpl pki.Template, alg string, usages ...certv1.KeyUsage) *certv1.CertificateSigningRequest {
	t.Helper()
	key, err := pki.GenerateKey(alg)
	if err != nil {
		t.Fatal(err)
	}
	req, err := pki.CreateCSR(key, tmpl)
	if err != nil {
		t.Fatal(err)
	}
	if usages == nil {
		usages = []certv1.KeyUsage{certv1.UsageDigitalSignature, certv1.UsageServerAuth}
	}
	return &certv1.CertificateSigningRequest{Spec: certv1.CertificateSigningRequestSpec{
		Request: req, SignerName: certv1.KubeletServingSignerName, Usages: usages, Username: user, Groups: groups}}
}

// TestValidate covers every check, including those the apiserver's NodeRestriction plugin
// also enforces at creation (certctl must not rely on it being enabled).
func TestValidate(t *testing.T) {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "w1"}, Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
		{Type: corev1.NodeInternalIP, Address: "10.2.1.198"}, {Type: corev1.NodeHostName, Address: "w1"}, {Type: corev1.NodeInternalDNS, Address: "w1.lan"}}}}
	other := node.DeepCopy()
	other.Name = "w2"
	groups := []string{"system:nodes", "system:authenticated"}
	subj := pkix.Name{CommonName: "system:node:w1", Organization: []string{"system:nodes"}}
	ip := func(s ...string) []net.IP {
		var out []net.IP
		for _, x := range s {
			out = append(out, net.ParseIP(x))
		}
		return out
	}
	u, _ := url.Parse("spiffe://x/y")
	ds, sa, ke, ca := certv1.UsageDigitalSignature, certv1.UsageServerAuth, certv1.UsageKeyEncipherment, certv1.UsageClientAuth
	tests := []struct {
		name    string
		csr     *certv1.CertificateSigningRequest
		node    *corev1.Node
		policy  Policy
		wantErr string
	}{
		{"legit ip and hostname", testCSR(t, "system:node:w1", groups, pki.Template{Subject: subj, IPAddresses: ip("10.2.1.198"), DNSNames: []string{"w1"}}, pki.AlgECDSAP256), node, Policy{}, ""},
		{"legit rsa with key encipherment", testCSR(t, "system:node:w1", groups, pki.Template{Subject: subj, IPAddresses: ip("10.2.1.198")}, pki.AlgRSA2048, ds, ke, sa), node, Policy{}, ""},
		{"legit rsa without key encipherment", testCSR(t, "system:node:w1", groups, pki.Template{Subject: subj, IPAddresses: ip("10.2.1.198")}, pki.AlgRSA2048), node, Policy{}, ""},
		{"dns allowed by pattern", testCSR(t, "system:node:w1", groups, pki.Template{Subject: subj, DNSNames: []string{"w1.prod.example.com"}}, pki.AlgECDSAP256), node, Policy{DNSPatterns: []string{"*.prod.example.com"}}, ""},
		{"dns not allowed without pattern", testCSR(t, "system:node:w1", groups, pki.Template{Subject: subj, DNSNames: []string{"w1.prod.example.com"}}, pki.AlgECDSAP256), node, Policy{}, `DNS SAN "w1.prod.example.com"`},
		{"another node's IP", testCSR(t, "system:node:w1", groups, pki.Template{Subject: subj, IPAddresses: ip("10.2.1.199")}, pki.AlgECDSAP256), node, Policy{}, "IP SAN 10.2.1.199 is not an address of node w1"},
		{"filed by another node (CN differs from requestor)", testCSR(t, "system:node:w2", groups, pki.Template{Subject: subj, IPAddresses: ip("10.2.1.198")}, pki.AlgECDSAP256), other, Policy{}, "differs from the requestor"},
		{"requestor not in system:nodes", testCSR(t, "system:node:w1", []string{"system:authenticated"}, pki.Template{Subject: subj, IPAddresses: ip("10.2.1.198")}, pki.AlgECDSAP256), node, Policy{}, "not in group system:nodes"},
		{"requestor not a node", testCSR(t, "alice", groups, pki.Template{Subject: subj, IPAddresses: ip("10.2.1.198")}, pki.AlgECDSAP256), node, Policy{}, "not a node identity"},
		{"extra org", testCSR(t, "system:node:w1", groups, pki.Template{Subject: pkix.Name{CommonName: "system:node:w1", Organization: []string{"system:nodes", "system:masters"}}, IPAddresses: ip("10.2.1.198")}, pki.AlgECDSAP256), node, Policy{}, "subject O"},
		{"client auth usage", testCSR(t, "system:node:w1", groups, pki.Template{Subject: subj, IPAddresses: ip("10.2.1.198")}, pki.AlgECDSAP256, ds, sa, ca), node, Policy{}, "usages"},
		{"key encipherment on ecdsa", testCSR(t, "system:node:w1", groups, pki.Template{Subject: subj, IPAddresses: ip("10.2.1.198")}, pki.AlgECDSAP256, ds, ke, sa), node, Policy{}, "usages"},
		{"missing server auth", testCSR(t, "system:node:w1", groups, pki.Template{Subject: subj, IPAddresses: ip("10.2.1.198")}, pki.AlgECDSAP256, ds), node, Policy{}, "usages"},
		{"email SAN", testCSR(t, "system:node:w1", groups, pki.Template{Subject: subj, IPAddresses: ip("10.2.1.198"), EmailAddresses: []string{"a@b"}}, pki.AlgECDSAP256), node, Policy{}, "email or URI"},
		{"URI SAN", testCSR(t, "system:node:w1", groups, pki.Template{Subject: subj, IPAddresses: ip("10.2.1.198"), URIs: []*url.URL{u}}, pki.AlgECDSAP256), node, Policy{}, "email or URI"},
		{"no SAN", testCSR(t, "system:node:w1", groups, pki.Template{Subject: subj}, pki.AlgECDSAP256), node, Policy{}, "no SAN"},
		{"node missing", testCSR(t, "system:node:w1", groups, pki.Template{Subject: subj, IPAddresses: ip("10.2.1.198")}, pki.AlgECDSAP256), nil, Policy{}, `node "w1" does not exist`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Validate(tc.csr, tc.node, tc.policy)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("want approval, got %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err %v, want %q", err, tc.wantErr)
			}
		})
	}
	wrongSigner := testCSR(t, "system:node:w1", groups, pki.Template{Subject: subj, IPAddresses: ip("10.2.1.198")}, pki.AlgECDSAP256)
	wrongSigner.Spec.SignerName = certv1.KubeAPIServerClientKubeletSignerName
	if err := Validate(wrongSigner, node, Policy{}); err == nil || !strings.Contains(err.Error(), "signer is") {
		t.Errorf("other signer: %v", err)
	}
	garbage := testCSR(t, "system:node:w1", groups, pki.Template{Subject: subj, IPAddresses: ip("10.2.1.198")}, pki.AlgECDSAP256)
	garbage.Spec.Request = []byte("not pem")
	if err := Validate(garbage, node, Policy{}); err == nil || !strings.Contains(err.Error(), "not a PEM CERTIFICATE REQUEST") {
		t.Errorf("garbage request: %v", err)
	}
}
