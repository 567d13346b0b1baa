package restart

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/certctl/certctl/pkg/fsutil"
	"github.com/certctl/certctl/pkg/pki"
)

// Pending manifests: a change that edits a static-pod manifest (ca rotate) and will restart
// the component writes the new manifest into Layout.PendingManifestsDir(), not over the one
// the kubelet watches: edited in place, the kubelet would restart etcd and the apiserver at
// once, uncontrolled (no drain, no check of the other etcd members, no leadership moved). The
// restart installs it: once the old manifest is in staging and before it goes back, the
// staged file is replaced by the pending one, so the component comes back on the new
// manifest, and a certctl killed in between puts the new one back (Recover).
//
// The process that wrote them claims them (ClaimPending) until it is done (ReleasePending
// installs what its restart did not); the pending manifests of a process that is gone are
// installed in place by the next certctl command (RecoverPending).

// Pending removals: a rollback that puts manifests back through the pending dir removes the
// files the phase created; those the manifests in place still name (a rotation's bundles) must
// stay until the manifests from before are in: an apiserver the kubelet restarts meanwhile (its
// etcd restarting) would not start without them. The rollback writes their list to
// PendingRemovalsPath, in the same journaled change as the rest of its restore; ReleasePending
// removes them once every pending manifest is in, and with them the directories they leave
// empty.

// PendingRemovalsPath is the list (JSON, host paths) of the files to remove once the pending
// manifests are in.
func PendingRemovalsPath(l pki.Layout) string {
	return filepath.Join(l.StateDir(), "pending-removals.json")
}

// PendingRemovals is the content of PendingRemovalsPath.
type PendingRemovals struct {
	Files []string `json:"files"`
	// Dirs are removed too once the files are gone, when empty (deepest first).
	Dirs []string `json:"dirs,omitempty"`
}

// removePending removes the pending removals, saying so on w, and their list.
func removePending(l pki.Layout, w io.Writer) error {
	data, err := os.ReadFile(PendingRemovalsPath(l))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", PendingRemovalsPath(l), err)
	}
	var r PendingRemovals
	if err := json.Unmarshal(data, &r); err != nil {
		return fmt.Errorf("%s: %w", PendingRemovalsPath(l), err)
	}
	for _, f := range r.Files {
		if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove %s: %w", f, err)
		}
		fmt.Fprintf(w, "certctl: removed %s (the manifests that named it are replaced)\n", f)
	}
	for _, d := range r.Dirs {
		_ = os.Remove(d) // only when empty
	}
	if err := os.Remove(PendingRemovalsPath(l)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("clear %s: %w", PendingRemovalsPath(l), err)
	}
	return nil
}

func pendingOwnerPath(l pki.Layout) string {
	return filepath.Join(l.StateDir(), "pending-owner.json")
}

type pendingOwner struct {
	Owner Owner     `json:"owner"`
	Time  time.Time `json:"time"`
}

// ClaimPending records this process as the owner of the pending manifests it is about to
// write, so that another certctl command leaves them to it.
func ClaimPending(l pki.Layout) error {
	if err := os.MkdirAll(l.StateDir(), 0o700); err != nil {
		return fmt.Errorf("create %s: %w", l.StateDir(), err)
	}
	data, err := json.Marshal(pendingOwner{Owner: self(), Time: time.Now().UTC()})
	if err != nil {
		return err
	}
	if err := fsutil.WriteFileAtomic(pendingOwnerPath(l), data, 0o600); err != nil {
		return fmt.Errorf("claim the pending manifests: %w", err)
	}
	return nil
}

// ReleasePending installs in place whatever pending manifest is left (a restart that did not
// run, or stopped before that component: the kubelet then restarts it by itself, as on a
// manifest edited in place), then makes the pending removals, and drops the claim. It returns
// the manifests it installed.
func ReleasePending(l pki.Layout, w io.Writer) ([]string, error) {
	installed, err := installPending(l, w)
	if err != nil {
		return installed, err
	}
	if err := removePending(l, w); err != nil {
		return installed, err
	}
	if err := os.Remove(pendingOwnerPath(l)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return installed, fmt.Errorf("clear %s: %w", pendingOwnerPath(l), err)
	}
	return installed, nil
}

// RecoverPending installs the pending manifests of a certctl that is gone (killed between
// writing them and restarting the components), saying so on w.
func RecoverPending(l pki.Layout, w io.Writer) error {
	if data, err := os.ReadFile(pendingOwnerPath(l)); err == nil {
		var o pendingOwner
		if json.Unmarshal(data, &o) == nil && o.Owner.Alive() && o.Owner.PID != os.Getpid() {
			return nil // its owner still runs: it installs them
		}
	}
	_, err := ReleasePending(l, w)
	return err
}

// installPending moves every pending manifest into the manifests dir.
func installPending(l pki.Layout, w io.Writer) ([]string, error) {
	dir := l.PendingManifestsDir()
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", dir, err)
	}
	var done []string
	for _, e := range entries {
		if e.IsDir() || fsutil.IsTemp(e.Name()) {
			continue
		}
		manifest := filepath.Join(l.ManifestsDir, e.Name())
		if err := os.Rename(filepath.Join(dir, e.Name()), manifest); err != nil {
			return done, fmt.Errorf("install the pending %s: %w", manifest, err)
		}
		if err := syncDirs(l.ManifestsDir, dir); err != nil {
			return done, err
		}
		fmt.Fprintf(w, "certctl: installed the new %s in place (no certctl restart took it: the kubelet restarts the component by itself)\n", manifest)
		done = append(done, manifest)
	}
	return done, nil
}

// takePending replaces the staged copy of manifest by its pending new content, if there is
// one: the restart then puts the new manifest back. It reports whether there was.
func takePending(l pki.Layout, manifest, staged string) (bool, error) {
	pending := filepath.Join(l.PendingManifestsDir(), filepath.Base(manifest))
	if _, err := os.Stat(pending); errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err := os.Rename(pending, staged); err != nil {
		return false, fmt.Errorf("take the new %s from %s: %w", filepath.Base(manifest), pending, err)
	}
	if err := syncDirs(l.PendingManifestsDir(), stagingDir(l)); err != nil {
		return true, err
	}
	return true, nil
}
