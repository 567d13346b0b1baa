package pki

import (
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net"
	"path/filepath"
	"time"
)

// SigningCA loads the cluster CA of the node at l with its key, checked to belong together.
// elsewhere says what to do when the CA or its key is not on this node.
func SigningCA(l Layout, elsewhere string) (*Item, error) {
	ca := Load(l, Default()).Get("ca")
	switch {
	case ca == nil || ca.Missing || ca.Absent:
		return nil, fmt.Errorf("no cluster CA at %s: %s", filepath.Join(l.PKIDir, "ca.crt"), elsewhere)
	case ca.CertErr != nil:
		return nil, ca.CertErr
	case ca.KeyAbsent:
		return nil, fmt.Errorf("the cluster CA key %s is not on this node (an external CA, or a secondary node): %s", ca.KeyPath, elsewhere)
	case ca.KeyErr != nil:
		return nil, ca.KeyErr
	}
	if err := VerifyKeyPair(ca.Cert().PublicKey, ca.Key); err != nil {
		return nil, fmt.Errorf("%s does not belong to %s: %w", ca.KeyPath, ca.Path, err)
	}
	return ca, nil
}

// NodeCert asks for a kubelet certificate: CN system:node:<Node>, O system:nodes.
type NodeCert struct {
	Node         string
	Usage        x509.ExtKeyUsage // server auth (serving) or client auth (client)
	IPs          []net.IP
	DNSNames     []string
	Validity     time.Duration // capped at the CA's expiry
	KeyAlgorithm string        // default ecdsa-p256, the kubelet's own choice
	Now          time.Time
}

// SignNodeCert issues n with ca through Sign: a new key, digital signature (plus key
// encipherment for RSA, as the kubelet asks), n's usage and SANs. capped reports a validity
// cut at the CA's expiry.
func SignNodeCert(ca *Item, n NodeCert) (cert *x509.Certificate, key crypto.Signer, capped bool, err error) {
	if n.KeyAlgorithm == "" {
		n.KeyAlgorithm = AlgECDSAP256
	}
	key, err = GenerateKey(n.KeyAlgorithm)
	if err != nil {
		return nil, nil, false, err
	}
	ku := x509.KeyUsageDigitalSignature
	if _, isRSA := key.Public().(*rsa.PublicKey); isRSA {
		ku |= x509.KeyUsageKeyEncipherment
	}
	notAfter := n.Now.Add(n.Validity)
	if notAfter.After(ca.Cert().NotAfter) {
		notAfter, capped = ca.Cert().NotAfter, true
	}
	cert, err = Sign(ca.Cert(), ca.Key, key, Template{
		Subject:     pkix.Name{CommonName: "system:node:" + n.Node, Organization: []string{"system:nodes"}},
		IPAddresses: n.IPs, DNSNames: n.DNSNames, KeyUsage: ku, ExtKeyUsage: []x509.ExtKeyUsage{n.Usage},
		NotBefore: n.Now.Add(-5 * time.Minute), NotAfter: notAfter,
	})
	return cert, key, capped, err
}
