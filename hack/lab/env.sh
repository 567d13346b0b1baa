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
K8S_VERSION=${K8S_VERSION:-v1.32.4}
ETCD_VERSION=${ETCD_VERSION:-v3.5.16}
PAUSE_IMAGE=registry.k8s.io/pause:3.10
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

lab_ctr() { ctr --address "$LAB_SOCK" -n k8s.io "$@"; }
