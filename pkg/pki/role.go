package pki

import (
	"os"
	"path/filepath"
)

// Role is what a node runs: a control-plane node runs the control plane's static pods and
// holds its PKI; a worker runs only a kubelet.
type Role string

const (
	RoleControlPlane Role = "control-plane"
	RoleWorker       Role = "worker"
)

// ControlPlaneManifests are the static-pod manifests kubeadm writes on a control-plane node
// (etcd.yaml only with stacked etcd).
var ControlPlaneManifests = []string{"kube-apiserver.yaml", "kube-controller-manager.yaml", "kube-scheduler.yaml", "etcd.yaml"}

// ControlPlaneLabel is the label kubeadm puts on control-plane Nodes.
const ControlPlaneLabel = "node-role.kubernetes.io/control-plane"

// DetectRole tells a control-plane node from a worker by what the node runs, not by whether
// pki/ exists: kubeadm join leaves pki/ca.crt (the kubelet's client CA) and an empty
// manifests dir on every worker. The reason says which evidence decided, for the report.
//
//   - a control-plane static-pod manifest in the manifests dir: control plane;
//   - else the control plane's own PKI (ca.key, or apiserver.crt for an external CA): a
//     control-plane node whose manifests are moved out for a restart, or a copied PKI tree;
//   - else a kubelet.conf or a kubelet dir: a worker (what kubeadm join leaves);
//   - else a PKI dir with anything in it: a copied control-plane PKI tree.
func DetectRole(l Layout) (Role, string) {
	for _, m := range ControlPlaneManifests {
		if exists(l.Resolve(filepath.Join(l.ManifestsDir, m))) {
			return RoleControlPlane, "static-pod manifest " + m
		}
	}
	for _, f := range []string{"ca.key", "apiserver.crt"} {
		if exists(l.Resolve(filepath.Join(l.PKIDir, f))) {
			return RoleControlPlane, "control-plane PKI (" + f + ") without static-pod manifests"
		}
	}
	if exists(l.Resolve(filepath.Join(l.KubeconfigDir, "kubelet.conf"))) || exists(l.Resolve(l.KubeletDir)) {
		return RoleWorker, "kubelet only: no control-plane static-pod manifest, no control-plane PKI"
	}
	if entries, err := os.ReadDir(l.Resolve(l.PKIDir)); err == nil && len(entries) > 0 {
		return RoleControlPlane, "a PKI directory without a kubelet"
	}
	return RoleWorker, "no control-plane static-pod manifest, no control-plane PKI"
}
