// Package kubeletclient repairs the kubelet's own client certificate (kubelet.conf ->
// /var/lib/kubelet/pki/kubelet-client-current.pem) in place, without `kubeadm reset` and a
// re-join: on a control-plane node it signs a new one with the cluster CA; on a worker it
// verifies the cluster CA against a discovery hash as `kubeadm join` does and writes a
// bootstrap kubeconfig so that the kubelet requests a new one itself; or it installs a
// certificate issued elsewhere. It writes the files exactly as the kubelet does and changes
// nothing else on the node. It never prints: progress goes to an io.Writer.
package kubeletclient

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/certctl/certctl/pkg/backup"
	"github.com/certctl/certctl/pkg/fsutil"
	"github.com/certctl/certctl/pkg/kubeconfig"
	"github.com/certctl/certctl/pkg/pki"
)

// File names the kubelet uses (k8s.io/client-go/util/certificate's file store with the
// "kubelet-client" pair name).
const (
	CurrentName        = "kubelet-client-current.pem"
	filePrefix         = "kubelet-client"
	fileTimeLayout     = "2006-01-02-15-04-05"
	KubeletConfName    = "kubelet.conf"
	BootstrapConfName  = "bootstrap-kubelet.conf"
	NodeUserPrefix     = "system:node:"
	NodesGroup         = "system:nodes"
	defaultValidity    = 365 * 24 * time.Hour
	kubeletConfUser    = "default-auth"
	kubeletConfContext = "default-context"
)

// PKIDir is the kubelet's certificate directory.
func PKIDir(l pki.Layout) string { return filepath.Join(l.KubeletDir, "pki") }

// CurrentPath is kubelet-client-current.pem.
func CurrentPath(l pki.Layout) string { return filepath.Join(PKIDir(l), CurrentName) }

// KubeletConfPath is /etc/kubernetes/kubelet.conf.
func KubeletConfPath(l pki.Layout) string { return filepath.Join(l.KubeconfigDir, KubeletConfName) }

// BootstrapConfPath is /etc/kubernetes/bootstrap-kubelet.conf.
func BootstrapConfPath(l pki.Layout) string { return filepath.Join(l.KubeconfigDir, BootstrapConfName) }

// Pair is a kubelet client certificate with its key, as in one kubelet-client-*.pem file.
type Pair struct {
	Cert  *x509.Certificate
	Chain []*x509.Certificate
	Key   crypto.Signer
	PEM   []byte // certificate(s) then key
}

// ParsePair reads a combined PEM (certificate, then key, in any order) and checks that the key
// belongs to the certificate. name is used in errors.
func ParsePair(name string, data []byte) (*Pair, error) {
	certs, err := pki.ParseCertificates(name, data)
	if err != nil {
		return nil, err
	}
	key, err := pki.ParsePrivateKey(name, data)
	if err != nil {
		return nil, err
	}
	if err := pki.VerifyKeyPair(certs[0].PublicKey, key); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &Pair{Cert: certs[0], Chain: certs, Key: key, PEM: data}, nil
}

// CheckPair refuses a pair that is not a kubelet client certificate for node: CN
// system:node:<node>, O system:nodes, client auth, valid at now, signed by one of roots.
func CheckPair(name string, p *Pair, node string, roots *x509.CertPool, now time.Time) error {
	c := p.Cert
	if want := NodeUserPrefix + node; node != "" && c.Subject.CommonName != want {
		return fmt.Errorf("%s is for %q, not this node's %q: issue one for this node (certctl kubelet-client issue %s -o FILE)", name, c.Subject.CommonName, want, node)
	}
	if !strings.HasPrefix(c.Subject.CommonName, NodeUserPrefix) {
		return fmt.Errorf("%s is for %q, which is not a node identity (system:node:<name>)", name, c.Subject.CommonName)
	}
	if !slices.Contains(c.Subject.Organization, NodesGroup) {
		return fmt.Errorf("%s has organization %v, not %s: the apiserver would not treat it as a node", name, c.Subject.Organization, NodesGroup)
	}
	if now.After(c.NotAfter) || now.Before(c.NotBefore) {
		return fmt.Errorf("%s is valid from %s to %s, not now", name, c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339))
	}
	inter := x509.NewCertPool()
	for _, ic := range p.Chain[1:] {
		inter.AddCert(ic)
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return fmt.Errorf("%s does not verify against the cluster CA as a client certificate: %w", name, err)
	}
	return nil
}

// OldCert returns the certificate the kubelet uses now (kubelet-client-current.pem, else the
// one kubelet.conf embeds, else the newest kubelet-client-<time>.pem left in its directory),
// even when it has expired; nil when there is none.
func OldCert(l pki.Layout) *x509.Certificate {
	if data, err := os.ReadFile(pki.FollowLink(l.Root, CurrentPath(l))); err == nil {
		if certs, err := pki.ParseCertificates(CurrentPath(l), data); err == nil {
			return certs[0]
		}
	}
	if _, creds, err := kubeconfig.Load(KubeletConfPath(l)); err == nil && len(creds.CertData) > 0 {
		if certs, err := pki.ParseCertificates(KubeletConfPath(l), creds.CertData); err == nil {
			return certs[0]
		}
	}
	// The names sort by time (YYYY-MM-DD-HH-MM-SS): the last that parses is the newest.
	files, _ := filepath.Glob(filepath.Join(PKIDir(l), filePrefix+"-[0-9]*.pem"))
	for i := len(files) - 1; i >= 0; i-- {
		if data, err := os.ReadFile(files[i]); err == nil {
			if certs, err := pki.ParseCertificates(files[i], data); err == nil {
				return certs[0]
			}
		}
	}
	return nil
}

// NodeName is this node's name: the old certificate's CN, else kubelet.conf's user or
// context (kubeadm names them system:node:<name>), else explicit. An explicit name that
// differs from the old certificate's is refused: the kubelet would register as another node.
func NodeName(l pki.Layout, explicit string) (string, error) {
	if c := OldCert(l); c != nil {
		if n, ok := strings.CutPrefix(c.Subject.CommonName, NodeUserPrefix); ok && n != "" {
			if explicit != "" && explicit != n {
				return "", fmt.Errorf("the kubelet's current client certificate is for node %q, not %q: drop --node, or give the right name", n, explicit)
			}
			return n, nil
		}
	}
	if explicit != "" {
		return explicit, nil
	}
	if cfg, err := clientcmd.LoadFromFile(KubeletConfPath(l)); err == nil {
		for name := range cfg.AuthInfos {
			if n, ok := strings.CutPrefix(name, NodeUserPrefix); ok && n != "" {
				return n, nil
			}
		}
		for name := range cfg.Contexts {
			if n, ok := strings.CutPrefix(strings.SplitN(name, "@", 2)[0], NodeUserPrefix); ok && n != "" {
				return n, nil
			}
		}
	}
	// What the kubelet itself registers as: --hostname-override, else the hostname (a joined
	// worker's kubelet.conf names no node: its user is "default-auth").
	flags := l.Resolve(filepath.Join(l.KubeletDir, "kubeadm-flags.env"))
	if data, err := os.ReadFile(flags); err == nil {
		for _, f := range strings.Fields(strings.NewReplacer(`"`, " ", "'", " ").Replace(string(data))) {
			if n, ok := strings.CutPrefix(f, "--hostname-override="); ok && n != "" {
				return strings.ToLower(n), nil
			}
		}
	}
	if l.Root == "" || l.Root == "/" {
		if h, err := os.Hostname(); err == nil && h != "" {
			return strings.ToLower(h), nil
		}
	}
	return "", fmt.Errorf("cannot tell this node's name from %s, %s or %s: give --node NAME (kubectl get nodes)", CurrentPath(l), KubeletConfPath(l), flags)
}

// ClusterRoots is the cluster CA: ca.crt on a control-plane node, else what kubelet.conf or
// bootstrap-kubelet.conf trusts.
func ClusterRoots(l pki.Layout) (*x509.CertPool, []byte, error) {
	if data, err := os.ReadFile(filepath.Join(l.PKIDir, "ca.crt")); err == nil {
		pool := x509.NewCertPool()
		if pool.AppendCertsFromPEM(data) {
			return pool, data, nil
		}
	}
	for _, p := range []string{KubeletConfPath(l), BootstrapConfPath(l)} {
		_, creds, err := kubeconfig.Load(p)
		if err != nil {
			continue
		}
		data := creds.CAData
		if len(data) == 0 && creds.CAFile != "" {
			data, _ = os.ReadFile(pki.UnderRoot(l.Root, creds.CAFile))
		}
		pool := x509.NewCertPool()
		if len(data) > 0 && pool.AppendCertsFromPEM(data) {
			return pool, data, nil
		}
	}
	return nil, nil, fmt.Errorf("no cluster CA found in %s, %s or %s", filepath.Join(l.PKIDir, "ca.crt"), KubeletConfPath(l), BootstrapConfPath(l))
}

// InstallResult says what Install wrote.
type InstallResult struct {
	Path               string // the new kubelet-client-<time>.pem
	BackupID           string
	KubeletConfChanged bool
	// Previous is the file kubelet-client-current.pem pointed at before (a node path), if any.
	Previous string
}

// backupKubeletFiles backs up kubelet.conf, bootstrap-kubelet.conf and the file
// kubelet-client-current.pem points at (the backup keeps file contents, not links: the old
// target itself is never changed, so the link's old target is returned to be reported).
func backupKubeletFiles(l pki.Layout, command string, now time.Time) (*backup.Manifest, string, error) {
	paths := []string{KubeletConfPath(l), BootstrapConfPath(l)}
	prev := ""
	if t, err := os.Readlink(CurrentPath(l)); err == nil {
		prev = t
		paths = append(paths, pki.FollowLink(l.Root, CurrentPath(l)))
	} else if _, err := os.Stat(CurrentPath(l)); err == nil {
		paths = append(paths, CurrentPath(l)) // a regular file
	}
	m, err := backup.Create(fsutil.OS{}, l, command, paths, now)
	if err != nil {
		return nil, "", fmt.Errorf("back up before writing: %w", err)
	}
	return m, prev, nil
}

// Install writes pair as the kubelet's client certificate the way the kubelet itself does:
// a new /var/lib/kubelet/pki/kubelet-client-<YYYY-MM-DD-HH-MM-SS>.pem (certificate and key,
// 0600, atomic) and the kubelet-client-current.pem link swung to it (an absolute node path,
// replaced atomically), then makes kubelet.conf's user point at kubelet-client-current.pem.
// kubelet.conf and the old certificate are backed up first. kubelet.conf must exist.
func Install(l pki.Layout, pair *Pair, command string, now time.Time) (*InstallResult, error) {
	dir := PKIDir(l)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	name := fmt.Sprintf("%s-%s.pem", filePrefix, now.Format(fileTimeLayout))
	path := filepath.Join(dir, name)
	if _, err := os.Lstat(path); err == nil {
		return nil, fmt.Errorf("%s already exists: wait a second and run again", path)
	}
	confPath := KubeletConfPath(l)
	newConf, confChanged, err := pointAtCurrent(l, confPath)
	if err != nil {
		return nil, err
	}
	m, prev, err := backupKubeletFiles(l, command, now)
	if err != nil {
		return nil, err
	}
	res := &InstallResult{Path: path, BackupID: m.ID, KubeletConfChanged: confChanged, Previous: prev}
	fail := func(err error) (*InstallResult, error) {
		return res, fmt.Errorf("%w (the previous files are in backup %s: certctl restore %s)", err, m.ID, m.ID)
	}
	if err := fsutil.WriteFileAtomic(path, pair.PEM, 0o600); err != nil {
		return fail(err)
	}
	if err := SwapLink(CurrentPath(l), l.NodePath(path)); err != nil {
		return fail(err)
	}
	if confChanged {
		if err := fsutil.WriteFileAtomic(confPath, newConf, 0o600); err != nil {
			return fail(err)
		}
	}
	return res, nil
}

// SwapLink points link at target atomically: a new link beside it, renamed over it (what
// the kubelet's certificate store does with kubelet-client-updated.pem).
func SwapLink(link, target string) error {
	tmp := filepath.Join(filepath.Dir(link), fsutil.TempPrefix+filepath.Base(link)+"-link")
	_ = os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return fmt.Errorf("link %s: %w", link, err)
	}
	if err := os.Rename(tmp, link); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("link %s: %w", link, err)
	}
	return fsutil.SyncDir(filepath.Dir(link))
}

// pointAtCurrent returns kubelet.conf with its current user reading kubelet-client-current.pem
// (client-certificate and client-key, embedded data removed), and whether that changed it.
func pointAtCurrent(l pki.Layout, confPath string) ([]byte, bool, error) {
	cfg, err := clientcmd.LoadFromFile(confPath)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, false, fmt.Errorf("%s does not exist: this node never joined, or it was set aside; restore it (certctl backup list) or join the node", confPath)
		}
		return nil, false, fmt.Errorf("%s: not a valid kubeconfig: %w (restore it from a backup: certctl backup list)", confPath, err)
	}
	creds, err := kubeconfig.CurrentCredentials(confPath, cfg)
	if err != nil {
		return nil, false, err
	}
	user := cfg.AuthInfos[creds.UserName]
	cur := l.NodePath(CurrentPath(l))
	if user.ClientCertificate == cur && user.ClientKey == cur && len(user.ClientCertificateData) == 0 && len(user.ClientKeyData) == 0 {
		return nil, false, nil
	}
	out := cfg.DeepCopy()
	u := out.AuthInfos[creds.UserName]
	*u = clientcmdapi.AuthInfo{ClientCertificate: cur, ClientKey: cur}
	data, err := kubeconfig.Marshal(out)
	if err != nil {
		return nil, false, fmt.Errorf("%s: %w", confPath, err)
	}
	return data, true, nil
}
