package carotate

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/certctl/certctl/pkg/backup"
	"github.com/certctl/certctl/pkg/fsutil"
	"github.com/certctl/certctl/pkg/txn"
)

// run is one phase's write: the node lock held, interrupted changes recovered, the files
// backed up. Everything between begin and end is undone by undo.
type run struct {
	o    Options
	lock *txn.Lock
	bk   *backup.Manifest
}

// begin takes the node lock, finishes or rolls back any interrupted certctl change, makes
// the rotation directory (0700) and backs up paths (absent ones are recorded as absent, so
// a rollback removes what the phase created).
func begin(o Options, dir string, paths []string) (*run, error) {
	lock, err := txn.AcquireLock(o.Layout.StateDir(), o.LockTimeout)
	if err != nil {
		return nil, err
	}
	r := &run{o: o, lock: lock}
	if err := txn.RecoverLocked(fsutil.OS{}, o.Layout, o.Log); err != nil {
		r.end()
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		r.end()
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	if r.bk, err = backup.Create(fsutil.OS{}, o.Layout, o.Command, paths, o.Now); err != nil {
		r.end()
		return nil, fmt.Errorf("back up before the rotation: %w; nothing was changed", err)
	}
	return r, nil
}

func (r *run) end() {
	if r.lock != nil {
		r.lock.Release()
	}
}

// replace writes edits as one journaled transaction (keys first).
func (r *run) replace(items []string, edits []fileEdit) error {
	j := txn.Journal{Kind: "ca rotation", Started: r.o.Now.UTC(), Command: r.o.Command, BackupID: r.bk.ID, Items: items}
	return txn.Replace(fsutil.OS{}, r.o.Layout, j, txnChanges(edits))
}

// undo puts the backup back after a failure in the middle of a phase.
func (r *run) undo(cause error) error {
	if _, err := backup.Restore(fsutil.OS{}, r.o.Layout, r.bk.ID); err != nil {
		return fmt.Errorf("%w; restoring backup %s also failed: %v (certctl restore %s)", cause, r.bk.ID, err, r.bk.ID)
	}
	return fmt.Errorf("%w; the files of backup %s were put back, nothing is changed", cause, r.bk.ID)
}

// txnChanges merges edits by path (the last content wins), keys first.
func txnChanges(edits []fileEdit) []txn.Change {
	var out []txn.Change
	idx := map[string]int{}
	for _, e := range edits {
		if e.remove {
			out = append(out, txn.Change{Path: e.path, Remove: true})
			continue
		}
		if e.data == nil {
			continue
		}
		path := e.path
		if e.writeTo != "" {
			path = e.writeTo
		}
		if i, ok := idx[path]; ok {
			out[i].Data = e.data
			continue
		}
		idx[path] = len(out)
		out = append(out, txn.Change{Path: path, Data: e.data, Mode: e.mode})
	}
	slices.SortStableFunc(out, func(a, b txn.Change) int { return keyFirst(a.Path) - keyFirst(b.Path) })
	return out
}

func keyFirst(p string) int {
	if strings.HasSuffix(p, ".key") {
		return 0
	}
	return 1
}

// pathsOf lists the distinct files of edits.
func pathsOf(edits []fileEdit) []string {
	var out []string
	for _, e := range edits {
		for _, p := range []string{e.path, e.writeTo} {
			if p != "" && !slices.Contains(out, p) {
				out = append(out, p)
			}
		}
	}
	return out
}

// report fills r with the edits: each change in words, and who must restart.
func report(r *Result, edits []fileEdit) {
	for _, e := range edits {
		r.Changes = append(r.Changes, Change{Path: e.path, What: e.what})
		r.restart(e.component)
	}
}
