// Package e2e holds the end-to-end tests that run against the lab: a real single-node
// kubeadm control plane on this machine (hack/lab/up.sh), whose kubelet runs etcd,
// kube-apiserver, kube-controller-manager and kube-scheduler as static pods in containerd.
// They run with CERTCTL_LAB=1 (make e2e brings the lab up, runs them and takes it down) and
// skip loudly otherwise. They change the lab node's real files under /etc/kubernetes.
package e2e
