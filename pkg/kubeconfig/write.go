package kubeconfig

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/certctl/certctl/pkg/fsutil"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// RefreshOptions say which kubeconfig to refresh from which.
type RefreshOptions struct {
	Src string // admin.conf, or --from
	Dst string // ~/.kube/config, or --to
	// Backup saves Dst before it is replaced and returns the backup's ID; nil when the
	// caller's backup holds Dst already. It is not called for a Dst that does not exist.
	Backup func(path string) (string, error)
}

// RefreshResult says what Refresh did.
type RefreshResult struct {
	Changes  []Change // empty: Dst already held Src's credentials, nothing was written
	BackupID string
	Created  bool // Dst did not exist
}

// Refresh merges Src's current credentials into Dst (see Merge) and writes Dst atomically,
// after the backup. Dst keeps its owner, group and mode: refreshing /home/ops/.kube/config
// as root leaves it ops's, 0640 if it was 0640. A new Dst is 0600 and belongs to the owner of
// the directory it is created in (a new .kube directory, 0700, too), so a user's kubeconfig
// never becomes root's. A Dst that is a symlink is written through: the link stays.
func Refresh(o RefreshOptions) (*RefreshResult, error) {
	admin, _, err := Load(o.Src)
	if err != nil {
		return nil, err
	}
	dst := o.Dst
	if real, err := filepath.EvalSymlinks(dst); err == nil {
		dst = real
	}
	var target *clientcmdapi.Config
	data, err := os.ReadFile(dst)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("read %s: %w", dst, err)
	default:
		if target, err = clientcmd.Load(data); err != nil {
			return nil, fmt.Errorf("%s: not a valid kubeconfig: %w (fix or move it away first)", dst, err)
		}
	}
	merged, changes, err := Merge(target, admin)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dst, err)
	}
	res := &RefreshResult{Created: data == nil}
	if len(changes) == 0 {
		return res, nil
	}
	out, err := Marshal(merged)
	if err != nil {
		return nil, err
	}
	if bytes.Equal(out, data) {
		return res, nil
	}
	mode, uid, gid := os.FileMode(0o600), -1, -1
	if st, err := os.Stat(dst); err == nil {
		mode, uid, gid = st.Mode().Perm(), ownerOf(st)[0], ownerOf(st)[1]
	} else {
		dir, err := mkdirOwned(filepath.Dir(dst))
		if err != nil {
			return nil, err
		}
		uid, gid = dir[0], dir[1]
	}
	if data != nil && o.Backup != nil {
		if res.BackupID, err = o.Backup(dst); err != nil {
			return nil, fmt.Errorf("back up %s: %w", dst, err)
		}
	}
	if err := fsutil.WriteFileAtomicOwned(dst, out, mode, uid, gid); err != nil {
		return nil, err
	}
	res.Changes = changes
	return res, nil
}

// mkdirOwned creates dir (0700) if needed, owned like its closest existing parent, and returns
// the owner of dir.
func mkdirOwned(dir string) ([2]int, error) {
	if st, err := os.Stat(dir); err == nil {
		return ownerOf(st), nil
	}
	owner, err := mkdirOwned(filepath.Dir(dir))
	if err != nil {
		return owner, err
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return owner, fmt.Errorf("create %s: %w", dir, err)
	}
	if err := os.Lchown(dir, owner[0], owner[1]); err != nil {
		return owner, fmt.Errorf("create %s: chown %d:%d: %w", dir, owner[0], owner[1], err)
	}
	return owner, nil
}

func ownerOf(st fs.FileInfo) [2]int {
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		return [2]int{int(sys.Uid), int(sys.Gid)}
	}
	return [2]int{-1, -1}
}

// CopiesAdmin reports whether the kubeconfig at user authenticates with the client
// certificate of the one at admin: then it is a copy that a renewal of admin leaves stale.
func CopiesAdmin(admin, user string) bool {
	_, a, err := Load(admin)
	if err != nil || !a.Embedded() {
		return false
	}
	_, u, err := Load(user)
	if err != nil {
		return false
	}
	return bytes.Equal(bytes.TrimSpace(u.CertData), bytes.TrimSpace(a.CertData))
}

// Render says what Refresh did, for a person.
func (r *RefreshResult) Render(w io.Writer, src, dst string) {
	if len(r.Changes) == 0 {
		fmt.Fprintf(w, "%s already holds %s's credentials\n", dst, filepath.Base(src))
		return
	}
	if r.BackupID != "" {
		fmt.Fprintf(w, "backup: %s (certctl restore %s)\n", r.BackupID, r.BackupID)
	}
	for _, ch := range r.Changes {
		fmt.Fprintf(w, "%s %s %q\n", ch.Action, ch.Kind, ch.Name)
	}
	fmt.Fprintf(w, "%s now uses %s's credentials\n", dst, filepath.Base(src))
}
