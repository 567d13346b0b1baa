package pki

import (
	"os"
	"path/filepath"
	"strings"
)

// Layout says where a node's files are. Every path is absolute and already resolved under
// Root, so certctl can work on a copy of a node (--root /tmp/copy) or on a host mounted into
// a container (--root /host).
type Layout struct {
	Root           string
	PKIDir         string // /etc/kubernetes/pki
	KubeconfigDir  string // /etc/kubernetes
	ManifestsDir   string // /etc/kubernetes/manifests
	KubeletDir     string // /var/lib/kubelet
	UserKubeconfig string // $HOME/.kube/config
}

// LayoutOptions are the user's overrides. Empty fields take kubeadm's defaults. Paths are
// node paths: they are resolved under Root like the defaults.
type LayoutOptions struct {
	Root           string
	PKIDir         string
	KubeconfigDir  string
	ManifestsDir   string
	KubeletDir     string
	UserKubeconfig string
	Home           string // defaults to $HOME, then /root
}

// Kubeadm defaults.
const (
	DefaultKubeconfigDir = "/etc/kubernetes"
	DefaultPKIDir        = "/etc/kubernetes/pki"
	DefaultManifestsDir  = "/etc/kubernetes/manifests"
	DefaultKubeletDir    = "/var/lib/kubelet"
)

// NewLayout resolves o into absolute paths under o.Root.
func NewLayout(o LayoutOptions) Layout {
	root := o.Root
	if root == "" {
		root = "/"
	}
	root = filepath.Clean(root)
	pick := func(v, def string) string {
		if v == "" {
			v = def
		}
		return UnderRoot(root, v)
	}
	home := o.Home
	if home == "" {
		home = os.Getenv("HOME")
	}
	if home == "" {
		home = "/root"
	}
	kcDir := pick(o.KubeconfigDir, DefaultKubeconfigDir)
	pkiDef := DefaultPKIDir
	manDef := DefaultManifestsDir
	if o.KubeconfigDir != "" {
		// An overridden kubernetes dir carries its pki/ and manifests/ with it.
		pkiDef = filepath.Join(o.KubeconfigDir, "pki")
		manDef = filepath.Join(o.KubeconfigDir, "manifests")
	}
	return Layout{
		Root:           root,
		PKIDir:         pick(o.PKIDir, pkiDef),
		KubeconfigDir:  kcDir,
		ManifestsDir:   pick(o.ManifestsDir, manDef),
		KubeletDir:     pick(o.KubeletDir, DefaultKubeletDir),
		UserKubeconfig: pick(o.UserKubeconfig, filepath.Join(home, ".kube", "config")),
	}
}

// UnderRoot joins a node path to root. A path that is already under root is returned as is,
// so resolving twice is harmless.
func UnderRoot(root, p string) string {
	if root == "" || root == "/" {
		return filepath.Clean(p)
	}
	p = filepath.Clean(p)
	if p == root || len(p) > len(root) && p[:len(root)] == root && p[len(root)] == filepath.Separator {
		return p
	}
	return filepath.Join(root, p)
}

// Dir returns the directory of a location.
func (l Layout) Dir(loc Location) string {
	switch loc {
	case LocPKI:
		return l.PKIDir
	case LocKubeconfig:
		return l.KubeconfigDir
	case LocKubelet:
		return filepath.Join(l.KubeletDir, "pki")
	case LocUser:
		return filepath.Dir(l.UserKubeconfig)
	}
	return l.Root
}

// BackupRoot is where certctl keeps backups and its journal: beside the PKI, under the
// kubernetes dir, so a backup travels with the tree it belongs to.
func (l Layout) BackupRoot() string { return filepath.Join(l.KubeconfigDir, "certctl-backups") }

// StateDir holds certctl's journal, lock and last-run records.
func (l Layout) StateDir() string { return filepath.Join(l.KubeconfigDir, ".certctl") }

// NodePath is p as the node itself sees it: p without the Root prefix. Files certctl writes
// into other files (a kubelet config's tlsCertFile) must name node paths.
func (l Layout) NodePath(p string) string {
	if l.Root == "/" || l.Root == "" {
		return p
	}
	if rel, err := filepath.Rel(l.Root, p); err == nil && !strings.HasPrefix(rel, "..") {
		return "/" + rel
	}
	return p
}
