package cli

import (
	"context"

	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/restart"
)

// restartKubelet restarts the kubelet of the node at the layout's root: through systemd, or
// its supervisor (restart.KubeletRestarter).
type restartKubelet struct{ l pki.Layout }

func (r restartKubelet) Restart(ctx context.Context) error {
	return restart.KubeletRestarter{Layout: r.l}.Restart(ctx)
}
