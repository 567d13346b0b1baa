package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/certctl/certctl/pkg/backup"
	"github.com/certctl/certctl/pkg/fsutil"
	"github.com/certctl/certctl/pkg/kubeconfig"
	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/renew"
	"github.com/spf13/cobra"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

func newKubeconfigCmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{Use: "kubeconfig", Short: "Keep users' kubeconfigs in step with admin.conf"}
	var to, from string
	refresh := &cobra.Command{
		Use:   "refresh",
		Short: "Update ~/.kube/config from admin.conf, replacing only this cluster's entries",
		Long: `refresh copies the current credentials of admin.conf into ~/.kube/config (or --to): the
cluster's server and CA data, and the client certificate and key of every user that a context
pairs with this cluster (found by the same server or the same CA data). Other clusters, users,
contexts and the current context are kept; a missing or empty file becomes a copy of
admin.conf. The old file is backed up first (certctl backup list) and the new one written
atomically with mode 0600. This is the runbook's "cp /etc/kubernetes/admin.conf ~/.kube/config"
without losing the other clusters.`,
		Example: `  certctl kubeconfig refresh
  certctl kubeconfig refresh --to /home/ops/.kube/config`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			l := g.Layout()
			src := filepath.Join(l.KubeconfigDir, "admin.conf")
			if from != "" {
				src = pki.UnderRoot(l.Root, from)
			}
			dst := l.UserKubeconfig
			if to != "" {
				dst = pki.UnderRoot(l.Root, to)
			}
			if err := refreshKubeconfig(g, src, dst, false); err != nil {
				return withCode(ExitError, err)
			}
			return nil
		},
	}
	refresh.Flags().StringVar(&to, "to", "", "kubeconfig to update (default $HOME/.kube/config, under --root)")
	refresh.Flags().StringVar(&from, "from", "", "kubeconfig to take the credentials from (default admin.conf)")
	cmd.AddCommand(refresh)
	return cmd
}

// refreshKubeconfig merges src's credentials into dst (backing dst up first, unless the
// caller's backup holds it already) and says what changed.
func refreshKubeconfig(g *Globals, src, dst string, backedUp bool) error {
	l := g.Layout()
	// Under the renewal lock, so that the recovery every certctl command runs first can tell
	// a killed refresh's temp file from one being written.
	lock, err := renew.AcquireLock(l.StateDir(), 30*time.Second)
	if err != nil {
		return err
	}
	defer lock.Release()
	admin, _, err := kubeconfig.Load(src)
	if err != nil {
		return err
	}
	var target *clientcmdapi.Config
	data, err := os.ReadFile(dst)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("read %s: %w", dst, err)
	default:
		if target, err = clientcmd.Load(data); err != nil {
			return fmt.Errorf("%s: not a valid kubeconfig: %w (fix or move it away first)", dst, err)
		}
	}
	merged, changes, err := kubeconfig.Merge(target, admin)
	if err != nil {
		return fmt.Errorf("%s: %w", dst, err)
	}
	w := g.Streams.Out
	if len(changes) == 0 {
		fmt.Fprintf(w, "%s already holds %s's credentials\n", dst, filepath.Base(src))
		return nil
	}
	out, err := kubeconfig.Marshal(merged)
	if err != nil {
		return err
	}
	if data != nil && !backedUp {
		m, err := backup.Create(fsutil.OS{}, l, "kubeconfig refresh", []string{dst}, time.Now())
		if err != nil {
			return fmt.Errorf("back up %s: %w", dst, err)
		}
		fmt.Fprintf(w, "backup: %s (certctl restore %s)\n", m.ID, m.ID)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(dst), err)
	}
	if err := fsutil.WriteFileAtomic(dst, out, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", dst, err)
	}
	for _, ch := range changes {
		fmt.Fprintf(w, "%s %s %q\n", ch.Action, ch.Kind, ch.Name)
	}
	fmt.Fprintf(w, "%s now uses %s's credentials\n", dst, filepath.Base(src))
	return nil
}

// copiesAdminConf reports whether the user's kubeconfig authenticates with admin.conf's
// current client certificate: then it is a copy that a renewal of admin.conf leaves stale.
func copiesAdminConf(l pki.Layout) bool {
	_, admin, err := kubeconfig.Load(filepath.Join(l.KubeconfigDir, "admin.conf"))
	if err != nil || !admin.Embedded() {
		return false
	}
	_, user, err := kubeconfig.Load(l.UserKubeconfig)
	if err != nil {
		return false
	}
	return bytes.Equal(bytes.TrimSpace(user.CertData), bytes.TrimSpace(admin.CertData))
}
