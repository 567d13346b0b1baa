# Sourced by the hack/lab scripts: names and paths of the lab, all overridable.
# The lab is one kubeadm control-plane node on this machine: its own network namespace, its
# own containerd (own root, state and socket), the real kubelet, the four static pods.
LAB_NS=${LAB_NS:-certctl-lab}
LAB_IP=${LAB_IP:-10.2.1.151}
LAB_GW=${LAB_GW:-10.2.1.1}
LAB_DIR=${LAB_DIR:-/var/lib/certctl-lab}          # containerd root, images, logs, pids
LAB_RUN=${LAB_RUN:-/run/certctl-lab}              # containerd state and socket
LAB_SOCK=$LAB_RUN/containerd.sock
LAB_CGROUP=${LAB_CGROUP:-certctl-lab}             # the kubelet's cgroupRoot
LAB_MARK=/etc/kubernetes/.certctl-lab             # /etc/kubernetes belongs to the lab
LAB_NODE=certctl-lab                              # the Node's name: static pods are <component>-$LAB_NODE
K8S_VERSION=${K8S_VERSION:-v1.37.2}
# The etcd and pause images are the ones `kubeadm config images list` names for K8S_VERSION
# (etcd 3.7.0 and pause 3.10.2 for v1.37): lab_build_bins sets ETCD_VERSION (unless set) and
# PAUSE_IMAGE from it.
ETCD_VERSION=${ETCD_VERSION:-}
PAUSE_IMAGE=${PAUSE_IMAGE:-}
# containerd 2.x built from the module proxy (hack/build-containerd.sh): Debian's 1.6 lacks the
# CRI RuntimeConfig call the kubelet makes. runc is Debian's.
CONTAINERD_VERSION=${CONTAINERD_VERSION:-v2.4.2}
LAB_CACHE=${CERTCTL_CACHE:-$HOME/.cache/certctl}
CTRD_BIN=$LAB_CACHE/containerd-$CONTAINERD_VERSION/bin # hack/build-containerd.sh's
# ctr 2.x otherwise warns on every call that cgroup v1 (this machine's) is deprecated.
export CONTAINERD_SUPPRESS_DEPRECATION_WARNINGS=1
LAB_NSENTER=(nsenter --net=/var/run/netns/$LAB_NS)
HACK=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

lab_log() { echo "lab: $(date +%H:%M:%S) $*" >&2; }

# lab_pid NAME: the pid in $LAB_DIR/NAME.pid if that process is alive.
lab_pid() {
	local f=$LAB_DIR/$1.pid p
	[ -f "$f" ] || return 1
	p=$(cat "$f")
	[ -n "$p" ] && kill -0 "$p" 2>/dev/null && echo "$p"
}

lab_ctr() { "$CTRD_BIN/ctr" --address "$LAB_SOCK" -n k8s.io "$@"; }

# lab_build_bins: builds (cached) containerd 2.x, kubeadm, then the etcd kubeadm names for
# K8S_VERSION and the other Kubernetes binaries; sets BIN (the Kubernetes binaries), CTRD_BIN,
# ETCD_VERSION and PAUSE_IMAGE.
lab_build_bins() {
	local images etcd
	CTRD_BIN=$(CONTAINERD_VERSION=$CONTAINERD_VERSION "$HACK/build-containerd.sh" | tail -1)
	BIN=$(K8S_VERSION=$K8S_VERSION "$HACK/build-k8s.sh" kubeadm | tail -1)
	images=$("$BIN/kubeadm" config images list --kubernetes-version "$K8S_VERSION" 2>/dev/null) ||
		{ lab_log "kubeadm config images list --kubernetes-version $K8S_VERSION failed"; return 1; }
	if [ -z "$ETCD_VERSION" ]; then
		etcd=$(sed -n 's#.*/etcd:\([0-9][0-9.]*\)-.*#\1#p' <<<"$images")
		[ -n "$etcd" ] || { lab_log "no etcd image in: $images"; return 1; }
		ETCD_VERSION=v$etcd
	fi
	[ -n "$PAUSE_IMAGE" ] || PAUSE_IMAGE=$(grep '/pause:' <<<"$images")
	BIN=$(K8S_VERSION=$K8S_VERSION ETCD_VERSION=$ETCD_VERSION "$HACK/build-k8s.sh" | tail -1)
	# build-k8s.sh keeps one etcd per Kubernetes version: say so if it is another one.
	local have
	have=$("$BIN/etcd" --version 2>/dev/null | sed -n 's/^etcd Version: //p')
	[ "v$have" = "$ETCD_VERSION" ] ||
		lab_log "warning: $BIN/etcd is $have, kubeadm $K8S_VERSION deploys $ETCD_VERSION (remove it to rebuild)"
	export ETCD_VERSION PAUSE_IMAGE
}
