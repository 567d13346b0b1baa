package cli

import (
	"context"

	"github.com/certctl/certctl/pkg/kubelet"
	"github.com/certctl/certctl/pkg/pki"
)

// restartKubelet restarts the kubelet of the node at the layout's root.
type restartKubelet struct{ l pki.Layout }

func (r restartKubelet) Restart(ctx context.Context) error {
	return kubelet.Systemd{Root: r.l.Root}.Restart(ctx)
}
