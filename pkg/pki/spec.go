package pki

import "fmt"

// Kind is what an inventory item is.
type Kind string

const (
	KindCA             Kind = "ca"
	KindLeaf           Kind = "leaf"
	KindKeyPair        Kind = "keypair"         // sa.key / sa.pub: no certificate
	KindKubeconfig     Kind = "kubeconfig"      // client certificate embedded in (or referenced by) a kubeconfig
	KindKubeletServing Kind = "kubelet-serving" // kubelet's :10250 certificate
	KindKubeletClient  Kind = "kubelet-client"  // kubelet's rotating client certificate
)

// Location is the directory an item lives in.
type Location string

const (
	LocPKI        Location = "pki"
	LocKubeconfig Location = "kubeconfig"
	LocKubelet    Location = "kubelet"
	LocUser       Location = "user"
)

// Component names, for "who reads this file".
const (
	CompEtcd              = "etcd"
	CompAPIServer         = "apiserver"
	CompControllerManager = "controller-manager"
	CompScheduler         = "scheduler"
	CompKubelet           = "kubelet"
	CompUser              = "user"
)

// Spec describes one item of a kubeadm node, the way kubeadm's certlist does.
type Spec struct {
	Name     string   // inventory name, kubeadm's where it has one: apiserver, etcd-server, admin.conf
	LongName string   // what it is for, in words
	Kind     Kind     // what it is
	Loc      Location // which directory
	// BaseName is the file name without extension for PKI items (etcd/server -> etcd/server.crt
	// and etcd/server.key), or the file name for kubeconfigs and kubelet files.
	BaseName string
	// KeyName is the key file for kubelet items whose key is separate (kubelet.key); empty
	// means BaseName.key for PKI items and the same file for combined PEMs.
	KeyName string
	CAName  string // the issuing CA's Name; empty for CAs (self-signed) and key pairs
	// Components are the static pods or services that read the item; a renewal must restart
	// exactly those.
	Components []string
	// Optional items are legitimately absent on some nodes of the same role (super-admin.conf
	// exists only on the first control-plane node).
	Optional bool
}

func (s Spec) String() string { return s.Name }

// IsCA reports whether the item is a certificate authority.
func (s Spec) IsCA() bool { return s.Kind == KindCA }

// Default returns the items of a kubeadm node, CAs first, in kubeadm's order.
func Default() []Spec {
	return []Spec{
		{Name: "ca", LongName: "Kubernetes cluster CA", Kind: KindCA, Loc: LocPKI, BaseName: "ca",
			Components: []string{CompAPIServer, CompControllerManager}},
		{Name: "etcd-ca", LongName: "etcd CA", Kind: KindCA, Loc: LocPKI, BaseName: "etcd/ca",
			Components: []string{CompEtcd, CompAPIServer}},
		{Name: "front-proxy-ca", LongName: "front-proxy CA", Kind: KindCA, Loc: LocPKI, BaseName: "front-proxy-ca",
			Components: []string{CompAPIServer, CompControllerManager}},
		{Name: "sa", LongName: "service-account signing key pair", Kind: KindKeyPair, Loc: LocPKI, BaseName: "sa",
			Components: []string{CompAPIServer, CompControllerManager}},

		{Name: "apiserver", LongName: "API server serving certificate", Kind: KindLeaf, Loc: LocPKI, BaseName: "apiserver", CAName: "ca",
			Components: []string{CompAPIServer}},
		{Name: "apiserver-kubelet-client", LongName: "API server client certificate for kubelets", Kind: KindLeaf, Loc: LocPKI, BaseName: "apiserver-kubelet-client", CAName: "ca",
			Components: []string{CompAPIServer}},
		{Name: "apiserver-etcd-client", LongName: "API server client certificate for etcd", Kind: KindLeaf, Loc: LocPKI, BaseName: "apiserver-etcd-client", CAName: "etcd-ca",
			Components: []string{CompAPIServer}},
		{Name: "front-proxy-client", LongName: "front-proxy client certificate", Kind: KindLeaf, Loc: LocPKI, BaseName: "front-proxy-client", CAName: "front-proxy-ca",
			Components: []string{CompAPIServer}},
		{Name: "etcd-server", LongName: "etcd serving certificate", Kind: KindLeaf, Loc: LocPKI, BaseName: "etcd/server", CAName: "etcd-ca",
			Components: []string{CompEtcd}},
		{Name: "etcd-peer", LongName: "etcd peer certificate", Kind: KindLeaf, Loc: LocPKI, BaseName: "etcd/peer", CAName: "etcd-ca",
			Components: []string{CompEtcd}},
		{Name: "etcd-healthcheck-client", LongName: "etcd health-check client certificate", Kind: KindLeaf, Loc: LocPKI, BaseName: "etcd/healthcheck-client", CAName: "etcd-ca"},

		{Name: "admin.conf", LongName: "cluster-admin kubeconfig", Kind: KindKubeconfig, Loc: LocKubeconfig, BaseName: "admin.conf", CAName: "ca"},
		{Name: "super-admin.conf", LongName: "break-glass super-admin kubeconfig", Kind: KindKubeconfig, Loc: LocKubeconfig, BaseName: "super-admin.conf", CAName: "ca", Optional: true},
		{Name: "controller-manager.conf", LongName: "controller-manager kubeconfig", Kind: KindKubeconfig, Loc: LocKubeconfig, BaseName: "controller-manager.conf", CAName: "ca",
			Components: []string{CompControllerManager}},
		{Name: "scheduler.conf", LongName: "scheduler kubeconfig", Kind: KindKubeconfig, Loc: LocKubeconfig, BaseName: "scheduler.conf", CAName: "ca",
			Components: []string{CompScheduler}},
		{Name: "kubelet.conf", LongName: "kubelet kubeconfig", Kind: KindKubeconfig, Loc: LocKubeconfig, BaseName: "kubelet.conf", CAName: "ca",
			Components: []string{CompKubelet}},
		{Name: "user-kubeconfig", LongName: "the user's ~/.kube/config", Kind: KindKubeconfig, Loc: LocUser, BaseName: "config", CAName: "ca",
			Components: []string{CompUser}, Optional: true},

		{Name: "kubelet-serving", LongName: "kubelet serving certificate (:10250)", Kind: KindKubeletServing, Loc: LocKubelet, BaseName: "kubelet.crt", KeyName: "kubelet.key",
			Components: []string{CompKubelet}},
		{Name: "kubelet-client", LongName: "kubelet rotating client certificate", Kind: KindKubeletClient, Loc: LocKubelet, BaseName: "kubelet-client-current.pem", CAName: "ca",
			Components: []string{CompKubelet}},
	}
}

// Lookup returns the spec named name.
func Lookup(specs []Spec, name string) (Spec, error) {
	for _, s := range specs {
		if s.Name == name {
			return s, nil
		}
	}
	return Spec{}, fmt.Errorf("unknown certificate %q (see 'certctl inspect' for the names)", name)
}

// Names returns the names of specs, in order.
func Names(specs []Spec) []string {
	out := make([]string, len(specs))
	for i, s := range specs {
		out[i] = s.Name
	}
	return out
}
