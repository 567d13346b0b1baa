#!/usr/bin/env bash
# Prints what a failed multi-node lab run needs to be understood: each node's kubeadm and kubelet
# log tails, containerd's, haproxy's config. Called by `make e2e-multi` when the lab or a test fails.
. "$(dirname "$0")/multi-env.sh"
for d in "$ML_DIR"/nodes/*/; do
	[ -d "$d" ] || continue
	n=$(basename "$d")
	for f in kubeadm.log kubeadm-upgrade.log kubelet.log containerd.log; do
		[ -f "$d$f" ] || continue
		echo "===== $n: $f (last 40 lines)"
		tail -40 "$d$f"
	done
done
[ -f "$ML_DIR/haproxy.cfg" ] && { echo "===== haproxy.cfg"; cat "$ML_DIR/haproxy.cfg"; }
exit 0
