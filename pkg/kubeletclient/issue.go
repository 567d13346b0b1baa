package kubeletclient

import (
	"crypto/x509"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/certctl/certctl/pkg/fsutil"
	"github.com/certctl/certctl/pkg/pki"
)

// IssueOptions drive Issue.
type IssueOptions struct {
	Layout       pki.Layout
	Node         string
	Validity     time.Duration // default one year (kubeadm's), capped at the CA's expiry
	KeyAlgorithm string        // default ecdsa-p256, the kubelet's own choice
	Now          time.Time
	// CA signs instead of the node's cluster CA (a CA rotation issues from the new CA
	// before it becomes ca.crt); nil: the node's ca.crt and ca.key.
	CA *pki.Item
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
	ca := o.CA
	var err error
	if ca == nil {
		ca, err = pki.SigningCA(o.Layout, noCAKey)
		if err != nil {
			return nil, err
		}
	}
	cert, key, capped, err := pki.SignNodeCert(ca, pki.NodeCert{Node: o.Node, Usage: x509.ExtKeyUsageClientAuth,
		Validity: o.Validity, KeyAlgorithm: o.KeyAlgorithm, Now: o.Now})
	if err != nil {
		return nil, fmt.Errorf("sign the kubelet client certificate: %w", err)
	}
	out := &Issued{Capped: capped}
	keyPEM, err := pki.EncodePrivateKey(key)
	if err != nil {
		return nil, err
	}
	out.Pair = &Pair{Cert: cert, Chain: []*x509.Certificate{cert}, Key: key, PEM: append(pki.EncodeCertificates(cert), keyPEM...)}
	return out, nil
}

// noCAKey is what to do on a node without the cluster CA's key (a worker).
const noCAKey = "on a worker give --server, --token and --discovery-token-ca-cert-hash (kubeadm token create --print-join-command on a control-plane node prints them), or run 'certctl kubelet-client issue NODE -o FILE' there and 'certctl kubelet-client install FILE' here"

// IssueFile is certctl kubelet-client issue: Issue, the certificate and key written to file
// (0600, atomically), and what to do with it said on w.
func IssueFile(o IssueOptions, file string, w io.Writer) error {
	if file == "" {
		return fmt.Errorf("-o FILE is required")
	}
	issued, err := Issue(o)
	if err != nil {
		return err
	}
	if err := fsutil.WriteFileAtomic(file, issued.PEM, 0o600); err != nil {
		return err
	}
	fmt.Fprintf(w, "wrote %s: %s, valid until %s\ninstall it on %s: certctl kubelet-client install %s\n", file, issued.Cert.Subject.CommonName, issued.Cert.NotAfter.UTC().Format(time.RFC3339), o.Node, filepath.Base(file))
	if issued.Capped {
		fmt.Fprintln(w, "note: the validity was cut at the cluster CA's expiry")
	}
	return nil
}
