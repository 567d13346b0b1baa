#!/usr/bin/env bash
# Benchmark: `certctl inspect` (with all its checks: SANs, chains, key pairs, kubeconfigs)
# against `kubeadm certs check-expiration` on the same kubeadm-made tree, side by side.
# Prints the median wall-time ratio and each one's peak RSS.
# Targets (issue 2): ratio <= 0.8x, certctl peak RSS < 40 MiB.
#   bench/run.sh [runs]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-31}
bin=$(hack/build-k8s.sh kubeadm | tail -1)
# Both built the same way: kubeadm as Kubernetes releases it (hack/build-k8s.sh), certctl as
# `make build` does (static, -trimpath -ldflags "-s -w").
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o bin/certctl ./cmd/certctl
go build -o bin/benchcmp ./bench/benchcmp
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
KUBEADM=$bin/kubeadm bench/kubeadm-tree.sh "$work/node"
echo "== inspect vs kubeadm certs check-expiration (kubeadm $("$bin/kubeadm" version -o short), tree made by kubeadm)"
# --config keeps kubeadm from trying to reach a cluster, so both read only the files.
bin/benchcmp -n "$runs" -ok-exit 0,1,2 \
	-a-name certctl -a "$PWD/bin/certctl --root $work/node inspect" \
	-b-name kubeadm -b "$bin/kubeadm certs check-expiration --rootfs $work/node --config /kubeadm.yaml"
for f in bench/[a-z]*.sh; do
	case $f in bench/run.sh|bench/kubeadm-tree.sh) continue ;; esac
	echo
	"$f"
done
