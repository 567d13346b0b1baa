package restart

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/certctl/certctl/pkg/kubelet"
	"github.com/certctl/certctl/pkg/pki"
)

// Changed restarts the components a change on the node named (a phase of a CA rotation): on a
// node with static pods, through Restart (the safe order, each verified, the kubelet too when
// named); on a node without (a worker), the kubelet alone, waited until healthy. Nothing named,
// nothing restarted.
func Changed(ctx context.Context, req Request, comps []string) error {
	if len(comps) == 0 {
		return nil
	}
	if slices.ContainsFunc(comps, func(c string) bool { return c != Kubelet }) {
		if _, err := Restart(ctx, req, comps); err != nil {
			return fmt.Errorf("the change is applied, but the restart failed: %w (certctl restart %s, or --rollback)", err, strings.Join(comps, " "))
		}
		return nil
	}
	out := req.Out
	if out == nil {
		out = io.Discard
	}
	fmt.Fprintln(out, "restarting the kubelet")
	restarter := req.Kubelet
	if restarter == nil {
		restarter = KubeletRestarter{Layout: req.Layout}
	}
	if err := restarter.Restart(ctx); err != nil {
		return fmt.Errorf("the change is applied, but the kubelet could not be restarted: %w", err)
	}
	if err := kubelet.WaitHealthy(ctx, req.kubeletWait()); err != nil {
		return err
	}
	fmt.Fprintln(out, "kubelet restarted and healthy")
	return nil
}

// CheckStackedEtcd is CheckEtcdRestart (DefaultPeerWait) on a node with a stacked etcd member:
// refused while another member is unhealthy. A node without one (a worker, an external etcd)
// passes.
func CheckStackedEtcd(ctx context.Context, l pki.Layout, p *Progress) error {
	if _, err := os.Stat(filepath.Join(l.ManifestsDir, "etcd.yaml")); errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("the etcd manifest: %w", err)
	}
	_, err := CheckEtcdRestart(ctx, l, DefaultPeerWait, p)
	return err
}
