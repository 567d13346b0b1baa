package carotate

import (
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/certctl/certctl/pkg/fsutil"
	"github.com/certctl/certctl/pkg/kubeletclient"
	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/renew"
)

// servingCurrent is the kubelet's CA-signed serving certificate link (serverTLSBootstrap).
const servingCurrent = "kubelet-server-current.pem"

// kubeletServing is the kubelet's serving certificate signed by the old cluster CA, to be
// re-issued by the new one with the same subject, SANs and usages: either the kubelet's own
// kubelet-server-current.pem link (serverTLSBootstrap; a new kubelet-server-<time>.pem and
// the link swung, as the kubelet's certificate store does) or a certificate and key named by
// tlsCertFile/tlsPrivateKeyFile (certctl kubelet-serving issue; replaced in place).
type kubeletServing struct {
	tmpl     pki.Template
	alg      string
	link     string // linkPath of kubelet-server-current.pem, or "" for tlsCertFile files
	target   string // where the link points now (node path)
	certPath string
	keyPath  string
	certMode os.FileMode
}

func planKubeletServing(l pki.Layout, inv *pki.Inventory, oldCA *x509.Certificate) (*kubeletServing, error) {
	it := inv.Get("kubelet-serving")
	if it == nil || it.Absent || it.Cert() == nil || it.Cert().CheckSignatureFrom(oldCA) != nil {
		return nil, nil
	}
	old := it.Cert()
	s := &kubeletServing{tmpl: pki.TemplateFrom(old), alg: pki.KeyAlgorithm(old.PublicKey), certPath: it.Path, keyPath: it.KeyPath, certMode: modeOr(it.Path, 0o644)}
	if !slices.Contains(pki.KeyAlgorithms, s.alg) {
		return nil, fmt.Errorf("kubelet serving certificate %s: its key is %s, which certctl cannot generate", it.Path, s.alg)
	}
	current := filepath.Join(kubeletclient.PKIDir(l), servingCurrent)
	if target, err := os.Readlink(current); err == nil && pki.FollowLink(l.Root, current) == it.Path {
		s.link, s.target = current, target
	} else if it.KeyPath == it.Path {
		return nil, fmt.Errorf("kubelet serving certificate %s: a combined PEM that is not the kubelet's %s link; re-issue it with certctl kubelet-serving issue", it.Path, servingCurrent)
	}
	return s, nil
}

// sign issues the new serving certificate and key from the new CA.
func (s *kubeletServing) sign(nw *parsed, now time.Time, days int) (certPEM, keyPEM []byte, err error) {
	key, err := pki.GenerateKey(s.alg)
	if err != nil {
		return nil, nil, err
	}
	t := s.tmpl
	t.NotBefore = now.Add(-renew.BackdateBy).Truncate(time.Second)
	t.NotAfter = now.Add(timeDays(days)).Truncate(time.Second)
	if t.NotAfter.After(nw.cert.NotAfter) {
		t.NotAfter = nw.cert.NotAfter
	}
	cert, err := pki.Sign(nw.cert, nw.key, key, t)
	if err != nil {
		return nil, nil, fmt.Errorf("kubelet serving certificate: %w", err)
	}
	keyPEM, err = pki.EncodePrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pki.EncodeCertificates(cert), keyPEM, nil
}

// edits are the in-place replacements of a tlsCertFile pair (nil for the link form).
func (s *kubeletServing) edits(nw *parsed, now time.Time, days int) ([]fileEdit, error) {
	if s.link != "" {
		return nil, nil
	}
	certPEM, keyPEM, err := s.sign(nw, now, days)
	if err != nil {
		return nil, err
	}
	return []fileEdit{
		{path: s.keyPath, data: keyPEM, mode: 0o600, what: "kubelet serving key, new", component: pki.CompKubelet},
		{path: s.certPath, data: certPEM, mode: s.certMode, what: "kubelet serving certificate re-issued by the new CA", component: pki.CompKubelet},
	}, nil
}

// swing writes a new kubelet-server-<time>.pem and points the link at it, recording both in
// step for Rollback.
func (s *kubeletServing) swing(l pki.Layout, nw *parsed, now time.Time, days int, step *Step) error {
	certPEM, keyPEM, err := s.sign(nw, now, days)
	if err != nil {
		return err
	}
	path := filepath.Join(filepath.Dir(s.link), "kubelet-server-"+now.Format("2006-01-02-15-04-05")+".pem")
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("%s already exists: wait a second and run again", path)
	}
	if err := fsutil.WriteFileAtomic(path, append(certPEM, keyPEM...), 0o600); err != nil {
		return err
	}
	step.Created = append(step.Created, l.NodePath(path))
	if err := kubeletclient.SwapLink(s.link, l.NodePath(path)); err != nil {
		return err
	}
	step.Links = append(step.Links, Link{Path: l.NodePath(s.link), Target: s.target})
	return nil
}
