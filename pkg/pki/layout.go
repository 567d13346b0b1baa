package pki

import (
	"os"
	"path/filepath"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"

	"github.com/certctl/certctl/pkg/kubeconfig"
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

// UnderRoot maps a node path to this machine: p joined to root with every symlink on the way
// resolved inside root, as the node itself would resolve it. An absolute link (the kubelet's
// kubelet-client-current.pem -> /var/lib/kubelet/pki/kubelet-client-<date>.pem) is read
// relative to root, not to the filesystem certctl runs in, and neither a link nor ".." in p
// ever leads out of root: "../../etc" is root/etc. Relative paths are relative to the node's
// "/". A path that is already under root is taken as that node path, so resolving twice is
// harmless.
//
// The links are resolved by github.com/cyphar/filepath-securejoin (what runc and the kubelet
// use for the same job). With root "/" the path is only cleaned: the operating system
// resolves the links itself, and there is nothing to escape from.
func UnderRoot(root, p string) string {
	if root == "" || root == "/" {
		return filepath.Clean(p)
	}
	root = filepath.Clean(root)
	if rel, ok := strings.CutPrefix(filepath.Clean(p), root); ok && (rel == "" || rel[0] == filepath.Separator) {
		p = rel
	}
	// Lexically first: ".." stops at the node's "/".
	node := filepath.Clean(string(filepath.Separator) + p)
	full, err := securejoin.SecureJoin(root, node)
	if err != nil {
		// A link loop or an unreadable directory: the lexical path, still under root; reading
		// it then reports the problem with the file's name.
		return filepath.Join(root, node)
	}
	return full
}

// Resolve is UnderRoot(l.Root, p): a node path, or a path under the root, with its links
// resolved inside the root.
func (l Layout) Resolve(p string) string { return UnderRoot(l.Root, p) }

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

// PendingManifestsDir holds static-pod manifests a change wrote for the restart that follows
// it to install (the kubelet would restart a component at once, uncontrolled, on a manifest
// edited in place).
func (l Layout) PendingManifestsDir() string { return filepath.Join(l.StateDir(), "pending") }

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

// AdminConf is the cluster-admin kubeconfig kubeadm writes (admin.conf).
func (l Layout) AdminConf() string { return filepath.Join(l.KubeconfigDir, "admin.conf") }

// Where is where a command on l's node finds its API client: flag (--kubeconfig, a node path
// under the root) when given, else admin.conf, else the user's kubeconfig.
func (l Layout) Where(flag string) kubeconfig.Where {
	w := kubeconfig.Where{Admin: l.AdminConf(), User: l.UserKubeconfig}
	if flag != "" {
		w.Flag = UnderRoot(l.Root, flag)
	}
	return w
}
