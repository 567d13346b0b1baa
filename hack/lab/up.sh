#!/usr/bin/env bash
# Brings up the lab: a real single-node kubeadm control plane on this machine, with no image
# registry and no traffic off the machine.
#
#   hack/lab/up.sh            (as root; idempotent: a lab that is up and healthy is left alone)
#
# What it does: installs runc from Debian if missing, builds containerd 2.x
# (hack/build-containerd.sh), the Kubernetes binaries and etcd (hack/build-k8s.sh; the etcd
# kubeadm names for K8S_VERSION), all cached, makes one-layer images of them plus a pause
# image and imports them into a private containerd, makes the network namespace $LAB_NS with
# $LAB_IP on eth0 (kubeadm refuses a loopback advertise address), runs `kubeadm init` in it and
# starts the kubelet itself (no systemd here). The node's files are the real ones:
# /etc/kubernetes, /var/lib/kubelet, /var/lib/etcd; it refuses to touch them if they hold files
# and are not the lab's (empty directories are fine). hack/lab/down.sh undoes all of it. See hack/lab/README.md.
set -euo pipefail
. "$(dirname "$0")/env.sh"
. "$(dirname "$0")/multi-env.sh"

[ "$(id -u)" = 0 ] || { echo "lab: run as root" >&2; exit 1; }

if [ -f "$LAB_MARK" ] && lab_pid kubelet >/dev/null && lab_pid containerd >/dev/null &&
	"${LAB_NSENTER[@]}" curl -fsS --max-time 2 --cacert /etc/kubernetes/pki/ca.crt https://127.0.0.1:6443/livez >/dev/null 2>&1; then
	lab_log "already up (apiserver on $LAB_IP:6443 in netns $LAB_NS is live)"
	exit 0
fi
# A multi-node lab (hack/lab/multi.sh) left behind, say by a machine stopped while it was up,
# holds the netns names and the mount targets below: take it down first.
if [ -d "$ML_DIR/nodes" ] || [ -d "$ML_RUN" ] || ip netns list | grep -q "^$ML_PREFIX-"; then
	lab_log "a multi-node lab is (partly) up: taking it down first"
	"$(dirname "$0")/multi.sh" down
fi
# holds_files DIR: DIR exists and is not empty (an empty directory is no node's).
holds_files() { [ -d "$1" ] && [ -n "$(ls -A "$1" 2>/dev/null)" ] || { [ -e "$1" ] && [ ! -d "$1" ]; }; }
if holds_files /etc/kubernetes && [ ! -f "$LAB_MARK" ]; then
	echo "lab: /etc/kubernetes holds files and is not the lab's: this machine has a real node; refusing" >&2
	exit 1
fi
for d in /var/lib/kubelet /var/lib/etcd; do
	if holds_files "$d" && [ ! -f "$LAB_MARK" ]; then
		echo "lab: $d holds files and is not the lab's; refusing" >&2
		exit 1
	fi
done
if [ -f "$LAB_MARK" ] || [ -d "$LAB_RUN" ] || ip netns list | grep -qw "$LAB_NS"; then
	lab_log "a previous lab is partly up: taking it down first"
	"$(dirname "$0")/down.sh"
fi

# --- tools -------------------------------------------------------------------------------
need=()
for c in runc ip nsenter curl; do command -v $c >/dev/null || need+=($c); done
if [ ${#need[@]} -gt 0 ]; then
	lab_log "installing runc iproute2 util-linux curl (missing: ${need[*]})"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends runc iproute2 util-linux curl >/dev/null
fi
# containerd is containerd 2.x built from the module proxy (hack/build-containerd.sh), not
# Debian's 1.6; a containerd the machine runs as a service is never touched.

lab_build_bins # BIN, CTRD_BIN, ETCD_VERSION, PAUSE_IMAGE
mkdir -p "$LAB_DIR" "$LAB_RUN" "$LAB_DIR/images"
cd "$HACK/.."

# --- images ------------------------------------------------------------------------------
. "$HACK/lab/images.sh"
mapfile -t tarballs < <(lab_build_images "$BIN" "$LAB_DIR/images")
[ ${#tarballs[@]} -ge 5 ] || { lab_log "expected 5 images, built: ${tarballs[*]}"; exit 1; }

# --- network namespace -------------------------------------------------------------------
lab_log "netns $LAB_NS: $LAB_IP/24 on eth0"
ip netns add "$LAB_NS"
ip link add lab-a type veth peer name lab-b
ip link set lab-a netns "$LAB_NS"
ip link set lab-b netns "$LAB_NS"
ip -n "$LAB_NS" link set lab-a name eth0
ip -n "$LAB_NS" addr add "$LAB_IP/24" dev eth0
ip -n "$LAB_NS" addr add "$LAB_GW/24" dev lab-b
ip -n "$LAB_NS" link set lo up
ip -n "$LAB_NS" link set eth0 up
ip -n "$LAB_NS" link set lab-b up
ip -n "$LAB_NS" route add default via "$LAB_GW" dev eth0 2>/dev/null || true

# --- sysctls the kubelet may change: saved for down.sh ------------------------------------
SYSCTLS="vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes"
: >"$LAB_DIR/sysctl.saved"
for s in $SYSCTLS; do
	v=$(sysctl -n "$s" 2>/dev/null) && echo "$s=$v" >>"$LAB_DIR/sysctl.saved"
done

# --- cgroups: the kubelet's cgroupRoot, in every v1 hierarchy --------------------------------
for h in /sys/fs/cgroup/*/; do
	[ -d "$h" ] && mkdir -p "$h$LAB_CGROUP" 2>/dev/null || true
done

# --- containerd --------------------------------------------------------------------------
# Host directories the lab's processes write to that down.sh removes again if the lab made them:
# containerd's shims put their sockets under /run/containerd/s whatever the state dir, the
# kubelet its pods' logs under /var/log/pods and /var/log/containers, certctl its run record
# under /var/lib/certctl.
for d in /run/containerd /var/log/pods /var/log/containers /var/lib/certctl; do
	[ -e "$d" ] || echo "$d"
done >"$LAB_DIR/created-dirs"
lab_containerd_config "$LAB_DIR/containerd" "$LAB_RUN/containerd" "$LAB_SOCK" "$LAB_DIR/cni/bin" "$LAB_DIR/cni/net.d" >"$LAB_DIR/containerd.toml"
lab_log "containerd on $LAB_SOCK"
# containerd starts its shim (containerd-shim-runc-v2) through PATH: the built one comes first.
setsid "${LAB_NSENTER[@]}" env PATH="$CTRD_BIN:$PATH" "$CTRD_BIN/containerd" --config "$LAB_DIR/containerd.toml" \
	</dev/null >"$LAB_DIR/containerd.log" 2>&1 &
echo $! >"$LAB_DIR/containerd.pid"
wait_for() { # wait_for SECONDS WHAT CMD...
	local deadline=$((SECONDS + $1)) what=$2; shift 2
	until "$@" >/dev/null 2>&1; do
		if [ $SECONDS -ge $deadline ]; then lab_log "timed out waiting for $what"; return 1; fi
		sleep 0.2
	done
}
wait_for 30 containerd lab_ctr version
for tarball in "${tarballs[@]}"; do
	lab_ctr images import --no-unpack=false "$tarball" >/dev/null
done
lab_ctr images ls -q | grep -v '^sha256:' | sed 's/^/lab: image /' >&2

# --- kubeadm init ------------------------------------------------------------------------
mkdir -p /etc/kubernetes && touch "$LAB_MARK"
cat >"$LAB_DIR/kubeadm.yaml" <<YAML
apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
localAPIEndpoint:
  advertiseAddress: $LAB_IP
  bindPort: 6443
nodeRegistration:
  name: $LAB_NODE
  criSocket: unix://$LAB_SOCK
  imagePullPolicy: Never
# The apiserver's first start on an empty etcd takes a minute or more on 2 busy cores, and
# kubeadm gives its first API calls (the admin ClusterRoleBinding) kubernetesAPICall: 1m.
timeouts:
  controlPlaneComponentHealthCheck: 8m0s
  kubernetesAPICall: 5m0s
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
kubernetesVersion: $K8S_VERSION
clusterName: certctl-lab
controlPlaneEndpoint: 127.0.0.1:6443
networking:
  serviceSubnet: 10.96.0.0/12
  podSubnet: 10.244.0.0/16
---
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
cgroupRoot: /$LAB_CGROUP
failCgroupV1: false
failSwapOn: false
oomScoreAdj: 0
containerRuntimeEndpoint: unix://$LAB_SOCK
YAML

start_kubelet() {
	if p=$(lab_pid kubelet); then kill "$p"; wait_for 30 "the kubelet to exit" bash -c "! kill -0 $p"; fi
	local flags=""
	[ -f /var/lib/kubelet/kubeadm-flags.env ] && flags=$(sed -n 's/^KUBELET_KUBEADM_ARGS="\(.*\)"/\1/p' /var/lib/kubelet/kubeadm-flags.env)
	local boot=()
	[ -f /etc/kubernetes/bootstrap-kubelet.conf ] && boot=(--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf)
	# shellcheck disable=SC2086
	setsid "${LAB_NSENTER[@]}" "$BIN/kubelet" --config=/var/lib/kubelet/config.yaml \
		--kubeconfig=/etc/kubernetes/kubelet.conf "${boot[@]}" $flags \
		</dev/null >>"$LAB_DIR/kubelet.log" 2>&1 &
	echo $! >"$LAB_DIR/kubelet.pid"
	lab_log "kubelet started (pid $!, log $LAB_DIR/kubelet.log)"
}

# kubeadm cannot start the kubelet without systemd: start it as soon as kubeadm has written
# its configuration, while kubeadm waits for the control plane.
(
	wait_for 120 "kubeadm to write the kubelet config" test -f /var/lib/kubelet/kubeadm-flags.env -a -f /var/lib/kubelet/config.yaml -a -f /etc/kubernetes/kubelet.conf || exit 1
	start_kubelet
) &
starter=$!
lab_log "kubeadm init (log $LAB_DIR/kubeadm-init.log)"
if ! "${LAB_NSENTER[@]}" "$BIN/kubeadm" init --config "$LAB_DIR/kubeadm.yaml" \
	--skip-phases=addon/kube-proxy,addon/coredns --ignore-preflight-errors=all \
	>"$LAB_DIR/kubeadm-init.log" 2>&1; then
	tail -30 "$LAB_DIR/kubeadm-init.log" >&2
	lab_log "kubeadm init failed; kubelet log tail:"; tail -20 "$LAB_DIR/kubelet.log" >&2 || true
	exit 1
fi
wait "$starter"
# kubelet-finalize pointed kubelet.conf at the rotated client certificate: restart the
# kubelet on it, as systemd would have.
start_kubelet
wait_for 120 "the apiserver" "${LAB_NSENTER[@]}" curl -fsS --max-time 2 --cacert /etc/kubernetes/pki/ca.crt https://127.0.0.1:6443/livez
# The lab's "~/.kube/config", kept out of the machine's real home.
mkdir -p "$LAB_DIR/home/.kube"
cp /etc/kubernetes/admin.conf "$LAB_DIR/home/.kube/config"
chmod 600 "$LAB_DIR/home/.kube/config"
lab_log "up: apiserver https://$LAB_IP:6443 (and 127.0.0.1:6443) inside netns $LAB_NS; run commands there with: ${LAB_NSENTER[*]} CMD"
