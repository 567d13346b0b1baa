#!/usr/bin/env bash
# Takes the lab down: stops the kubelet, the lab's containers and its containerd (only the
# processes the lab started: by pid file, and shims that name the lab's socket), unmounts what
# they mounted, removes the node's files (/etc/kubernetes only if it carries the lab's mark),
# the network namespace and cgroups, and restores the sysctls the kubelet changed.
# Idempotent: safe to run when the lab is down or half up. Keeps the image cache.
#
#   hack/lab/down.sh
set -uo pipefail
. "$(dirname "$0")/env.sh"
[ "$(id -u)" = 0 ] || { echo "lab: run as root" >&2; exit 1; }

stop_pid() { # stop_pid NAME: SIGTERM, then SIGKILL after 10 s
	local p i
	p=$(lab_pid "$1") || { rm -f "$LAB_DIR/$1.pid"; return 0; }
	kill "$p" 2>/dev/null
	for i in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
	kill -9 "$p" 2>/dev/null
	rm -f "$LAB_DIR/$1.pid"
	lab_log "stopped $1 (pid $p)"
}

stop_pid kubelet
if lab_pid containerd >/dev/null; then
	for t in $(lab_ctr tasks ls -q 2>/dev/null); do lab_ctr tasks kill -s SIGKILL "$t" >/dev/null 2>&1; done
	for i in $(seq 50); do
		[ -z "$(lab_ctr tasks ls 2>/dev/null | awk 'NR>1 && $3=="RUNNING"')" ] && break
		sleep 0.2
	done
	for t in $(lab_ctr tasks ls -q 2>/dev/null); do lab_ctr tasks delete -f "$t" >/dev/null 2>&1; done
	for c in $(lab_ctr containers ls -q 2>/dev/null); do lab_ctr containers delete "$c" >/dev/null 2>&1; done
fi
stop_pid containerd
# Shims of the lab's containerd outlive it: they name its socket on their command line.
for p in $(pgrep -f "containerd-shim.*-address $LAB_SOCK" 2>/dev/null); do
	kill -9 "$p" 2>/dev/null && lab_log "killed shim $p"
done
# And processes still in the lab's cgroup (containers whose shim died first).
for h in /sys/fs/cgroup/*/"$LAB_CGROUP"; do
	[ -d "$h" ] || continue
	find "$h" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u | while read -r p; do
		kill -9 "$p" 2>/dev/null
	done
done

# Mounts under the lab's dirs and the kubelet's (deepest first).
for root in "$LAB_RUN" "$LAB_DIR/containerd" /var/lib/kubelet "/run/netns/$LAB_NS"; do
	awk -v r="$root" '$2==r || index($2, r"/")==1 {print $2}' /proc/self/mounts | sort -r |
		while read -r m; do umount -l "$m" 2>/dev/null || true; done
done

if ip netns list 2>/dev/null | grep -qw "$LAB_NS"; then
	ip netns delete "$LAB_NS" && lab_log "deleted netns $LAB_NS"
fi

for h in /sys/fs/cgroup/*/"$LAB_CGROUP"; do
	[ -d "$h" ] || continue
	for i in $(seq 25); do
		find "$h" -depth -type d -exec rmdir {} + 2>/dev/null
		[ -d "$h" ] || break
		sleep 0.2
	done
	[ -d "$h" ] && lab_log "could not remove cgroup $h"
done

if [ -f "$LAB_DIR/sysctl.saved" ]; then
	while IFS== read -r k v; do sysctl -q -w "$k=$v" >/dev/null 2>&1 || true; done <"$LAB_DIR/sysctl.saved"
	rm -f "$LAB_DIR/sysctl.saved"
fi

if [ -f "$LAB_MARK" ]; then
	rm -rf /etc/kubernetes /var/lib/kubelet /var/lib/etcd
	lab_log "removed /etc/kubernetes /var/lib/kubelet /var/lib/etcd"
fi
rm -rf "$LAB_RUN" "$LAB_DIR/containerd" "$LAB_DIR/home" "$LAB_DIR/staging-state"
# The kubelet's logs of the lab's static pods (kube-system/<component>-$LAB_NODE).
rm -rf /var/log/pods/kube-system_*-"$LAB_NODE"_* /var/log/containers/*-"$LAB_NODE"_kube-system_*.log
# Directories up.sh found missing: /run/containerd/s (the shims' sockets), the pods' log
# directories (removed when empty), /var/lib/certctl (certctl's run record on the lab's node).
if [ -f "$LAB_DIR/created-dirs" ]; then
	while read -r d; do
		case $d in
		/var/lib/certctl) rm -rf "$d" ;;
		*) [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null ;;
		esac
		[ -e "$d" ] && lab_log "left $d (not empty)"
	done <"$LAB_DIR/created-dirs"
	rm -f "$LAB_DIR/created-dirs"
fi
lab_log "down"
