package kubeletserving

import (
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/certctl/certctl/pkg/pki"
)

// Issued certificate files, node paths (under /var/lib/kubelet/pki).
const (
	IssuedCertName = "kubelet-server-certctl.crt"
	IssuedKeyName  = "kubelet-server-certctl.key"
)

// IssueOptions drive Issue.
type IssueOptions struct {
	Layout       pki.Layout
	Node         string
	IPs          []net.IP
	DNSNames     []string
	Days         int    // default 365, capped at the CA's expiry
	KeyAlgorithm string // default ecdsa-p256, the kubelet's own choice
	Now          time.Time
}

// IssueResult says what Issue wrote.
type IssueResult struct {
	CertPath, KeyPath string
	Cert              *x509.Certificate
	BackupID          string
	Capped            bool // the validity was cut at the CA's expiry
	// BootstrapOn: serverTLSBootstrap is true, and with it the kubelet ignores tlsCertFile.
	BootstrapOn bool
}

// Issue is the write-up's second fix: a serving certificate for the node signed by the
// cluster CA (CN system:node:<node>, O system:nodes, the SANs given), installed under the
// kubelet's pki dir, with tlsCertFile/tlsPrivateKeyFile pointing at it. The caller restarts
// the kubelet.
func Issue(o IssueOptions) (*IssueResult, error) {
	if o.Node == "" {
		return nil, fmt.Errorf("--node is required")
	}
	if len(o.IPs) == 0 {
		return nil, fmt.Errorf("give the node's IP with --ip: metrics-server dials the InternalIP, so it must be covered")
	}
	if o.Days <= 0 {
		o.Days = 365
	}
	if o.Days > 36500 {
		return nil, fmt.Errorf("--days %d is absurd (at most 36500)", o.Days)
	}
	if o.KeyAlgorithm == "" {
		o.KeyAlgorithm = pki.AlgECDSAP256
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	ca, err := pki.SigningCA(o.Layout, "sign on the node that holds it (or with --root pointing at a copy of its PKI), or use 'certctl kubelet-serving enable'")
	if err != nil {
		return nil, err
	}
	cfgPath := ConfigPath(o.Layout)
	cfg, err := os.ReadFile(cfgPath)
	if err != nil {
		return nil, fmt.Errorf("read kubelet config %s: %w", cfgPath, err)
	}
	res := &IssueResult{}
	cert, key, capped, err := pki.SignNodeCert(ca, pki.NodeCert{Node: o.Node, Usage: x509.ExtKeyUsageServerAuth, IPs: o.IPs, DNSNames: o.DNSNames,
		Validity: time.Duration(o.Days) * 24 * time.Hour, KeyAlgorithm: o.KeyAlgorithm, Now: o.Now})
	if err != nil {
		return nil, fmt.Errorf("sign the serving certificate: %w", err)
	}
	res.Capped = capped
	keyPEM, err := pki.EncodePrivateKey(key)
	if err != nil {
		return nil, err
	}
	// The kubelet reads the paths as they are on the node, not under --root.
	nodeDir := o.Layout.NodePath(filepath.Join(o.Layout.KubeletDir, "pki"))
	newCfg, _, err := EditConfig(cfg, Field{"tlsCertFile", filepath.Join(nodeDir, IssuedCertName)}, Field{"tlsPrivateKeyFile", filepath.Join(nodeDir, IssuedKeyName)})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfgPath, err)
	}
	dir := filepath.Join(o.Layout.KubeletDir, "pki")
	res.CertPath, res.KeyPath, res.Cert = filepath.Join(dir, IssuedCertName), filepath.Join(dir, IssuedKeyName), cert
	res.BootstrapOn = HasValue(cfg, "serverTLSBootstrap", "true")
	files := map[string][]byte{res.KeyPath: keyPEM, res.CertPath: pki.EncodeCertificates(cert), cfgPath: newCfg}
	if err := writeWithBackup(o.Layout, "kubelet-serving issue", files, o.Now, &res.BackupID); err != nil {
		return res, err
	}
	return res, nil
}
