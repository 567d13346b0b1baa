# Sourced by hack/lab/up.sh and hack/lab/multi.sh: builds the lab's images as one-layer
# docker-archive tarballs (hack/lab/mkimage), no registry and no daemon needed.
#
#   lab_build_images BIN OUTDIR   -> prints one tarball path per line: the control-plane images
#                                    (names as `kubeadm config images list` prints them) and pause
#   lab_build_certctl_image OUTDIR IMAGE -> prints the tarball of certctl built from this checkout
#   lab_containerd_config ROOT STATE SOCKET CNI_BIN CNI_CONF -> prints a containerd config for a
#                                    private instance (both labs run their own)

lab_build_images() {
	local bin=$1 img=$2 ref name tarball dest entry
	mkdir -p "$img"
	(cd "$HACK/.." && go build -o "$img/mkimage" ./hack/lab/mkimage &&
		CGO_ENABLED=0 go build -ldflags=-s -o "$img/pause" ./hack/lab/pause) >&2
	for ref in $("$bin/kubeadm" config images list --kubernetes-version "$K8S_VERSION" 2>/dev/null); do
		name=${ref##*/}; name=${name%%:*}
		case $name in
		kube-apiserver|kube-controller-manager|kube-scheduler|etcd) src=$bin/$name; dest=/usr/local/bin/$name; entry=() ;;
		pause) src=$img/pause; dest=/pause; entry=(-entrypoint /pause) ;;
		*) continue ;; # coredns, kube-proxy: the labs skip those addons
		esac
		tarball=$img/$name.tar
		if [ ! -f "$tarball" ] || [ "$src" -nt "$tarball" ]; then
			echo "lab: image $ref" >&2
			"$img/mkimage" -o "$tarball" -tag "$ref" -file "$src=$dest" "${entry[@]}" >&2
		fi
		echo "$tarball"
	done
}

lab_build_certctl_image() {
	local img=$1 ref=$2
	mkdir -p "$img"
	(cd "$HACK/.." && CGO_ENABLED=0 go build -trimpath -ldflags=-s -o "$img/certctl" ./cmd/certctl &&
		go build -o "$img/mkimage" ./hack/lab/mkimage) >&2
	"$img/mkimage" -o "$img/certctl.tar" -tag "$ref" -file "$img/certctl=/usr/local/bin/certctl" -entrypoint /usr/local/bin/certctl >&2
	echo "$img/certctl.tar"
}

lab_containerd_config() {
	local root=$1 state=$2 sock=$3 cni_bin=$4 cni_conf=$5
	cat <<TOML
version = 2
root = "$root"
state = "$state"
[grpc]
  address = "$sock"
[ttrpc]
  address = "$sock.ttrpc"
[debug]
  address = "$(dirname "$sock")/containerd-debug.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # this VM lacks CAP_SYS_RESOURCE: runc otherwise fails ("can't get final child's PID")
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$cni_bin"
    conf_dir = "$cni_conf"
TOML
}
