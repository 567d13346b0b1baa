#!/usr/bin/env bash
# Benchmark: API unavailability (50 ms poller on /livez, first failure to first success) of
# `certctl restart apiserver` against the field runbook (all four manifests out, sleep 20 s,
# back), on a node whose static pods run the real etcd, kube-apiserver, controller-manager
# and scheduler under the stand-in kubelet (internal/testenv). Also the apiserver's own cold
# start. Targets (issue 4): <= cold start + 2 s; <= 0.3x the runbook.
set -euo pipefail
cd "$(dirname "$0")/.."
hack/build-k8s.sh kubeadm kube-apiserver kube-controller-manager kube-scheduler etcd >/dev/null
echo "== API downtime: certctl restart apiserver vs the runbook (takes about a minute)"
go test -run '^$' -bench APIDowntime -benchtime "${1:-1}x" ./pkg/restart 2>&1 | grep -E "Benchmark|bench_test"
