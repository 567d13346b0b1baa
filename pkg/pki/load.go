package pki

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/certctl/certctl/pkg/kubeconfig"
	"gopkg.in/yaml.v3"
)

// Item is one inventory entry as found on disk.
type Item struct {
	Spec    Spec
	Path    string // the certificate (or kubeconfig, or sa.pub)
	KeyPath string // the private key file; equal to Path for combined PEMs and embedded kubeconfigs

	// Absent: the node does not have this item at all because of its role (no PKI dir on a
	// worker, no kubelet dir in a copied PKI tree, an optional file). Not a finding.
	Absent bool
	// Missing: the item should be there and is not. A finding.
	Missing bool

	Certs     []*x509.Certificate // the certificate file, leaf first
	Key       crypto.Signer       // nil when the key is not there or does not parse
	PublicKey crypto.PublicKey    // for key pairs (sa.pub)
	// Written is when a key pair's public key file was last written (kubeadm writes sa.key
	// and sa.pub together, and the rotation's phase issue both): the pair's age.
	Written   time.Time
	KeyAbsent bool // the key file does not exist (for a CA: externally managed)

	CertErr error // the certificate could not be read or parsed
	KeyErr  error // the key could not be read or parsed

	// Kubeconfig items.
	Kubeconfig   *kubeconfig.Credentials
	KubeconfigCA []*x509.Certificate // certificate-authority-data, parsed
}

// Cert returns the item's certificate, or nil.
func (it *Item) Cert() *x509.Certificate {
	if len(it.Certs) == 0 {
		return nil
	}
	return it.Certs[0]
}

// Inventory is every item of a node, in spec order.
type Inventory struct {
	Layout Layout
	Items  []*Item
	// ControlPlane is true when the node runs the control plane (see DetectRole).
	ControlPlane bool
	// Role is the node's role and RoleReason the evidence for it (DetectRole).
	Role       Role
	RoleReason string
	// KubeletConfig is the parsed /var/lib/kubelet/config.yaml, when present.
	KubeletConfig *KubeletConfig
}

// Get returns the item named name, or nil.
func (inv *Inventory) Get(name string) *Item {
	for _, it := range inv.Items {
		if it.Spec.Name == name {
			return it
		}
	}
	return nil
}

// KubeletConfig holds the fields of the kubelet's config file certctl looks at.
type KubeletConfig struct {
	Path               string
	ServerTLSBootstrap bool   `yaml:"serverTLSBootstrap"`
	TLSCertFile        string `yaml:"tlsCertFile"`
	TLSPrivateKeyFile  string `yaml:"tlsPrivateKeyFile"`
	Address            string `yaml:"address"`
	RotateCertificates bool   `yaml:"rotateCertificates"`
	// ContainerRuntimeEndpoint is the CRI socket, e.g. unix:///run/containerd/containerd.sock.
	ContainerRuntimeEndpoint string `yaml:"containerRuntimeEndpoint"`
}

// Load reads every spec from disk under l. It never fails as a whole: what cannot be read is
// recorded on the item, so the rest is still inspected.
func Load(l Layout, specs []Spec) *Inventory {
	inv := &Inventory{Layout: l}
	inv.Role, inv.RoleReason = DetectRole(l)
	inv.ControlPlane = inv.Role == RoleControlPlane
	if kc, err := LoadKubeletConfig(l.Resolve(filepath.Join(l.KubeletDir, "config.yaml"))); err == nil {
		inv.KubeletConfig = kc
	}
	for _, s := range specs {
		inv.Items = append(inv.Items, inv.load(s))
	}
	return inv
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// LoadKubeletConfig parses the kubelet's config file at path.
func LoadKubeletConfig(path string) (*KubeletConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var kc KubeletConfig
	if err := yaml.Unmarshal(data, &kc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	kc.Path = path
	return &kc, nil
}

// Paths returns the certificate and key file of s under l (for kubeconfigs both are the
// kubeconfig file), with symlinks resolved under the root (kubelet-client-current.pem is the
// dated PEM it links to). The kubelet serving item follows the kubelet config: tlsCertFile
// when set, the CA-signed kubelet-server-current.pem when present, else the self-signed
// kubelet.crt.
func (inv *Inventory) Paths(s Spec) (cert, key string) {
	cert, key = inv.paths(s)
	return inv.Layout.Resolve(cert), inv.Layout.Resolve(key)
}

func (inv *Inventory) paths(s Spec) (cert, key string) {
	l := inv.Layout
	dir := l.Dir(s.Loc)
	switch s.Kind {
	case KindCA, KindLeaf:
		return filepath.Join(dir, s.BaseName+".crt"), filepath.Join(dir, s.BaseName+".key")
	case KindKeyPair:
		return filepath.Join(dir, s.BaseName+".pub"), filepath.Join(dir, s.BaseName+".key")
	case KindKubeconfig:
		if s.Loc == LocUser {
			return l.UserKubeconfig, l.UserKubeconfig
		}
		p := filepath.Join(dir, s.BaseName)
		return p, p
	case KindKubeletServing:
		if kc := inv.KubeletConfig; kc != nil && kc.TLSCertFile != "" {
			return UnderRoot(l.Root, kc.TLSCertFile), UnderRoot(l.Root, orDefault(kc.TLSPrivateKeyFile, kc.TLSCertFile))
		}
		if cur := filepath.Join(dir, "kubelet-server-current.pem"); exists(l.Resolve(cur)) {
			return cur, cur
		}
		return filepath.Join(dir, s.BaseName), filepath.Join(dir, s.KeyName)
	}
	p := filepath.Join(dir, s.BaseName)
	if s.KeyName != "" {
		return p, filepath.Join(dir, s.KeyName)
	}
	return p, p
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func (inv *Inventory) load(s Spec) *Item {
	it := &Item{Spec: s}
	it.Path, it.KeyPath = inv.Paths(s)
	if !exists(inv.FollowLink(it.Path)) {
		if inv.absentByRole(s, it.Path) {
			it.Absent = true
		} else {
			it.Missing = true
		}
		return it
	}
	switch s.Kind {
	case KindKubeconfig:
		inv.loadKubeconfig(it)
	case KindKeyPair:
		data, err := os.ReadFile(it.Path)
		if err != nil {
			it.CertErr = fmt.Errorf("read %s: %w", it.Path, err)
			break
		}
		it.PublicKey, it.CertErr = ParsePublicKey(it.Path, data)
		if st, err := os.Stat(it.Path); err == nil {
			it.Written = st.ModTime()
		}
		it.Key, it.KeyAbsent, it.KeyErr = readKey(it.KeyPath)
	default:
		it.Certs, it.CertErr = readCerts(inv.FollowLink(it.Path))
		it.Key, it.KeyAbsent, it.KeyErr = readKey(inv.FollowLink(it.KeyPath))
	}
	return it
}

// absentByRole decides whether a missing file is simply not part of this node.
func (inv *Inventory) absentByRole(s Spec, path string) bool {
	if s.Optional {
		return true
	}
	switch s.Loc {
	case LocPKI:
		if !inv.ControlPlane {
			return true
		}
		// External etcd: no local etcd CA directory at all.
		if strings.HasPrefix(s.BaseName, "etcd/") || s.CAName == "etcd-ca" {
			return !exists(inv.Layout.Resolve(filepath.Join(inv.Layout.PKIDir, "etcd")))
		}
		return false
	case LocKubeconfig:
		if s.Name == "kubelet.conf" {
			return !exists(inv.Layout.KubeletDir)
		}
		return !inv.ControlPlane
	case LocKubelet:
		return !exists(inv.Layout.KubeletDir)
	}
	return !exists(filepath.Dir(path))
}

func readCerts(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return ParseCertificates(path, data)
}

// readKey reads a private key; absent reports a key file that does not exist.
func readKey(path string) (key crypto.Signer, absent bool, err error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, true, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read %s: %w", path, err)
	}
	key, err = ParsePrivateKey(path, data)
	return key, false, err
}

func (inv *Inventory) loadKubeconfig(it *Item) {
	_, creds, err := kubeconfig.Load(it.Path)
	if err != nil {
		it.CertErr = err
		return
	}
	it.Kubeconfig = creds
	if len(creds.CAData) > 0 {
		it.KubeconfigCA, _ = ParseCertificates(it.Path+" (certificate-authority-data)", creds.CAData)
	} else if creds.CAFile != "" {
		it.KubeconfigCA, _ = readCerts(inv.resolve(it.Path, creds.CAFile))
	}
	switch {
	case creds.Embedded():
		it.Certs, it.CertErr = ParseCertificates(it.Path+" (client-certificate-data)", creds.CertData)
		if len(creds.KeyData) == 0 {
			it.KeyAbsent = true
		} else {
			it.Key, it.KeyErr = ParsePrivateKey(it.Path+" (client-key-data)", creds.KeyData)
		}
	case creds.CertFile != "":
		// kubelet.conf points at the rotating kubelet-client-current.pem.
		certPath := inv.resolve(it.Path, creds.CertFile)
		it.Certs, it.CertErr = readCerts(inv.FollowLink(certPath))
		keyPath := certPath
		if creds.KeyFile != "" {
			keyPath = inv.resolve(it.Path, creds.KeyFile)
		}
		it.KeyPath = keyPath
		it.Key, it.KeyAbsent, it.KeyErr = readKey(inv.FollowLink(keyPath))
	case creds.Token:
		// Token or exec-plugin users carry no certificate: nothing to check.
	default:
		it.CertErr = fmt.Errorf("%s: user %q has no client certificate", it.Path, creds.UserName)
	}
}

// resolve maps a path written in a kubeconfig to this machine: absolute node paths go under
// the root, relative ones are relative to the kubeconfig's directory; symlinks (the kubelet's
// absolute ones) are resolved under the root.
func (inv *Inventory) resolve(kubeconfigPath, p string) string {
	if !filepath.IsAbs(p) {
		p = filepath.Join(filepath.Dir(kubeconfigPath), p)
	}
	return inv.Layout.Resolve(p)
}

// FollowLink resolves symbolic links in the last element of p the way the node would: the
// kubelet writes kubelet-client-current.pem as a link to an absolute node path, which under
// --root must resolve under the root, not on this machine. Under "/" p is returned as is.
func (inv *Inventory) FollowLink(p string) string { return FollowLink(inv.Layout.Root, p) }

// FollowLink is Inventory.FollowLink for a given root.
func FollowLink(root, p string) string {
	if root == "" || root == "/" {
		return p
	}
	for range 8 {
		target, err := os.Readlink(p)
		if err != nil {
			return p
		}
		if filepath.IsAbs(target) {
			p = UnderRoot(root, target)
		} else {
			p = filepath.Join(filepath.Dir(p), target)
		}
	}
	return p
}
