// Package kubeletserving gets kubelets CA-signed serving certificates (case A: metrics-server
// cannot verify a kubelet whose self-signed certificate has no IP SANs): it validates and
// approves kubernetes.io/kubelet-serving CSRs, turns serverTLSBootstrap on, issues a serving
// certificate from the cluster CA, and reports what every kubelet serves. It never prints:
// results are returned or written to an io.Writer.
package kubeletserving

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"path"
	"slices"
	"sort"
	"strings"

	certv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
)

// NodeUserPrefix is how a kubelet's client identity names its node.
const NodeUserPrefix = "system:node:"

// NodesGroup is the group every kubelet's client identity is in.
const NodesGroup = "system:nodes"

// Reason codes of a Rejection: the bounded set the approver's metrics are labelled with.
const (
	CodeSigner           = "signer"
	CodeNotANode         = "not-a-node"
	CodeNotInNodesGroup  = "not-in-nodes-group"
	CodeBadRequest       = "bad-request"
	CodeSubjectCN        = "subject-cn"
	CodeSubjectO         = "subject-o"
	CodeUsages           = "usages"
	CodeEmailOrURI       = "email-or-uri-san"
	CodeNoSAN            = "no-san"
	CodeNodeNotFound     = "node-not-found"
	CodeNodeMismatch     = "node-mismatch"
	CodeIPNotNodeAddress = "ip-not-node-address"
	CodeDNSNotNodeName   = "dns-not-node-name"
)

// Rejection is why Validate refuses a CSR: a code (for metrics) and the reason in words.
type Rejection struct {
	Code string
	Err  error
}

func (r *Rejection) Error() string { return r.Err.Error() }
func (r *Rejection) Unwrap() error { return r.Err }

func reject(code, format string, a ...any) error {
	return &Rejection{Code: code, Err: fmt.Errorf(format, a...)}
}

// Policy tunes the checks.
type Policy struct {
	// DNSPatterns are extra glob patterns (path.Match) a DNS SAN may match, for clusters
	// whose kubelets request names that are not among the Node's addresses.
	DNSPatterns []string
}

// Validate decides whether csr may be approved: it returns nil when every check holds, or an
// error whose text is the reason to deny it. node is the Node the requestor claims to be
// (nil when it does not exist).
//
// The point of every check is that a node must not obtain a serving certificate for an
// identity or an address that is not its own: with one, it could impersonate another kubelet
// to the apiserver and to metrics-server.
func Validate(csr *certv1.CertificateSigningRequest, node *corev1.Node, p Policy) error {
	if csr.Spec.SignerName != certv1.KubeletServingSignerName {
		return reject(CodeSigner, "signer is %q, not %s", csr.Spec.SignerName, certv1.KubeletServingSignerName)
	}
	user := csr.Spec.Username
	nodeName, ok := strings.CutPrefix(user, NodeUserPrefix)
	if !ok || nodeName == "" {
		return reject(CodeNotANode, "requested by %q, which is not a node identity (system:node:<name>)", user)
	}
	if !slices.Contains(csr.Spec.Groups, NodesGroup) {
		return reject(CodeNotInNodesGroup, "requestor %s is not in group %s", user, NodesGroup)
	}
	req, err := parseRequest(csr.Spec.Request)
	if err != nil {
		return err
	}
	if req.Subject.CommonName != user {
		return reject(CodeSubjectCN, "subject CN %q differs from the requestor %q", req.Subject.CommonName, user)
	}
	if !slices.Equal(req.Subject.Organization, []string{NodesGroup}) {
		return reject(CodeSubjectO, "subject O %v, want exactly [%s]", req.Subject.Organization, NodesGroup)
	}
	if err := checkUsages(csr.Spec.Usages, req); err != nil {
		return err
	}
	if len(req.EmailAddresses) > 0 || len(req.URIs) > 0 {
		return reject(CodeEmailOrURI, "requests email or URI SANs (%v %v): a kubelet serving certificate has none", req.EmailAddresses, req.URIs)
	}
	if len(req.IPAddresses) == 0 && len(req.DNSNames) == 0 {
		return reject(CodeNoSAN, "requests no SAN at all")
	}
	if node == nil {
		return reject(CodeNodeNotFound, "node %q does not exist", nodeName)
	}
	if node.Name != nodeName {
		return reject(CodeNodeMismatch, "node %q is not the requestor's node %q", node.Name, nodeName)
	}
	ips, names := nodeAddresses(node)
	for _, ip := range req.IPAddresses {
		if !slices.ContainsFunc(ips, ip.Equal) {
			return reject(CodeIPNotNodeAddress, "IP SAN %s is not an address of node %s (it has %s)", ip, nodeName, addrList(node))
		}
	}
	for _, dns := range req.DNSNames {
		if slices.Contains(names, strings.ToLower(dns)) || matchesAny(p.DNSPatterns, strings.ToLower(dns)) {
			continue
		}
		return reject(CodeDNSNotNodeName, "DNS SAN %q is neither a name of node %s (%s) nor allowed by --dns-pattern", dns, nodeName, addrList(node))
	}
	return nil
}

func parseRequest(data []byte) (*x509.CertificateRequest, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, reject(CodeBadRequest, "request is not a PEM CERTIFICATE REQUEST")
	}
	req, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, reject(CodeBadRequest, "request does not parse: %w", err)
	}
	if err := req.CheckSignature(); err != nil {
		return nil, reject(CodeBadRequest, "request signature does not verify: %w", err)
	}
	return req, nil
}

// checkUsages allows exactly digital signature + server auth, plus key encipherment for an
// RSA key (the kubelet asks for it only then).
func checkUsages(usages []certv1.KeyUsage, req *x509.CertificateRequest) error {
	got := make([]string, len(usages))
	for i, u := range usages {
		got[i] = string(u)
	}
	sort.Strings(got)
	allowed := [][]string{{string(certv1.UsageDigitalSignature), string(certv1.UsageServerAuth)}}
	if _, isRSA := req.PublicKey.(*rsa.PublicKey); isRSA {
		allowed = append(allowed, []string{string(certv1.UsageDigitalSignature), string(certv1.UsageKeyEncipherment), string(certv1.UsageServerAuth)})
	}
	for _, a := range allowed {
		if slices.Equal(got, a) {
			return nil
		}
	}
	return reject(CodeUsages, "usages %v are not a kubelet serving certificate's (digital signature, server auth%s)", got, map[bool]string{true: ", and key encipherment for RSA"}[len(allowed) > 1])
}

// nodeAddresses returns the Node's IPs (InternalIP, ExternalIP) and names (Hostname,
// InternalDNS, ExternalDNS), lower-cased.
func nodeAddresses(n *corev1.Node) (ips []net.IP, names []string) {
	for _, a := range n.Status.Addresses {
		switch a.Type {
		case corev1.NodeInternalIP, corev1.NodeExternalIP:
			if ip := net.ParseIP(a.Address); ip != nil {
				ips = append(ips, ip)
			}
		case corev1.NodeHostName, corev1.NodeInternalDNS, corev1.NodeExternalDNS:
			names = append(names, strings.ToLower(a.Address))
		}
	}
	return ips, names
}

func addrList(n *corev1.Node) string {
	var out []string
	for _, a := range n.Status.Addresses {
		out = append(out, fmt.Sprintf("%s %s", a.Type, a.Address))
	}
	if len(out) == 0 {
		return "no addresses"
	}
	return strings.Join(out, ", ")
}

func matchesAny(patterns []string, name string) bool {
	for _, p := range patterns {
		if ok, _ := path.Match(strings.ToLower(p), name); ok {
			return true
		}
	}
	return false
}
