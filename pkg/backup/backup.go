// Package backup copies the files a command is about to change into a timestamped
// directory under Layout.BackupRoot(), with a JSON manifest, and brings them back.
//
//	m, err := backup.Create(w, layout, "certctl renew all", paths, time.Now())
//	...change the files...
//	backup.Restore(w, layout, m.ID) // on failure, or later from `certctl restore ID`
//
// A backup is complete once its manifest.json exists: the manifest is written last, so a
// crash while copying leaves a directory that List ignores.
package backup

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/certctl/certctl/pkg/fsutil"
	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/txn"
)

// ManifestName is the manifest's file name inside a backup directory.
const ManifestName = "manifest.json"

// File is one backed-up file.
type File struct {
	// Path is the node path (as on the node, without --root), e.g. /etc/kubernetes/pki/apiserver.crt.
	Path string `json:"path"`
	// Mode is the original permission bits, e.g. 0600.
	Mode fs.FileMode `json:"mode"`
	// SHA256 is the hex digest of the content; Restore checks it.
	SHA256 string `json:"sha256,omitempty"`
	// Absent means the file did not exist: restoring removes it.
	Absent bool `json:"absent,omitempty"`
	// Stored is the copy's path relative to the backup directory.
	Stored string `json:"stored,omitempty"`
}

// Manifest describes one backup.
type Manifest struct {
	ID      string    `json:"id"`
	Time    time.Time `json:"time"`
	Command string    `json:"command"`
	Files   []File    `json:"files"`
}

// Dir returns the directory of backup id.
func Dir(l pki.Layout, id string) string { return filepath.Join(l.BackupRoot(), id) }

// Create copies every path (absolute, under l.Root) into a new backup and returns its
// manifest. Paths that do not exist are recorded as absent. Nothing outside the new backup
// directory is changed.
func Create(w fsutil.Writer, l pki.Layout, command string, paths []string, now time.Time) (*Manifest, error) {
	m := &Manifest{Time: now.UTC(), Command: command}
	type content struct {
		data []byte
		file File
	}
	var contents []content
	seen := map[string]bool{}
	for _, p := range paths {
		p = filepath.Clean(p)
		if seen[p] {
			continue
		}
		seen[p] = true
		f := File{Path: nodePath(l, p)}
		st, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			f.Absent = true
			contents = append(contents, content{file: f})
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("back up %s: %w", p, err)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("back up %s: %w", p, err)
		}
		f.Mode = st.Mode().Perm()
		f.SHA256 = Sum(data)
		f.Stored = filepath.Join("files", strings.TrimPrefix(f.Path, "/"))
		contents = append(contents, content{data: data, file: f})
	}
	if err := w.MkdirAll(l.BackupRoot(), 0o700); err != nil {
		return nil, fmt.Errorf("create backup: %w", err)
	}
	dir, id, err := newDir(l.BackupRoot(), now)
	if err != nil {
		return nil, err
	}
	m.ID = id
	// The copies are new files in a new directory: written and fsynced directly, their
	// directories synced once; the manifest, written last and atomically, marks the backup
	// complete.
	dirs := map[string]bool{}
	for _, c := range contents {
		if !c.file.Absent {
			dst := filepath.Join(dir, c.file.Stored)
			if d := filepath.Dir(dst); !dirs[d] {
				if err := w.MkdirAll(d, 0o700); err != nil {
					os.RemoveAll(dir)
					return nil, fmt.Errorf("create backup: %w", err)
				}
				dirs[d] = true
			}
			if err := w.WriteNew(dst, c.data, 0o600); err != nil {
				os.RemoveAll(dir)
				return nil, fmt.Errorf("create backup: %w", err)
			}
		}
		m.Files = append(m.Files, c.file)
	}
	synced := map[string]bool{}
	for d := range dirs {
		for ; d != dir && strings.HasPrefix(d, dir) && !synced[d]; d = filepath.Dir(d) {
			synced[d] = true
			if err := w.SyncDir(d); err != nil {
				os.RemoveAll(dir)
				return nil, fmt.Errorf("create backup: %w", err)
			}
		}
	}
	if err := w.SyncDir(l.BackupRoot()); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("create backup: %w", err)
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("create backup: %w", err)
	}
	if err := w.WriteFile(filepath.Join(dir, ManifestName), append(data, '\n'), 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("create backup: %w", err)
	}
	return m, nil
}

// newDir creates a fresh backup directory named after now plus a random suffix.
func newDir(root string, now time.Time) (string, string, error) {
	for range 10 {
		var b [3]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", "", err
		}
		id := now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
		dir := filepath.Join(root, id)
		err := os.Mkdir(dir, 0o700)
		if err == nil {
			return dir, id, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return "", "", fmt.Errorf("create backup directory %s: %w", dir, err)
		}
	}
	return "", "", fmt.Errorf("create backup directory under %s: too many collisions", root)
}

// Sum is the hex SHA-256 of data.
func Sum(data []byte) string { return txn.Sum(data) }

// nodePath turns an absolute path under l.Root into the node path recorded in manifests,
// so a backup of a copied tree restores into wherever the copy is.
func nodePath(l pki.Layout, p string) string {
	if l.Root == "" || l.Root == "/" {
		return p
	}
	rel, err := filepath.Rel(l.Root, p)
	if err != nil || strings.HasPrefix(rel, "..") {
		return p
	}
	return "/" + rel
}

// Load reads the manifest of backup id.
func Load(l pki.Layout, id string) (*Manifest, error) {
	if id == "" || strings.ContainsAny(id, `/\`) || id == "." || id == ".." {
		return nil, fmt.Errorf("invalid backup id %q (see 'certctl backup list')", id)
	}
	p := filepath.Join(Dir(l, id), ManifestName)
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no backup %q under %s (see 'certctl backup list')", id, l.BackupRoot())
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%s: not a valid backup manifest: %w", p, err)
	}
	if m.ID != id {
		return nil, fmt.Errorf("%s: manifest is for backup %q, not %q", p, m.ID, id)
	}
	return &m, nil
}

// List returns the complete backups under l.BackupRoot(), oldest first. A missing backup
// directory is an empty list.
func List(l pki.Layout) ([]Manifest, error) {
	entries, err := os.ReadDir(l.BackupRoot())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list backups: %w", err)
	}
	var out []Manifest
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		if _, err := os.Stat(filepath.Join(l.BackupRoot(), e.Name(), ManifestName)); err != nil {
			continue // incomplete (interrupted while copying)
		}
		m, err := Load(l, e.Name())
		if err != nil {
			return nil, err
		}
		out = append(out, *m)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Time.Equal(out[j].Time) {
			return out[i].Time.Before(out[j].Time)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// Restore puts every file of backup id back in place (under l.Root) with its original mode,
// after checking every stored copy against its SHA-256 (a damaged backup changes nothing),
// as one journaled transaction (pkg/txn): a kill at any instant leaves either every file as
// it was or, after the next certctl run's recovery, every file restored; never a key of one
// beside the certificate of the other. Files recorded as absent are removed. The caller
// holds the node lock (txn.AcquireLock) and has run txn.RecoverLocked; RestoreLocked does
// both. It returns the manifest.
func Restore(w fsutil.Writer, l pki.Layout, id string) (*Manifest, error) {
	return RestoreWith(w, l, id, nil)
}

// RestoreWith is Restore with each file's change passed through edit first (nil: none): edit
// may send a file elsewhere (a static-pod manifest to the pending manifests, for a restart to
// install) or drop it (false); extra changes go into the same journaled change.
func RestoreWith(w fsutil.Writer, l pki.Layout, id string, edit func(txn.Change) (txn.Change, bool), extra ...txn.Change) (*Manifest, error) {
	m, changes, err := load(l, id)
	if err != nil {
		return nil, err
	}
	if edit != nil {
		changes = editChanges(changes, edit)
	}
	changes = append(changes, extra...)
	j := txn.Journal{Kind: "restore", Started: time.Now().UTC(), Command: "certctl restore " + id, BackupID: id}
	for _, f := range m.Files {
		j.Items = append(j.Items, f.Path)
	}
	if err := txn.Replace(w, l, j, changes); err != nil {
		return nil, fmt.Errorf("restore backup %s: %w", id, err)
	}
	return m, nil
}

// RestoreUnjournaled writes the files of backup id back one by one, each atomically: for a
// caller whose own journal already covers these files (renew's rollback when a rename
// failed: its commit-phase journal stays until the restore is complete).
func RestoreUnjournaled(w fsutil.Writer, l pki.Layout, id string) (*Manifest, error) {
	m, changes, err := load(l, id)
	if err != nil {
		return nil, err
	}
	for _, c := range changes {
		if c.Remove {
			if err := w.Remove(c.Path); err != nil {
				return nil, fmt.Errorf("restore backup %s: %w", id, err)
			}
			continue
		}
		if err := w.MkdirAll(filepath.Dir(c.Path), 0o755); err != nil {
			return nil, fmt.Errorf("restore backup %s: %w", id, err)
		}
		if err := w.WriteFile(c.Path, c.Data, c.Mode); err != nil {
			return nil, fmt.Errorf("restore backup %s: %w", id, err)
		}
	}
	return m, nil
}

// RestoreResult is what RestoreLocked did.
type RestoreResult struct {
	Restored *Manifest // the backup put back
	Previous *Manifest // the files as they were just before, backed up first
}

// RestoreLocked is `certctl restore ID`: under the node lock (waiting up to lockTimeout),
// after recovering any interrupted change, it backs up the current files (so the restore
// can be undone) and restores backup id.
func RestoreLocked(l pki.Layout, id string, lockTimeout time.Duration, log io.Writer) (*RestoreResult, error) {
	if log == nil {
		log = io.Discard
	}
	m, err := Load(l, id)
	if err != nil {
		return nil, err
	}
	lock, err := txn.AcquireLock(l.StateDir(), lockTimeout)
	if err != nil {
		return nil, err
	}
	defer lock.Release()
	if err := txn.RecoverLocked(fsutil.OS{}, l, log); err != nil {
		return nil, err
	}
	pre, err := Create(fsutil.OS{}, l, "certctl restore "+m.ID+" (state before restoring)", m.Paths(l), time.Now())
	if err != nil {
		return nil, err
	}
	if _, err := Restore(fsutil.OS{}, l, m.ID); err != nil {
		return nil, fmt.Errorf("%w (the files as they were before this restore are in backup %s)", err, pre.ID)
	}
	return &RestoreResult{Restored: m, Previous: pre}, nil
}

// load reads backup id and checks every stored copy, returning the changes that restore it.
func load(l pki.Layout, id string) (*Manifest, []txn.Change, error) {
	m, err := Load(l, id)
	if err != nil {
		return nil, nil, err
	}
	dir := Dir(l, id)
	var changes []txn.Change
	for _, f := range m.Files {
		dst := pki.UnderRoot(l.Root, f.Path)
		if f.Absent {
			changes = append(changes, txn.Change{Path: dst, Remove: true})
			continue
		}
		src := filepath.Join(dir, f.Stored)
		data, err := os.ReadFile(src)
		if err != nil {
			return nil, nil, fmt.Errorf("restore %s: %w", f.Path, err)
		}
		if got := Sum(data); got != f.SHA256 {
			return nil, nil, fmt.Errorf("restore %s: backup copy %s is damaged (sha256 %s, manifest says %s); nothing restored", f.Path, src, got, f.SHA256)
		}
		changes = append(changes, txn.Change{Path: dst, Data: data, Mode: f.Mode})
	}
	// Keys before certificates: after a partial rename (only ever seen by recovery) a key is
	// never older than its certificate's backup.
	slices.SortStableFunc(changes, func(a, b txn.Change) int { return keyFirst(a.Path) - keyFirst(b.Path) })
	return m, changes, nil
}

func keyFirst(p string) int {
	if strings.HasSuffix(p, ".key") {
		return 0
	}
	return 1
}

// Paths returns the absolute paths (under l.Root) of the files of m.
func (m *Manifest) Paths(l pki.Layout) []string {
	out := make([]string, len(m.Files))
	for i, f := range m.Files {
		out[i] = pki.UnderRoot(l.Root, f.Path)
	}
	return out
}

// editChanges passes every change through edit. Where several end on one path, a file's own
// stored copy wins over another file sent there, which wins over the file's removal: the path's
// own state in the backup is the newer one (a pending manifest that held earlier edits), and a
// file that was absent gets what is sent to it.
func editChanges(changes []txn.Change, edit func(txn.Change) (txn.Change, bool)) []txn.Change {
	rank := func(c txn.Change, own bool) int {
		switch {
		case c.Remove:
			return 0
		case own:
			return 2
		}
		return 1
	}
	var out []txn.Change
	var ranks []int
	at := map[string]int{}
	for _, c := range changes {
		from := c.Path
		c, keep := edit(c)
		if !keep {
			continue
		}
		r := rank(c, c.Path == from)
		if i, ok := at[c.Path]; ok {
			if r > ranks[i] {
				out[i], ranks[i] = c, r
			}
			continue
		}
		at[c.Path] = len(out)
		out, ranks = append(out, c), append(ranks, r)
	}
	return out
}
