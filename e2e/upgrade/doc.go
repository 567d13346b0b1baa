// Package upgrade is issue 19's "upgrade in the middle", end to end on the multi-node lab
// (hack/lab/multi.sh) made with an older Kubernetes release: certctl moves the cluster onto its
// load balancer (the balancer's SAN added) and rotates the cluster CA; then the real kubeadm of
// the newer release upgrades every node (`kubeadm upgrade apply` on the first control-plane
// node, `kubeadm upgrade node` on the others and the worker, each node's kubelet binary swapped
// and restarted); the test proves the SAN and the rotated CA survived, `certctl inspect` is
// clean everywhere and `certctl cluster renew all` works on the upgraded cluster.
//
// Its test needs the lab and runs only with the build tag upgradelab (`make e2e-upgrade` builds
// both releases' binaries, brings the lab up with K8S_VERSION=v1.36.3, runs it with
// `-tags upgradelab` and takes the lab down): without a lab it fails, it never skips.
// CERTCTL_UPGRADE_TO names the release to upgrade to (default v1.37.2); the lab's own release
// is the one multi.sh recorded.
package upgrade
