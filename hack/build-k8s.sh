#!/usr/bin/env bash
# Builds the Kubernetes binaries certctl's tests run against (kubeadm, kube-apiserver,
# kube-controller-manager, kube-scheduler, kubelet) and etcd, from the Go module proxy, into a
# cache outside the repository keyed by version. Idempotent: a binary already in the cache is
# not rebuilt. Prints the bin directory on its last line.
#
#   hack/build-k8s.sh [binary...]     (default: all of them)
#
# Environment: K8S_VERSION (default v1.37.2), ETCD_VERSION (default v3.7.0, what kubeadm v1.37 deploys),
# CERTCTL_CACHE (default $HOME/.cache/certctl).
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.37.2}
ETCD_VERSION=${ETCD_VERSION:-v3.7.0}
CACHE=${CERTCTL_CACHE:-$HOME/.cache/certctl}
BIN=$CACHE/k8s-$K8S_VERSION/bin
mkdir -p "$BIN"

all=(kubeadm kube-apiserver kube-controller-manager kube-scheduler kubelet etcd)
want=("$@")
[ ${#want[@]} -gt 0 ] || want=("${all[@]}")

need_k8s=()
need_etcd=0
for b in "${want[@]}"; do
	[ -x "$BIN/$b" ] && continue
	case $b in
	etcd) need_etcd=1 ;;
	kubeadm|kube-apiserver|kube-controller-manager|kube-scheduler|kubelet) need_k8s+=("$b") ;;
	*) echo "build-k8s: unknown binary $b" >&2; exit 2 ;;
	esac
done

log() { echo "build-k8s: $*" >&2; }

if [ ${#need_k8s[@]} -gt 0 ]; then
	work=$CACHE/k8s-$K8S_VERSION/src
	mkdir -p "$work"
	cd "$work"
	if [ ! -f go.mod ] || ! grep -q "k8s.io/kubernetes $K8S_VERSION" go.mod; then
		log "preparing scratch module for k8s.io/kubernetes $K8S_VERSION"
		rm -f go.mod go.sum
		go mod init certctl.local/k8sbuild >/dev/null 2>&1
		# k8s.io/kubernetes replaces its staging modules with ./staging paths; the module
		# proxy serves them as k8s.io/<name> v0.<minor>.<patch>. Take the list from its go.mod.
		gomod=$(GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')
		staging_ver="v0${K8S_VERSION#v1}"
		args=(-require="k8s.io/kubernetes@$K8S_VERSION")
		for m in $(sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$gomod"); do
			args+=(-replace="$m=$m@$staging_ver")
		done
		go mod edit "${args[@]}"
		cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kubeadm"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
GO
		GOFLAGS=-mod=mod go mod tidy -e >/dev/null 2>&1 || true
		GOFLAGS=-mod=mod go get "k8s.io/kubernetes@$K8S_VERSION" >/dev/null
	fi
	major=${K8S_VERSION#v}; major=${major%%.*}
	minor=${K8S_VERSION#v*.}; minor=${minor%%.*}
	ld=""
	for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		ld+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=$major -X $p.gitMinor=$minor"
		ld+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
	done
	for b in "${need_k8s[@]}"; do
		log "building $b $K8S_VERSION (minutes on 2 cores)"
		CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w$ld" -o "$BIN/$b.tmp" "k8s.io/kubernetes/cmd/$b"
		mv "$BIN/$b.tmp" "$BIN/$b"
	done
fi

if [ $need_etcd = 1 ]; then
	work=$CACHE/etcd-$ETCD_VERSION/src
	mkdir -p "$work"
	cd "$work"
	if [ ! -f go.mod ]; then
		go mod init certctl.local/etcdbuild >/dev/null 2>&1
		cat > tools.go <<'GO'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
GO
		GOFLAGS=-mod=mod go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >/dev/null
		GOFLAGS=-mod=mod go mod tidy -e >/dev/null 2>&1 || true
	fi
	log "building etcd $ETCD_VERSION"
	CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" -o "$BIN/etcd.tmp" go.etcd.io/etcd/server/v3
	mv "$BIN/etcd.tmp" "$BIN/etcd"
fi

echo "$BIN"
