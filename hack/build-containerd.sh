#!/usr/bin/env bash
# Builds containerd 2.x (containerd, containerd-shim-runc-v2, ctr) from the Go module proxy into
# a cache outside the repository keyed by version, for the labs (hack/lab). Debian's containerd
# is 1.6: it lacks the CRI RuntimeConfig call, which the kubelet uses for its cgroup driver and
# which the 1.38 kubelet requires (kubernetes#136731, kubeadm#3229). runc stays Debian's.
# Static (CGO_ENABLED=0): the snapshotters that need cgo or devices are left out (btrfs,
# devmapper, zfs); the labs use overlayfs. Idempotent: binaries in the cache are not rebuilt.
# Prints the bin directory on its last line: containerd finds the shim through PATH, so put that
# directory first in the PATH containerd runs with.
#
#   hack/build-containerd.sh
#
# Environment: CONTAINERD_VERSION (default v2.4.2), CERTCTL_CACHE (default $HOME/.cache/certctl).
set -euo pipefail

CONTAINERD_VERSION=${CONTAINERD_VERSION:-v2.4.2}
CACHE=${CERTCTL_CACHE:-$HOME/.cache/certctl}
BIN=$CACHE/containerd-$CONTAINERD_VERSION/bin
PKG=github.com/containerd/containerd/v2
mkdir -p "$BIN"

log() { echo "build-containerd: $*" >&2; }

ld="-s -w -X $PKG/version.Version=$CONTAINERD_VERSION -X $PKG/version.Revision=module-proxy -X $PKG/version.Package=$PKG"
tags="urfave_cli_no_docs osusergo netgo static_build no_btrfs no_devmapper no_zfs"
for b in containerd containerd-shim-runc-v2 ctr; do
	[ -x "$BIN/$b" ] && continue
	t=$tags
	[ $b = containerd-shim-runc-v2 ] && t="$t no_grpc" # as containerd's Makefile builds the shim
	log "building $b $CONTAINERD_VERSION"
	tmp=$(mktemp -d "$BIN/.tmp.XXXXXX")
	# `go install pkg@version` builds with containerd's own go.mod (no replace directives in it).
	GOBIN=$tmp CGO_ENABLED=0 GOFLAGS= go install -trimpath -tags "$t" -ldflags "$ld" "$PKG/cmd/$b@$CONTAINERD_VERSION"
	mv "$tmp/$b" "$BIN/$b"
	rmdir "$tmp"
done

echo "$BIN"
