package sandbox

import (
	"fmt"
	"net"

	"github.com/certctl/certctl/pkg/manifest"
	"github.com/certctl/certctl/templates"
)

func kubeletConfig(serverTLSBootstrap bool) (string, error) {
	out, err := templates.Render("sandbox/kubelet-config.yaml", map[string]any{"ServerTLSBootstrap": serverTLSBootstrap})
	return string(out), err
}

func manifests(node string, ip net.IP) (map[string]string, error) {
	out := map[string]string{}
	for _, f := range manifest.Files {
		data, err := templates.Render("sandbox/"+f, map[string]any{"NodeName": node, "NodeIP": ip.String()})
		if err != nil {
			return nil, fmt.Errorf("sandbox manifest %s: %w", f, err)
		}
		out[f] = string(data)
	}
	return out, nil
}
