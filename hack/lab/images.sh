# Sourced by hack/lab/up.sh and hack/lab/multi.sh: builds the lab's images as one-layer
# docker-archive tarballs (hack/lab/mkimage), no registry and no daemon needed.
#
#   lab_build_images BIN OUTDIR   -> prints one tarball path per line: the control-plane images
#                                    (names as `kubeadm config images list` prints them) and pause
#   lab_build_certctl_image OUTDIR IMAGE -> prints the tarball of certctl built from this checkout
#   lab_containerd_config ROOT STATE SOCKET CNI_BIN CNI_CONF -> prints a containerd 2.x config
#                                    (version 3) for a private instance (both labs run their own;
#                                    PAUSE_IMAGE must be set: lab_build_bins)

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
		# Rebuilt when its binary is newer, or when it was made for another release (a lab of
		# K8S_VERSION=v1.36.3 and one of v1.37.2 share the directory): NAME.tar.ref says which.
		if [ ! -f "$tarball" ] || [ "$src" -nt "$tarball" ] || [ "$(cat "$tarball.ref" 2>/dev/null)" != "$ref $src" ]; then
			echo "lab: image $ref" >&2
			"$img/mkimage" -o "$tarball" -tag "$ref" -file "$src=$dest" "${entry[@]}" >&2
			echo "$ref $src" >"$tarball.ref"
		fi
		echo "$tarball"
	done
}

# The lab's certctl is built with -tags failpoints (pkg/failpoint): the fault tests write a node's
# failpoint file to break its renewal; a release build ignores that file.
lab_build_certctl_image() {
	local img=$1 ref=$2
	mkdir -p "$img"
	(cd "$HACK/.." && CGO_ENABLED=0 go build -tags failpoints -trimpath -ldflags=-s -o "$img/certctl" ./cmd/certctl &&
		go build -o "$img/mkimage" ./hack/lab/mkimage) >&2
	"$img/mkimage" -o "$img/certctl.tar" -tag "$ref" -file "$img/certctl=/usr/local/bin/certctl" -entrypoint /usr/local/bin/certctl >&2
	echo "$img/certctl.tar"
}

lab_containerd_config() {
	local root=$1 state=$2 sock=$3 cni_bin=$4 cni_conf=$5
	# containerd 2.x, config version 3 (docs/cri/config.md of containerd v2): the CRI plugin is
	# split into io.containerd.cri.v1.images (pinned sandbox image), io.containerd.cri.v1.runtime
	# (runtimes, CNI) and io.containerd.grpc.v1.cri (the streaming server).
	cat <<TOML
version = 3
root = "$root"
state = "$state"
[grpc]
  address = "$sock"
[ttrpc]
  address = "$sock.ttrpc"
[debug]
  address = "$(dirname "$sock")/containerd-debug.sock"
[plugins]
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = "overlayfs"
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = "$PAUSE_IMAGE"
  [plugins.'io.containerd.cri.v1.runtime']
    enable_selinux = false
    # this VM lacks CAP_SYS_RESOURCE: runc otherwise fails ("can't get final child's PID")
    restrict_oom_score_adj = true
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = "runc"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          SystemdCgroup = false
          # runc's state under this containerd's, not /run/containerd/runc
          Root = "$state/runc"
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = ["$cni_bin"]
      conf_dir = "$cni_conf"
  # NRI's socket (/var/run/nri/nri.sock) would be shared by every containerd on the machine.
  [plugins.'io.containerd.nri.v1.nri']
    disable = true
  # Not /opt/containerd on the host.
  [plugins.'io.containerd.internal.v1.opt']
    path = "$root/opt"
TOML
}
