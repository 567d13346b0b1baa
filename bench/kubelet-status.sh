#!/usr/bin/env bash
# Benchmark: `certctl kubelet-serving status` over 1000 simulated kubelets (real TLS listeners
# on 127.1.x.y, Node objects in a real kube-apiserver) against a sequential `openssl s_client`
# loop over the same endpoints (100 sampled, extrapolated), in one run.
# Targets (issue 5): < 2 s; >= 20x faster than the openssl loop.
set -euo pipefail
cd "$(dirname "$0")/.."
hack/build-k8s.sh kubeadm kube-apiserver kube-controller-manager etcd >/dev/null
echo "== kubelet-serving status over 1000 kubelets vs sequential openssl s_client"
go test -run '^$' -bench Status1000 -benchtime "${1:-3}x" ./pkg/kubeletserving 2>&1 | grep -E "Benchmark|bench_test" 
