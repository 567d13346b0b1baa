#!/usr/bin/env bash
# Benchmark: `certctl renew all` against `kubeadm certs renew all` on fresh copies of the
# same kubeadm-made tree (RSA-2048, kubeadm's default), median wall ratio, in both key modes.
# Targets (issue 3): rotate <= 0.5x kubeadm (keys generated in parallel), reuse <= 0.1x.
# certctl's figure includes what kubeadm does not do: the backup, the journal and fsyncs.
#   bench/renew.sh [runs]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-21}
bin=$(hack/build-k8s.sh kubeadm | tail -1)
go build -o bin/certctl ./cmd/certctl
go build -o bin/benchcmp ./bench/benchcmp
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
KUBEADM=$bin/kubeadm bench/kubeadm-tree.sh "$work/src"
cat > "$work/prep.sh" <<SH
#!/bin/sh
rm -rf $work/node && cp -a $work/src $work/node
SH
chmod +x "$work/prep.sh"
for mode in rotate reuse; do
	echo "== renew all (--key $mode) vs kubeadm certs renew all (kubeadm $("$bin/kubeadm" version -o short), tree made by kubeadm)"
	bin/benchcmp -n "$runs" -prep "$work/prep.sh" \
		-a-name "certctl-$mode" -a "$PWD/bin/certctl --root $work/node renew all --yes --key $mode" \
		-b-name kubeadm -b "$bin/kubeadm certs renew all --rootfs $work/node --config /kubeadm.yaml"
done
