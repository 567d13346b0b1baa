# Sourced by hack/lab/up.sh and hack/lab/multi.sh: builds the lab's images as one-layer
# docker-archive tarballs (hack/lab/mkimage), no registry and no daemon needed.
#
#   lab_build_images BIN OUTDIR   -> prints one tarball path per line: the control-plane images
#                                    (names as `kubeadm config images list` prints them) and pause
#   lab_build_certctl_image OUTDIR IMAGE -> prints the tarball of certctl built from this checkout

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
