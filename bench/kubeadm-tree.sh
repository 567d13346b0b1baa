#!/usr/bin/env bash
# Writes a node tree made by the real kubeadm under DIR: DIR/etc/kubernetes/{pki,*.conf} and
# DIR/kubeadm.yaml (the config, usable inside `kubeadm --rootfs DIR` as /kubeadm.yaml).
#   bench/kubeadm-tree.sh DIR [extra-apiserver-SAN]
set -euo pipefail
dir=$1
san=${2:-10.2.0.100}
kubeadm=${KUBEADM:-$("$(dirname "$0")/../hack/build-k8s.sh" kubeadm | tail -1)/kubeadm}
mkdir -p "$dir/etc/kubernetes"
cat > "$dir/kubeadm.yaml" <<YAML
apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
localAPIEndpoint:
  advertiseAddress: 10.2.1.151
  bindPort: 6443
nodeRegistration:
  name: master-1
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
kubernetesVersion: v1.32.4
certificatesDir: /etc/kubernetes/pki
controlPlaneEndpoint: 127.0.0.1:6443
apiServer:
  certSANs: [$san]
YAML
"$kubeadm" init phase certs all --rootfs "$dir" --config /kubeadm.yaml >/dev/null
"$kubeadm" init phase kubeconfig all --rootfs "$dir" --config /kubeadm.yaml >/dev/null
