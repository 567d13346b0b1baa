package kubeletclient

import (
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"path/filepath"
	"time"

	"github.com/certctl/certctl/pkg/pki"
	"k8s.io/apimachinery/pkg/util/validation"
)

// IssueOptions drive Issue.
type IssueOptions struct {
	Layout       pki.Layout
	Node         string
	Validity     time.Duration // default one year (kubeadm's), capped at the CA's expiry
	KeyAlgorithm string        // default ecdsa-p256, the kubelet's own choice
	Now          time.Time
}

// Issued is a signed kubelet client certificate.
type Issued struct {
	*Pair
	Capped bool // the validity was cut at the CA's expiry
}

// Issue signs a client certificate for system:node:<node> in group system:nodes with the
// cluster CA of the node at o.Layout: what `kubeadm kubeconfig user --org system:nodes
// --client-name system:node:<node>` makes, through pkg/pki's checked signing. It needs ca.key.
func Issue(o IssueOptions) (*Issued, error) {
	if errs := validation.IsDNS1123Subdomain(o.Node); len(errs) > 0 {
		return nil, fmt.Errorf("node name %q is not valid: %s", o.Node, errs[0])
	}
	if o.Validity == 0 {
		o.Validity = defaultValidity
	}
	if o.Validity < time.Hour || o.Validity > 100*365*24*time.Hour {
		return nil, fmt.Errorf("validity %s is out of range (1h to 100 years)", o.Validity)
	}
	if o.KeyAlgorithm == "" {
		o.KeyAlgorithm = pki.AlgECDSAP256
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	ca, err := loadCA(o.Layout)
	if err != nil {
		return nil, err
	}
	key, err := pki.GenerateKey(o.KeyAlgorithm)
	if err != nil {
		return nil, err
	}
	ku := x509.KeyUsageDigitalSignature
	if _, isRSA := key.Public().(*rsa.PublicKey); isRSA {
		ku |= x509.KeyUsageKeyEncipherment
	}
	out := &Issued{}
	notAfter := o.Now.Add(o.Validity)
	if notAfter.After(ca.Cert().NotAfter) {
		notAfter, out.Capped = ca.Cert().NotAfter, true
	}
	cert, err := pki.Sign(ca.Cert(), ca.Key, key, pki.Template{
		Subject:  pkix.Name{CommonName: NodeUserPrefix + o.Node, Organization: []string{NodesGroup}},
		KeyUsage: ku, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		NotBefore: o.Now.Add(-5 * time.Minute), NotAfter: notAfter,
	})
	if err != nil {
		return nil, fmt.Errorf("sign the kubelet client certificate: %w", err)
	}
	keyPEM, err := pki.EncodePrivateKey(key)
	if err != nil {
		return nil, err
	}
	out.Pair = &Pair{Cert: cert, Chain: []*x509.Certificate{cert}, Key: key, PEM: append(pki.EncodeCertificates(cert), keyPEM...)}
	return out, nil
}

// HasCAKey reports whether the node at l holds the cluster CA's key (a control-plane node).
func HasCAKey(l pki.Layout) bool {
	ca := pki.Load(l, pki.Default()).Get("ca")
	return ca != nil && ca.Key != nil
}

func loadCA(l pki.Layout) (*pki.Item, error) {
	ca := pki.Load(l, pki.Default()).Get("ca")
	switch {
	case ca == nil || ca.Missing || ca.Absent:
		return nil, fmt.Errorf("no cluster CA at %s: on a worker use --server/--token/--discovery-token-ca-cert-hash, or issue the certificate on a control-plane node (certctl kubelet-client issue NODE -o FILE) and install it here", filepath.Join(l.PKIDir, "ca.crt"))
	case ca.CertErr != nil:
		return nil, ca.CertErr
	case ca.KeyAbsent:
		return nil, fmt.Errorf("the cluster CA key %s is not on this node: use --server/--token/--discovery-token-ca-cert-hash, or issue the certificate on the node that holds it (certctl kubelet-client issue NODE -o FILE) and install it here", ca.KeyPath)
	case ca.KeyErr != nil:
		return nil, ca.KeyErr
	}
	if err := pki.VerifyKeyPair(ca.Cert().PublicKey, ca.Key); err != nil {
		return nil, fmt.Errorf("%s does not belong to %s: %w", ca.KeyPath, ca.Path, err)
	}
	return ca, nil
}
