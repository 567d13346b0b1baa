#!/usr/bin/env bash
# The multi-node lab: a real kubeadm cluster of several nodes on this one machine, with no image
# registry and no traffic off the machine. By default three stacked control-plane nodes (cp1-3,
# 10.2.1.151-153, etcd of three members), one worker (worker1, 10.2.1.154) and haproxy at
# 10.2.1.139:6443 in front of the three apiservers. The cluster is made as case B found it in the
# field: controlPlaneEndpoint is cp1's address and no certificate has a SAN for the balancer.
#
#   hack/lab/multi.sh up                  idempotent; a healthy lab is left alone
#   hack/lab/multi.sh down                idempotent; removes everything it made
#   hack/lab/multi.sh status
#   hack/lab/multi.sh exec NODE CMD...    run CMD inside NODE (its net, mount and UTS namespaces)
#   hack/lab/multi.sh kubelet NODE start|stop|restart
#   hack/lab/multi.sh kubelet NODE upgrade VERSION   swap the node's kubelet for VERSION's, restart it
#   hack/lab/multi.sh bins VERSION        build (cached) VERSION's binaries and the etcd its kubeadm names
#   hack/lab/multi.sh images VERSION      VERSION's control-plane images into every node (before kubeadm upgrade)
#   hack/lab/multi.sh add-node NAME IP    a new machine: namespaces, containerd, images; not joined
#   hack/lab/multi.sh join NAME ENDPOINT [--control-plane] [--discovery-timeout DUR]
#   hack/lab/multi.sh remove-node NAME    stops and removes one node's namespaces and files
#   hack/lab/multi.sh image               rebuild the certctl image from this checkout, import it everywhere
#   hack/lab/multi.sh lb stop|start       stop haproxy (the balancer down), start it again
#   hack/lab/multi.sh net NODE cut|restore   the node's network cut (its link down), restored
#
# Each node: network namespace cml-NODE (veth eth0 to a bridge in namespace cml-br, which
# forwards nothing), a persistent mount namespace (private propagation) with per-node
# directories bind-mounted over /etc/kubernetes, /var/lib/kubelet, /var/lib/etcd,
# /etc/cni/net.d, /run/containerd, /run/netns, /var/log/pods, /var/log/containers,
# /var/lib/certctl and /etc/hosts, a UTS namespace whose hostname is the node name, its own
# containerd (2.x, hack/build-containerd.sh) on the default socket path, its own real kubelet
# (cgroup root /cml-NODE). All nodes share the host's PID namespace, as in the field's nested
# setups. See hack/lab/README.md.
set -euo pipefail
GIVEN_K8S_VERSION=${K8S_VERSION:-}
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
. "$(dirname "${BASH_SOURCE[0]}")/multi-env.sh"
# On a lab that is up, every command but `up` (join, add-node, ...) runs the release the lab was
# made with (a v1.37 kubeadm refuses to join a v1.35 cluster), unless K8S_VERSION is given.
if [ -z "$GIVEN_K8S_VERSION" ] && [ "${1:-}" != up ] && [ -s "$ML_DIR/k8s-version" ]; then
	K8S_VERSION=$(cat "$ML_DIR/k8s-version")
fi

[ "$(id -u)" = 0 ] || { echo "lab: run as root" >&2; exit 1; }
BIN=${BIN:-${CERTCTL_CACHE:-$HOME/.cache/certctl}/k8s-$K8S_VERSION/bin} # hack/build-k8s.sh's

ml_log() { echo "multilab: $(date +%H:%M:%S) $*" >&2; }
die() { ml_log "$*"; exit 1; }

NS_DIR=$ML_RUN/ns
BR_NS=$ML_PREFIX-br
LB_NS=$ML_PREFIX-lb
CLIENT_NS=$ML_PREFIX-client
# Node directories bind-mounted over these paths inside each node's mount namespace.
BINDS="etc-kubernetes:/etc/kubernetes var-lib-kubelet:/var/lib/kubelet var-lib-etcd:/var/lib/etcd
cni-net.d:/etc/cni/net.d run-containerd:/run/containerd run-netns:/run/netns log-pods:/var/log/pods
log-containers:/var/log/containers var-lib-certctl:/var/lib/certctl var-lib-cni:/var/lib/cni"
SYSCTLS="vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes"

node_dir() { echo "$ML_DIR/nodes/$1"; }
node_ip() { cat "$(node_dir "$1")/ip"; }
cp_nodes() { # the control-plane nodes' names, one a line (a node's role file says cp)
	local n
	for n in $(ls "$ML_DIR/nodes"); do
		[ "$(cat "$(node_dir "$n")/role" 2>/dev/null)" = cp ] && echo "$n"
	done
	return 0
}
node_index() { local ip; ip=$(node_ip "$1"); echo "${ip##*.}"; }
netns() { echo "$ML_PREFIX-$1"; }

# in NODE CMD...: run CMD inside the node, with a HOME of its own (kubeadm and kubectl look at
# ~/.kube/config before admin.conf, and $HOME is otherwise shared by every node).
in_node() {
	local n=$1; shift
	nsenter --net="/run/netns/$(netns "$n")" --mount="$NS_DIR/$n.mnt" --uts="$NS_DIR/$n.uts" \
		env HOME="$(node_dir "$n")/home" KUBECONFIG= PATH="$CTRD_BIN:$PATH" "$@"
}

# cg_exec CGROUP CMD...: exec CMD in CGROUP of every v1 hierarchy (the caller's process becomes
# CMD, so a pid taken from $! is CMD's) (the node's processes are found by
# cgroup and by mount namespace, never by name: every node's shim has the same command line).
cg_exec() {
	exec bash -c 'cg=$1; shift; for h in /sys/fs/cgroup/*/; do
		[ -d "$h$cg" ] && { echo $$ >"$h$cg/cgroup.procs"; } 2>/dev/null; done; exec "$@"' _ "$@"
}

# alive PID: running and not a zombie (PID 1 here reaps orphans late).
alive() {
	local st
	st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
	[ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

pidof_node() { # pidof_node NODE NAME: the pid in the node's NAME.pid if alive
	local f p
	f=$(node_dir "$1")/$2.pid
	[ -f "$f" ] || return 1
	p=$(cat "$f")
	[ -n "$p" ] && alive "$p" && echo "$p"
}

wait_for() { # wait_for SECONDS WHAT CMD...
	local secs=$1 deadline=$((SECONDS + $1)) what=$2; shift 2
	until "$@" >/dev/null 2>&1; do
		[ $SECONDS -lt $deadline ] || { ml_log "timed out after $secs s waiting for $what"; return 1; }
		sleep 0.2
	done
}

stop_pid() { # stop_pid PID WHAT: SIGTERM, then SIGKILL after 10 s; waits until it is gone
	local p=$1 i
	alive "$p" || return 0
	kill "$p" 2>/dev/null || true
	for i in $(seq 50); do alive "$p" || return 0; sleep 0.2; done
	kill -9 "$p" 2>/dev/null || true
	for i in $(seq 50); do alive "$p" || return 0; sleep 0.2; done
	ml_log "$2 (pid $p) did not exit"
}

# --- network ---------------------------------------------------------------------------------
net_base() {
	ip netns list | grep -qw "$BR_NS" && return 0
	ip netns add "$BR_NS"
	ip -n "$BR_NS" link set lo up
	ip -n "$BR_NS" link add br0 type bridge
	ip -n "$BR_NS" addr add "$ML_GW/24" dev br0
	ip -n "$BR_NS" link set br0 up # a fresh namespace forwards nothing (ip_forward=0)
}

# net_host NETNS IP: a namespace with eth0=IP on the bridge and a default route to it.
net_host() {
	local ns=$1 ip=$2 tag=${1#$ML_PREFIX-}
	local hv="ml${tag:0:8}h" nv="ml${tag:0:8}n"
	ip netns list | grep -qw "$ns" && ip netns delete "$ns"
	ip -n "$BR_NS" link delete "$hv" 2>/dev/null || true
	ip netns add "$ns"
	ip link add "$hv" type veth peer name "$nv"
	ip link set "$hv" netns "$BR_NS"
	ip -n "$BR_NS" link set "$hv" master br0 up
	ip link set "$nv" netns "$ns"
	ip -n "$ns" link set "$nv" name eth0
	ip -n "$ns" addr add "$ip/24" dev eth0
	ip -n "$ns" link set lo up
	ip -n "$ns" link set eth0 up
	ip -n "$ns" route add default via "$ML_GW" dev eth0
}

# Each node's pods get 10.244.<last octet of its IP>.0/24; every node and the client route the
# other nodes' pod subnets to them, so pods reach every apiserver without masquerading.
pod_subnet() { echo "10.244.$(node_index "$1").0/24"; }
add_pod_routes() { # add_pod_routes NETNS: routes to every node's pod subnet but its own
	local ns=$1 n
	for n in $(ls "$ML_DIR/nodes" 2>/dev/null); do
		[ "$(netns "$n")" = "$ns" ] && continue
		[ -f "$(node_dir "$n")/ip" ] || continue
		ip -n "$ns" route replace "$(pod_subnet "$n")" via "$(node_ip "$n")" dev eth0 2>/dev/null || true
	done
}
refresh_routes() {
	local n ns
	for ns in "$CLIENT_NS" "$LB_NS"; do
		ip netns list | grep -qw "$ns" && add_pod_routes "$ns"
	done
	for n in $(ls "$ML_DIR/nodes" 2>/dev/null); do
		ip netns list | grep -qw "$(netns "$n")" && add_pod_routes "$(netns "$n")"
	done
}

# The lab runs no kube-proxy (no image for it): the one Service pods need, kubernetes
# (10.96.0.1:443, what in-cluster clients such as the kubelet-serving approver use), is DNAT'ed
# to the balancer in each node's namespace, for the node's own processes (OUTPUT) and its pods
# (PREROUTING), as kube-proxy's rules would send it to an apiserver.
service_routes() { # service_routes NODE
	local ns chain rule
	ns=$(netns "$1")
	rule=(-d "$ML_SVC_IP/32" -p tcp --dport 443 -j DNAT --to-destination "$ML_LB_IP:6443")
	for chain in OUTPUT PREROUTING; do
		ip netns exec "$ns" iptables -t nat -C "$chain" "${rule[@]}" 2>/dev/null ||
			ip netns exec "$ns" iptables -t nat -A "$chain" "${rule[@]}"
	done
}

# --- a node ------------------------------------------------------------------------------------
write_hosts() { # every node's /etc/hosts lists every node
	local f n
	for n in $(ls "$ML_DIR/nodes" 2>/dev/null); do
		f=$(node_dir "$n")/hosts
		{
			echo "127.0.0.1 localhost"
			echo "$ML_LB_IP lb"
			for m in $(ls "$ML_DIR/nodes"); do echo "$(node_ip "$m") $m"; done
		} >"$f.tmp" && mv "$f.tmp" "$f.data"
		# /etc/hosts is bind-mounted from $f; rewrite it in place so the mount keeps the inode.
		[ -f "$f" ] && cat "$f.data" >"$f" || cp "$f.data" "$f"
	done
}

node_add() { # node_add NAME IP
	local n=$1 ip=$2 d b sub tgt
	d=$(node_dir "$n")
	[ -d "$d" ] && die "node $n exists already (hack/lab/multi.sh remove-node $n first)"
	ml_log "node $n: $ip, namespaces, containerd"
	mkdir -p "$d/home" "$d/containerd" && echo "$ip" >"$d/ip"
	net_base
	net_host "$(netns "$n")" "$ip"
	service_routes "$n"
	for b in $BINDS; do
		sub=${b%%:*}; tgt=${b#*:}
		mkdir -p "$d/$sub"
		if [ ! -e "$tgt" ]; then mkdir -p "$tgt" && echo "$tgt" >>"$ML_DIR/created-targets"; fi
	done
	write_hosts
	# The mount and UTS namespaces, held by bind mounts on files under a private mount.
	mkdir -p "$NS_DIR"
	if ! mountpoint -q "$NS_DIR"; then mount --bind "$NS_DIR" "$NS_DIR" && mount --make-private "$NS_DIR"; fi
	touch "$NS_DIR/$n.mnt" "$NS_DIR/$n.uts"
	unshare --mount="$NS_DIR/$n.mnt" --uts="$NS_DIR/$n.uts" --propagation private hostname "$n"
	local script=""
	for b in $BINDS; do
		sub=${b%%:*}; tgt=${b#*:}
		script+="mount --bind '$d/$sub' '$tgt' && "
	done
	nsenter --mount="$NS_DIR/$n.mnt" sh -c "${script}mount --bind '$d/hosts' /etc/hosts"
	# CNI: bridge + host-local, one /24 per node (Debian's containernetworking-plugins).
	cat >"$d/cni-net.d/10-cml.conflist" <<JSON
{"cniVersion": "1.0.0", "name": "cml", "plugins": [
  {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$(pod_subnet "$n")"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
JSON
	refresh_routes
	# cgroups: the runtime's (containerd, shims, kubelet) and the kubelet's cgroupRoot.
	for h in /sys/fs/cgroup/*/; do mkdir -p "$h$ML_PREFIX-rt-$n" "$h$ML_PREFIX-$n" 2>/dev/null || true; done
	lab_containerd_config "$d/containerd" /run/containerd /run/containerd/containerd.sock /usr/lib/cni /etc/cni/net.d >"$d/containerd.toml"
	# containerd 2.x from hack/build-containerd.sh; it starts its shim through PATH.
	setsid bash -c "$(declare -f cg_exec); cg_exec '$ML_PREFIX-rt-$n' \"\$@\"" _ \
		nsenter --net="/run/netns/$(netns "$n")" --mount="$NS_DIR/$n.mnt" --uts="$NS_DIR/$n.uts" \
		env PATH="$CTRD_BIN:$PATH" "$CTRD_BIN/containerd" --config "$d/containerd.toml" </dev/null >"$d/containerd.log" 2>&1 &
	echo $! >"$d/containerd.pid"
	wait_for 30 "containerd on $n" in_node "$n" ctr -n k8s.io version
	local t
	for t in "${TARBALLS[@]}"; do in_node "$n" ctr -n k8s.io images import --no-unpack=false "$t" >/dev/null; done
}

# The kubelet runs under a supervisor that restarts it 1 s after it exits, as kubeadm's systemd
# unit does (Restart=always, RestartSec=10; 1 s here): a kubelet that certctl stops comes back
# on its new certificate or config, as on a real node. kubelet.pid is the supervisor's.
# node_kubelet NODE: the node's kubelet binary: the lab's ($BIN/kubelet) until `kubelet NODE
# upgrade VERSION` swaps it, as an operator replaces /usr/bin/kubelet; kept in NODE/kubelet-bin.
node_kubelet() {
	local f
	f=$(node_dir "$1")/kubelet-bin
	if [ -s "$f" ]; then cat "$f"; else echo "$BIN/kubelet"; fi
}

kubelet_start() { # kubelet_start NODE
	local n=$1 d p flags="" boot=() kb
	d=$(node_dir "$n")
	kubelet_stop "$n" quiet
	kb=$(node_kubelet "$n")
	[ -s "$d/kubelet-bin" ] || echo "$kb" >"$d/kubelet-bin"
	[ -f "$d/var-lib-kubelet/kubeadm-flags.env" ] &&
		flags=$(sed -n 's/^KUBELET_KUBEADM_ARGS="\(.*\)"/\1/p' "$d/var-lib-kubelet/kubeadm-flags.env")
	[ -f "$d/etc-kubernetes/bootstrap-kubelet.conf" ] && boot=(--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf)
	# shellcheck disable=SC2086
	setsid bash -c "$(declare -f cg_exec)"'
		cg=$1; shift
		child=""
		trap '"'"'[ -n "$child" ] && kill $child 2>/dev/null; wait; exit 0'"'"' TERM INT
		while :; do
			cg_exec "$cg" "$@" &
			child=$!
			wait $child
			echo "supervisor: kubelet exited ($?), restarting in 1 s"
			sleep 1
		done' _ "$ML_PREFIX-rt-$n" \
		nsenter --net="/run/netns/$(netns "$n")" --mount="$NS_DIR/$n.mnt" --uts="$NS_DIR/$n.uts" \
		"$kb" --config=/var/lib/kubelet/config.yaml --kubeconfig=/etc/kubernetes/kubelet.conf \
		"${boot[@]}" $flags </dev/null >>"$d/kubelet.log" 2>&1 &
	echo $! >"$d/kubelet.pid"
	ml_log "kubelet of $n started ($kb, supervisor pid $!, log $d/kubelet.log)"
}

kubelet_stop() { # kubelet_stop NODE [quiet]: the supervisor, then whatever kubelet it left
	local p d kb
	d=$(node_dir "$1"); kb=$(node_kubelet "$1")
	if p=$(pidof_node "$1" kubelet); then
		stop_pid "$p" "kubelet supervisor of $1"
		[ -n "${2:-}" ] || ml_log "kubelet of $1 stopped"
	fi
	rm -f "$d/kubelet.pid"
	# A kubelet whose supervisor died first: in the node's runtime cgroup, by its binary.
	for p in $(cat /sys/fs/cgroup/pids/$ML_PREFIX-rt-$1/cgroup.procs 2>/dev/null); do
		[ "$(readlink "/proc/$p/exe" 2>/dev/null)" = "$kb" ] && stop_pid "$p" "kubelet of $1"
	done
	return 0
}

# kubeadm NODE ARGS...: runs kubeadm in the node and starts the kubelet as soon as kubeadm has
# written its configuration (no systemd here), as kubeadm expects systemd to.
kubeadm_with_kubelet() {
	local n=$1 d log; shift
	d=$(node_dir "$n"); log=$d/kubeadm.log
	( wait_for 180 "kubeadm to write the kubelet config on $n" test -f "$d/var-lib-kubelet/kubeadm-flags.env" -a -f "$d/var-lib-kubelet/config.yaml" &&
		kubelet_start "$n" ) &
	local starter=$! rc=0
	ml_log "$n: kubeadm $1 (log $log)"
	in_node "$n" "$BIN/kubeadm" "$@" >"$log" 2>&1 || rc=$?
	# kubeadm failed before it wrote the kubelet's config (a join refused in discovery): the
	# starter would wait for nothing.
	[ $rc -eq 0 ] || kill "$starter" 2>/dev/null || true
	wait "$starter" || true
	if [ $rc -ne 0 ]; then
		tail -30 "$log" >&2
		ml_log "kubeadm $1 failed on $n; kubelet log tail:"; tail -20 "$d/kubelet.log" >&2 2>/dev/null || true
		return $rc
	fi
}

node_registration() { # node_registration NAME
	cat <<YAML
nodeRegistration:
  name: $1
  criSocket: unix:///run/containerd/containerd.sock
  imagePullPolicy: Never
  kubeletExtraArgs:
  - name: cgroup-root
    value: /$ML_PREFIX-$1
YAML
}

init_first() { # init_first NODE: kubeadm init, as case B found it (endpoint = this node)
	local n=$1 ip d
	ip=$(node_ip "$n"); d=$(node_dir "$n")
	cat >"$d/kubeadm.yaml" <<YAML
apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
bootstrapTokens:
- token: $TOKEN
  ttl: 24h0m0s
certificateKey: $CERT_KEY
localAPIEndpoint:
  advertiseAddress: $ip
  bindPort: 6443
$(node_registration "$n")
# The apiserver's first start on an empty etcd takes a minute or more on 2 busy cores, and
# kubeadm gives its first API calls (the admin ClusterRoleBinding) kubernetesAPICall: 1m.
timeouts:
  controlPlaneComponentHealthCheck: 8m0s
  kubernetesAPICall: 5m0s
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
kubernetesVersion: $K8S_VERSION
clusterName: $ML_CLUSTER
controlPlaneEndpoint: $ip:6443
networking:
  serviceSubnet: 10.96.0.0/12
  podSubnet: 10.244.0.0/16
---
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
oomScoreAdj: 0
YAML
	kubeadm_with_kubelet "$n" init --config "$d/kubeadm.yaml" --upload-certs \
		--skip-phases=addon/kube-proxy,addon/coredns --ignore-preflight-errors=all
	# kubelet-finalize pointed kubelet.conf at the rotated client certificate: restart the
	# kubelet on it, as systemd would have.
	kubelet_start "$n"
	cp "$d/etc-kubernetes/admin.conf" "$ML_DIR/admin.conf"
}

# ca_hashes prints the discovery pins of the cluster CA as it is now, comma-separated: every
# certificate in each control-plane node's pki/ca.crt and in a rotation's bundle of the cluster
# CA (cluster-info follows the CA through a rotation: the hash taken at init no longer matches
# once `certctl cluster ca-rotate` has run, and a node joined after it must pin the new one).
ca_hashes() {
	local tmp f n
	tmp=$(mktemp -d)
	for n in $(cp_nodes); do
		for f in "$(node_dir "$n")/etc-kubernetes/pki/ca.crt" "$(node_dir "$n")/etc-kubernetes/pki/rotation/ca/bundle.crt"; do
			[ -f "$f" ] || continue
			awk -v dir="$tmp" -v pre="$n-$(basename "$f")" '/-----BEGIN CERTIFICATE-----/ { out = dir "/" pre "-" ++i ".pem" }
				out { print > out } /-----END CERTIFICATE-----/ { close(out); out = "" }' "$f"
		done
	done
	for f in "$tmp"/*.pem; do
		[ -f "$f" ] || continue
		openssl x509 -pubkey -noout -in "$f" | openssl pkey -pubin -outform der | sha256sum | awk '{print "sha256:"$1}'
	done | sort -u | paste -sd, -
	rm -rf "$tmp"
}

join_node() { # join_node NAME ENDPOINT [--control-plane] [--discovery-timeout DUR]
	local n=$1 endpoint=$2 cp="" timeout=5m0s d ip
	shift 2
	while [ $# -gt 0 ]; do
		case $1 in
		--control-plane) cp=1 ;;
		--discovery-timeout) timeout=$2; shift ;;
		*) die "join: unknown flag $1" ;;
		esac
		shift
	done
	d=$(node_dir "$n"); ip=$(node_ip "$n")
	load_join_env
	{
		cat <<YAML
apiVersion: kubeadm.k8s.io/v1beta4
kind: JoinConfiguration
discovery:
  bootstrapToken:
    apiServerEndpoint: $endpoint
    token: $TOKEN
    caCertHashes: [$(ca_hashes)]
timeouts:
  discovery: $timeout
  controlPlaneComponentHealthCheck: 8m0s
  kubernetesAPICall: 5m0s
$(node_registration "$n")
YAML
		[ -z "$cp" ] || cat <<YAML
controlPlane:
  certificateKey: $CERT_KEY
  localAPIEndpoint:
    advertiseAddress: $ip
    bindPort: 6443
YAML
	} >"$d/join.yaml"
	kubeadm_with_kubelet "$n" join --config "$d/join.yaml" --ignore-preflight-errors=all
}

load_join_env() {
	[ -f "$ML_DIR/join.env" ] || die "no $ML_DIR/join.env: the lab is not up"
	. "$ML_DIR/join.env"
}

haproxy_up() {
	local cfg=$ML_DIR/haproxy.cfg servers="" n
	for n in $(cp_nodes); do
		servers+="  server $n $(node_ip "$n"):6443"$'\n'
	done
	cat >"$cfg" <<CFG
# The field's HAProxy in front of the apiservers (TCP), health-checked on /readyz so that a
# node restarting its apiserver is out of rotation (with /livez a restarting apiserver's 500s
# reached clients: ../shared/LAB.md).
global
  maxconn 2000
defaults
  mode tcp
  timeout connect 2s
  timeout client 10m
  timeout server 10m
  option redispatch
  retries 3
frontend apiserver
  bind $ML_LB_IP:6443
  default_backend apiservers
backend apiservers
  balance roundrobin
  option httpchk GET /readyz
  http-check expect status 200
  default-server check check-ssl verify none inter 1s fall 2 rise 2
$servers
CFG
	if p=$(cat "$ML_DIR/haproxy.pid" 2>/dev/null) && alive "$p"; then stop_pid "$p" haproxy; fi
	ip netns list | grep -qw "$LB_NS" || net_host "$LB_NS" "$ML_LB_IP"
	# Made after the nodes: the balancer needs their pod subnets' routes to answer pods.
	add_pod_routes "$LB_NS"
	nsenter --net="/run/netns/$LB_NS" haproxy -f "$cfg" -D -p "$ML_DIR/haproxy.pid"
	ml_log "haproxy on $ML_LB_IP:6443 (config $cfg)"
}

node_remove() { # node_remove NAME: stops and removes everything of one node
	local n=$1 d p ino h pids
	d=$(node_dir "$n")
	[ -d "$d" ] || return 0
	kubelet_stop "$n"
	if p=$(pidof_node "$n" containerd); then
		for t in $(in_node "$n" ctr -n k8s.io tasks ls -q 2>/dev/null); do in_node "$n" ctr -n k8s.io tasks kill -s SIGKILL "$t" >/dev/null 2>&1 || true; done
		stop_pid "$p" "containerd of $n"
	fi
	# What is left of the node: processes in its cgroups (containers, shims) or its mount namespace.
	ino=$(stat -L -c %i "$NS_DIR/$n.mnt" 2>/dev/null || echo none)
	for i in 1 2 3; do
		pids=$(
			for h in /sys/fs/cgroup/pids/$ML_PREFIX-$n /sys/fs/cgroup/pids/$ML_PREFIX-rt-$n; do
				[ -d "$h" ] && find "$h" -name cgroup.procs -exec cat {} + 2>/dev/null
			done
			# processes come and go during the scan: find's complaints about them are no failure
			{ find /proc/[0-9]*/ns/mnt -maxdepth 0 -lname "mnt:\[$ino\]" 2>/dev/null || true; } | cut -d/ -f3
		)
		pids=$(echo "$pids" | sort -u | grep -vx "$$" || true)
		[ -n "$pids" ] || break
		kill -9 $pids 2>/dev/null || true
		for p in $pids; do
			for j in $(seq 50); do alive "$p" || break; sleep 0.2; done
		done
	done
	umount "$NS_DIR/$n.mnt" 2>/dev/null || true
	umount "$NS_DIR/$n.uts" 2>/dev/null || true
	rm -f "$NS_DIR/$n.mnt" "$NS_DIR/$n.uts"
	ip netns list | grep -qw "$(netns "$n")" && ip netns delete "$(netns "$n")"
	cgs=(/sys/fs/cgroup/*/"$ML_PREFIX-$n" /sys/fs/cgroup/*/"$ML_PREFIX-rt-$n")
	wait_for 10 "the cgroups of $n to empty" bash -c 'find "$@" -depth -type d -exec rmdir {} + 2>/dev/null; for c; do ! test -d "$c" || exit 1; done' _ "${cgs[@]}" ||
		ml_log "could not remove every cgroup of $n"
	ip -n "$BR_NS" link delete "ml${n:0:8}h" 2>/dev/null || true
	rm -rf "$d"
	write_hosts
	refresh_routes
	ml_log "node $n removed"
}

healthy() {
	[ -f "$ML_DIR/up.done" ] || return 1
	# made with another Kubernetes release: not the lab asked for
	[ "$(cat "$ML_DIR/k8s-version" 2>/dev/null)" = "$K8S_VERSION" ] || return 1
	local n
	for n in $(ls "$ML_DIR/nodes" 2>/dev/null); do
		pidof_node "$n" kubelet >/dev/null && pidof_node "$n" containerd >/dev/null || return 1
	done
	nsenter --net="/run/netns/$CLIENT_NS" curl -fsS --max-time 3 --cacert "$ML_DIR/ca.crt" \
		"https://$(node_ip "${ML_NODES%%=*}"):6443/readyz" >/dev/null 2>&1
}

cmd_up() {
	local start=$SECONDS
	if healthy; then ml_log "already up ($K8S_VERSION)"; return 0; fi
	if [ -d "$ML_DIR/nodes" ] || [ -d "$NS_DIR" ] || ip netns list | grep -q "^$ML_PREFIX-"; then
		ml_log "a previous lab is partly up: taking it down first"
		cmd_down
	fi
	# The single-node lab (hack/lab/up.sh) has the same addresses and the host's /etc/kubernetes.
	if [ -f "$LAB_MARK" ] || [ -d "$LAB_RUN" ] || ip netns list | grep -qw "$LAB_NS"; then
		ml_log "the single-node lab is (partly) up: taking it down first"
		"$HACK/lab/down.sh"
	fi
	local need=()
	for c in runc haproxy ip iptables nsenter unshare curl openssl; do command -v $c >/dev/null || need+=("$c"); done
	[ -x /usr/lib/cni/bridge ] || need+=(cni)
	if [ ${#need[@]} -gt 0 ]; then
		ml_log "installing (missing: ${need[*]})"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq
		apt-get install -y -qq --no-install-recommends runc haproxy containernetworking-plugins \
			iproute2 iptables util-linux curl openssl >/dev/null
	fi
	lab_build_bins # BIN, CTRD_BIN (containerd 2.x), ETCD_VERSION, PAUSE_IMAGE
	mkdir -p "$ML_DIR/nodes" "$ML_RUN"
	# For internal/multilab (the tests' ctr in a node) and multi.sh's other commands.
	echo "$CTRD_BIN" >"$ML_DIR/containerd-bin"
	echo "$PAUSE_IMAGE" >"$ML_DIR/pause-image"
	echo "$K8S_VERSION" >"$ML_DIR/k8s-version" # the release the lab is made with (internal/multilab.Version)
	. "$HACK/lab/images.sh"
	mapfile -t TARBALLS < <(lab_build_images "$BIN" "$ML_DIR/images"; lab_build_certctl_image "$ML_DIR/images" "$ML_IMAGE")
	[ ${#TARBALLS[@]} -ge 6 ] || die "expected 6 images, built: ${TARBALLS[*]}"
	(cd "$HACK/.." && go build -o "$ML_DIR/labctl" ./hack/lab/labctl)
	if [ ! -f "$ML_DIR/sysctl.saved" ]; then
		for s in $SYSCTLS; do v=$(sysctl -n "$s" 2>/dev/null) && echo "$s=$v"; done >"$ML_DIR/sysctl.saved"
	fi
	{
		echo "TOKEN=$("$BIN/kubeadm" token generate)"
		echo "CERT_KEY=$("$BIN/kubeadm" certs certificate-key)"
	} >"$ML_DIR/join.env"
	load_join_env
	net_base
	net_host "$CLIENT_NS" "$ML_CLIENT_IP"
	local spec n ip role cps=() workers=()
	for spec in $ML_NODES; do
		n=${spec%%=*}; ip=${spec#*=}; role=${ip#*=}; ip=${ip%%=*}
		node_add "$n" "$ip"
		echo "$role" >"$(node_dir "$n")/role"
		if [ "$role" = cp ]; then cps+=("$n"); else workers+=("$n"); fi
	done
	init_first "${cps[0]}"
	cp "$(node_dir "${cps[0]}")/etc-kubernetes/pki/ca.crt" "$ML_DIR/ca.crt"
	local first_ep
	first_ep=$(node_ip "${cps[0]}"):6443
	for n in "${cps[@]:1}"; do join_node "$n" "$first_ep" --control-plane; done
	for n in "${workers[@]}"; do join_node "$n" "$first_ep"; done
	haproxy_up
	local names
	names=$(IFS=,; echo "${cps[*]}${workers[*]:+,${workers[*]}}")
	nsenter --net="/run/netns/$CLIENT_NS" "$ML_DIR/labctl" wait-ready --kubeconfig "$ML_DIR/admin.conf" \
		--nodes "$names" --lb "$ML_LB_IP:6443" --timeout 5m
	touch "$ML_DIR/up.done"
	ml_log "up in $((SECONDS - start)) s: nodes $names; haproxy $ML_LB_IP:6443; admin kubeconfig $ML_DIR/admin.conf (reach it from netns $CLIENT_NS)"
}

cmd_down() {
	local start=$SECONDS n p
	for n in $(ls "$ML_DIR/nodes" 2>/dev/null); do node_remove "$n"; done
	if p=$(cat "$ML_DIR/haproxy.pid" 2>/dev/null) && alive "$p"; then stop_pid "$p" haproxy; fi
	rm -f "$ML_DIR/haproxy.pid"
	for ns in "$LB_NS" "$CLIENT_NS" "$BR_NS"; do
		ip netns list | grep -qw "$ns" && ip netns delete "$ns"
	done
	if mountpoint -q "$NS_DIR" 2>/dev/null; then umount "$NS_DIR" || umount -l "$NS_DIR"; fi
	rm -rf "$ML_RUN"
	if [ -f "$ML_DIR/sysctl.saved" ]; then
		while IFS== read -r k v; do sysctl -q -w "$k=$v" >/dev/null 2>&1 || true; done <"$ML_DIR/sysctl.saved"
		rm -f "$ML_DIR/sysctl.saved"
	fi
	if [ -f "$ML_DIR/created-targets" ]; then
		sort -ru "$ML_DIR/created-targets" | while read -r t; do rmdir "$t" 2>/dev/null || ml_log "left $t (not empty)"; done
		rm -f "$ML_DIR/created-targets"
	fi
	rm -rf "$ML_DIR/nodes" "$ML_DIR/up.done" "$ML_DIR/join.env" "$ML_DIR/admin.conf" "$ML_DIR/ca.crt" "$ML_DIR/ca-hash" \
		"$ML_DIR/containerd-bin" "$ML_DIR/pause-image" "$ML_DIR/k8s-version"
	ml_log "down in $((SECONDS - start)) s"
}

cmd_status() {
	local n
	for n in $(ls "$ML_DIR/nodes" 2>/dev/null); do
		printf '%-8s %-12s %-3s kubelet:%s containerd:%s\n' "$n" "$(node_ip "$n")" "$(cat "$(node_dir "$n")/role" 2>/dev/null)" \
			"$(pidof_node "$n" kubelet || echo -)" "$(pidof_node "$n" containerd || echo -)"
	done
	[ -f "$ML_DIR/admin.conf" ] && nsenter --net="/run/netns/$CLIENT_NS" "$ML_DIR/labctl" nodes --kubeconfig "$ML_DIR/admin.conf"
}

# Sourced (by a shell that calls the functions above), stop here.
[ "${BASH_SOURCE[0]}" = "$0" ] || return 0

# The daemons started below (containerd, the kubelets' supervisors, haproxy) must not inherit the
# caller's descriptors: one may be the lock of `flock /tmp/certctl-lab.lock make ...`, which
# would then stay held as long as the lab runs (and `flock ... multi.sh down` wait forever).
# flock itself keeps the lock until its command ends. (255 is the fd bash reads this script on;
# no redirection on this loop: bash would keep the saved stderr on an fd the loop closes.)
for fd in /proc/$$/fd/*; do
	fd=${fd##*/}
	if [ "$fd" -gt 2 ] && [ "$fd" -lt 255 ]; then exec {fd}>&-; fi
done

case ${1:-} in
up) cmd_up ;;
down) cmd_down ;;
status) cmd_status ;;
exec) shift; n=${1:?node}; shift; [ "${1:-}" = -- ] && shift; in_node "$n" "$@" ;;
kubelet)
	n=${2:?node}
	# a node records its kubelet binary at its first start (node_kubelet)
	[ -s "$(node_dir "$n")/kubelet-bin" ] || BIN=$("$HACK/build-k8s.sh" kubelet | tail -1)
	case ${3:-} in
	start|restart) kubelet_start "$n" ;;
	stop) kubelet_stop "$n" ;;
	upgrade) # after `kubeadm upgrade apply|node` on the node: its kubelet binary swapped, restarted
		v=${4:?version}
		kb=$(K8S_VERSION=$v "$HACK/build-k8s.sh" kubelet | tail -1)/kubelet
		kubelet_stop "$n"
		echo "$kb" >"$(node_dir "$n")/kubelet-bin"
		kubelet_start "$n" ;;
	*) die "usage: multi.sh kubelet NODE start|stop|restart|upgrade VERSION" ;;
	esac ;;
bins) # bins VERSION: VERSION's binaries and the etcd its kubeadm names, built if missing
	K8S_VERSION=${2:?version}; ETCD_VERSION=; PAUSE_IMAGE=
	lab_build_bins
	echo "$BIN" ;;
images) # images VERSION: VERSION's control-plane images (built from its binaries) into every node
	K8S_VERSION=${2:?version}; ETCD_VERSION=; PAUSE_IMAGE=
	lab_build_bins
	. "$HACK/lab/images.sh"
	mapfile -t tbs < <(lab_build_images "$BIN" "$ML_DIR/images-$K8S_VERSION")
	[ ${#tbs[@]} -ge 5 ] || die "expected 5 images of $K8S_VERSION, built: ${tbs[*]}"
	for n in $(ls "$ML_DIR/nodes"); do
		for t in "${tbs[@]}"; do in_node "$n" ctr -n k8s.io images import --no-unpack=false "$t" >/dev/null; done
		ml_log "$n: imported the images of $K8S_VERSION"
	done ;;
add-node)
	n=${2:?name}; ip=${3:?ip}
	lab_build_bins
	. "$HACK/lab/images.sh"
	mapfile -t TARBALLS < <(ls "$ML_DIR"/images/*.tar)
	node_add "$n" "$ip"; echo "${4:-w}" >"$(node_dir "$n")/role" ;;
join)
	lab_build_bins
	shift; join_node "$@" ;;
remove-node) node_remove "${2:?name}" ;;
image) # rebuild the certctl image from this checkout and import it into every node
	. "$HACK/lab/images.sh"
	t=$(lab_build_certctl_image "$ML_DIR/images" "$ML_IMAGE")
	for n in $(ls "$ML_DIR/nodes"); do in_node "$n" ctr -n k8s.io images import --no-unpack=false "$t" >/dev/null && ml_log "$n: imported $ML_IMAGE"; done ;;
net) # net NODE cut|restore: the node's link to the bridge down (every connection to and from it
	# hangs, as when a switch port or a cable goes) or up again
	n=${2:?node}; [ -d "$(node_dir "$n")" ] || die "no node $n"
	hv="ml${n:0:8}h"
	case ${3:-} in
	cut) ip -n "$BR_NS" link set "$hv" down; ml_log "$n: network cut" ;;
	restore) ip -n "$BR_NS" link set "$hv" up; ml_log "$n: network restored" ;;
	*) die "usage: multi.sh net NODE cut|restore" ;;
	esac ;;
lb)
	case ${2:-} in
	stop) if p=$(cat "$ML_DIR/haproxy.pid" 2>/dev/null) && alive "$p"; then stop_pid "$p" haproxy; fi
		rm -f "$ML_DIR/haproxy.pid"; ml_log "haproxy stopped" ;;
	start) haproxy_up ;;
	*) die "usage: multi.sh lb stop|start" ;;
	esac ;;
*) sed -n '2,30p' "${BASH_SOURCE[0]}" >&2; exit 2 ;;
esac
