package inspect

import (
	"bufio"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/certctl/certctl/pkg/manifest"
	"github.com/certctl/certctl/pkg/pki"
)

// NodeIPs finds the node's own IPs in its files: --node-ip in the kubelet's
// kubeadm-flags.env (kubeadm 1.35 and older write it there when the operator set one), else
// the apiserver's --advertise-address. Nothing found (a kubeadm 1.36+ worker without a
// --node-ip: kubeadm-flags.env holds only --hostname-override): nil, and the kubelet check
// then only asks for some IP SAN; give --node-ip to inspect to check for the node's own.
func NodeIPs(l pki.Layout) []net.IP {
	if ips := kubeletFlagIPs(filepath.Join(l.KubeletDir, "kubeadm-flags.env")); len(ips) > 0 {
		return ips
	}
	if p, err := manifest.LoadComponent(l.ManifestsDir, "apiserver"); err == nil {
		if ip := net.ParseIP(p.Flags()["advertise-address"]); ip != nil {
			return []net.IP{ip}
		}
	}
	return nil
}

func kubeletFlagIPs(path string) []net.IP {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var ips []net.IP
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// KUBELET_KUBEADM_ARGS="--container-runtime-endpoint=... --node-ip=10.2.1.151"
		_, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue
		}
		for _, field := range strings.Fields(strings.Trim(v, "\"'")) {
			v, ok := strings.CutPrefix(field, "--node-ip=")
			if !ok {
				continue
			}
			for _, s := range strings.Split(v, ",") {
				if ip := net.ParseIP(strings.TrimSpace(s)); ip != nil {
					ips = append(ips, ip)
				}
			}
		}
	}
	return ips
}
