package kubeletserving

// Fuzz targets for what kubelet-serving parses: a kubelet-serving CSR as the API hands it to
// the approver (the PEM request is the requesting node's, untrusted), and the kubelet's
// config.yaml that enable and issue edit. Seeds: CSRs as a kubelet files them (made here) and
// kubeadm v1.37.2's config.yaml (testdata/README.md). `make fuzz` runs them; without -fuzz the
// seeds and testdata/fuzz/FuzzX run as ordinary tests.

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
	certv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// fuzzCSR returns a PEM CSR by key for cn/orgs with the given SANs.
func fuzzCSR(f *testing.F, key crypto.Signer, cn string, orgs []string, ips []string, dns []string, emails []string, uris []string) []byte {
	f.Helper()
	req := &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn, Organization: orgs}, DNSNames: dns, EmailAddresses: emails}
	for _, ip := range ips {
		req.IPAddresses = append(req.IPAddresses, net.ParseIP(ip))
	}
	for _, u := range uris {
		pu, err := url.Parse(u)
		if err != nil {
			f.Fatal(err)
		}
		req.URIs = append(req.URIs, pu)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, req, key)
	if err != nil {
		f.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

// fuzzNode is the Node the CSRs claim to be, as the API server reports a kubeadm worker.
var fuzzNode = &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "worker-1"}, Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
	{Type: corev1.NodeInternalIP, Address: "10.2.1.161"},
	{Type: corev1.NodeInternalIP, Address: "fd00::161"},
	{Type: corev1.NodeHostName, Address: "worker-1"},
}}}

var allUsages = []certv1.KeyUsage{certv1.UsageDigitalSignature, certv1.UsageKeyEncipherment, certv1.UsageServerAuth, certv1.UsageClientAuth}

var rejectionCodes = []string{CodeSigner, CodeNotANode, CodeNotInNodesGroup, CodeBadRequest, CodeSubjectCN, CodeSubjectO,
	CodeUsages, CodeEmailOrURI, CodeNoSAN, CodeNodeNotFound, CodeNodeMismatch, CodeIPNotNodeAddress, CodeDNSNotNodeName}

// FuzzValidate: any CSR a node files never panics Validate; a refusal is a Rejection with a
// known code; and what Validate approves really is the requesting node's: a request that
// parses, is signed by its key, names the node as CN with O=system:nodes, asks only for
// serving usages and only for the node's own addresses and names (or names the pattern
// allows).
func FuzzValidate(f *testing.F) {
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	const user = "system:node:worker-1"
	nodes := []string{NodesGroup}
	good := fuzzCSR(f, ec, user, nodes, []string{"10.2.1.161"}, []string{"worker-1"}, nil, nil)
	// usages bits: 1 digital signature, 2 key encipherment, 4 server auth, 8 client auth;
	// 16 passes the Node even when the requestor names another.
	f.Add(good, user, uint8(1|4), "")
	f.Add(good, user, uint8(1|2|4), "")
	f.Add(good, "system:node:worker-2", uint8(1|4|16), "")
	f.Add(fuzzCSR(f, ed, user, nodes, []string{"10.2.1.161", "fd00::161"}, nil, nil, nil), user, uint8(1|4), "")
	f.Add(fuzzCSR(f, ec, user, nodes, []string{"10.2.1.139"}, nil, nil, nil), user, uint8(1|4), "")
	f.Add(fuzzCSR(f, ec, user, nodes, nil, []string{"worker-1.example.com"}, nil, nil), user, uint8(1|4), "*.example.com")
	f.Add(fuzzCSR(f, ec, user, nodes, nil, []string{"worker-1"}, []string{"root@worker-1"}, []string{"spiffe://cluster.local/ns/x"}), user, uint8(1|4), "")
	f.Add(fuzzCSR(f, ec, "system:node:worker-2", []string{NodesGroup, "system:masters"}, []string{"10.2.1.161"}, nil, nil, nil), user, uint8(1|4), "")
	f.Add(good[:len(good)/2], user, uint8(1|4), "")
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"), user, uint8(1|4), "")
	f.Fuzz(func(t *testing.T, request []byte, username string, bits uint8, pattern string) {
		csr := &certv1.CertificateSigningRequest{Spec: certv1.CertificateSigningRequestSpec{
			Request: request, SignerName: certv1.KubeletServingSignerName, Username: username,
			Groups: []string{NodesGroup, "system:authenticated"},
		}}
		for i, u := range allUsages {
			if bits&(1<<i) != 0 {
				csr.Spec.Usages = append(csr.Spec.Usages, u)
			}
		}
		var node *corev1.Node
		if username == NodeUserPrefix+fuzzNode.Name || bits&16 != 0 {
			node = fuzzNode
		}
		var policy Policy
		if pattern != "" {
			policy.DNSPatterns = []string{pattern}
		}
		err := Validate(csr, node, policy)
		if err != nil {
			var r *Rejection
			if !errors.As(err, &r) || !slices.Contains(rejectionCodes, r.Code) {
				t.Fatalf("refusal %v is not a Rejection with a known code", err)
			}
			return
		}
		// Approved: check it independently of Validate.
		if node == nil || username != NodeUserPrefix+node.Name {
			t.Fatalf("approved a CSR of %q for node %v", username, node)
		}
		block, _ := pem.Decode(request)
		if block == nil {
			t.Fatal("approved a request that is not PEM")
		}
		req, err := x509.ParseCertificateRequest(block.Bytes)
		if err != nil || req.CheckSignature() != nil {
			t.Fatalf("approved a request that does not parse or verify: %v", err)
		}
		if req.Subject.CommonName != username || !slices.Equal(req.Subject.Organization, []string{NodesGroup}) {
			t.Fatalf("approved subject %s for %s", req.Subject, username)
		}
		if len(req.EmailAddresses) > 0 || len(req.URIs) > 0 || len(req.IPAddresses)+len(req.DNSNames) == 0 {
			t.Fatalf("approved SANs %v %v %v %v", req.IPAddresses, req.DNSNames, req.EmailAddresses, req.URIs)
		}
		ips, names := nodeAddresses(node)
		for _, ip := range req.IPAddresses {
			if !slices.ContainsFunc(ips, ip.Equal) {
				t.Fatalf("approved IP %s, not the node's", ip)
			}
		}
		for _, d := range req.DNSNames {
			if !slices.Contains(names, strings.ToLower(d)) && !matchesAny(policy.DNSPatterns, strings.ToLower(d)) {
				t.Fatalf("approved DNS name %q, neither the node's nor allowed", d)
			}
		}
		if slices.Contains(csr.Spec.Usages, certv1.UsageClientAuth) || !slices.Contains(csr.Spec.Usages, certv1.UsageServerAuth) {
			t.Fatalf("approved usages %v", csr.Spec.Usages)
		}
	})
}

// editSets are the edits certctl makes to the kubelet's config.
var editSets = [][]Field{
	{{"serverTLSBootstrap", "true"}},
	{{"tlsCertFile", "/var/lib/kubelet/pki/kubelet-server-certctl.crt"}, {"tlsPrivateKeyFile", "/var/lib/kubelet/pki/kubelet-server-certctl.key"}},
}

// FuzzEditConfig: editing any kubelet config never panics. When EditConfig succeeds, the
// output parses, holds every field's value (HasValue), is the input itself when nothing
// changed, and editing it again changes nothing.
func FuzzEditConfig(f *testing.F) {
	cfg, err := os.ReadFile(filepath.Join("testdata", "kubeadm-v1.37.2", "kubelet-config.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	for i := range editSets {
		f.Add(cfg, uint8(i))
	}
	f.Add(append(append([]byte{}, cfg...), "serverTLSBootstrap: false # off for now\n"...), uint8(0))
	f.Add([]byte("# Written by kubeadm\napiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ntlsCertFile: \"/var/lib/kubelet/pki/kubelet.crt\"\ntlsPrivateKeyFile: /var/lib/kubelet/pki/kubelet.key"), uint8(1))
	f.Add([]byte("{serverTLSBootstrap: false}\n"), uint8(0))
	f.Add([]byte("serverTLSBootstrap:\n  nested: true\n"), uint8(0))
	f.Add([]byte("serverTLSBootstrap: |\n  true\n"), uint8(0))
	f.Add([]byte(""), uint8(0))
	f.Fuzz(func(t *testing.T, data []byte, which uint8) {
		fields := editSets[int(which)%len(editSets)]
		for _, fl := range fields {
			HasValue(data, fl.Key, fl.Value)
		}
		out, changed, err := EditConfig(data, fields...)
		if err != nil {
			return
		}
		if !changed {
			if !bytes.Equal(out, data) {
				t.Fatal("nothing changed but the output differs")
			}
			return
		}
		var doc yaml.Node
		if err := yaml.Unmarshal(out, &doc); err != nil {
			t.Fatalf("EditConfig wrote YAML that does not parse: %v\n%q", err, out)
		}
		for _, fl := range fields {
			if !HasValue(out, fl.Key, fl.Value) {
				t.Fatalf("%s is not %s after EditConfig:\n%q", fl.Key, fl.Value, out)
			}
		}
		again, changed, err := EditConfig(out, fields...)
		if err != nil || changed || !bytes.Equal(again, out) {
			t.Fatalf("editing again: changed %v, err %v\n%q", changed, err, out)
		}
	})
}
