package txn

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/certctl/certctl/pkg/fsutil"
	"github.com/certctl/certctl/pkg/pki"
)

// The journal makes a multi-file change crash-safe. A transaction:
//
//  1. writes the journal in phase "prepare" (atomically), listing each file, its staged
//     name (.<file>.certctl-new) and the SHA-256 of its new content;
//  2. writes every staged file (fsynced; then their directories are fsynced);
//  3. rewrites the journal in phase "commit" (atomically);
//  4. renames each staged file over its target (a key before its certificate) and removes
//     the files marked Remove, then fsyncs the directories;
//  5. removes the journal.
//
// A kill before 3 leaves the targets untouched: Recover removes the staged files (the pairs
// are old-and-matching). A kill after 3 may leave a new key beside an old certificate for an
// instant: Recover finishes the renames from the staged files, which are complete (the pairs
// become new-and-matching). After 5 there is nothing to do. renew's Apply follows the same
// steps with its own order of work (keys are generated while it stages); Replace is the
// plain form.

// JournalName is the journal's file name under Layout.StateDir() (named after its first user).
const JournalName = "renew-journal.json"

// StagedSuffix ends the name of a file's new content before the rename (StagedName).
const StagedSuffix = ".certctl-new"

// StagedName is where a transaction stages the new content of path: beside it, hidden
// (.<name>.certctl-new). Hidden because the kubelet runs every file of the manifests dir
// whose name does not start with a dot: a staged etcd.yaml.certctl-new was, for the instant
// between its write and its rename, a second etcd static pod on the same data dir (seen on
// the multi-node lab: the kubelet parsed it).
func StagedName(path string) string {
	dir, base := filepath.Split(path)
	return filepath.Join(dir, "."+base+StagedSuffix)
}

// Phases of a journal.
const (
	PhasePrepare = "prepare"
	PhaseCommit  = "commit"
)

// Journal is the record of one transaction.
type Journal struct {
	// Kind names the transaction in recovery messages: "renewal" (also when empty: journals
	// written before Kind existed), "restore", "kubelet config edit".
	Kind     string    `json:"kind,omitempty"`
	Started  time.Time `json:"started"`
	Command  string    `json:"command"`
	BackupID string    `json:"backup_id"`
	Phase    string    `json:"phase"`
	Items    []string  `json:"items"`
	Files    []File    `json:"files"`
}

// File is one file of a transaction.
type File struct {
	Path   string `json:"path"`
	Staged string `json:"staged,omitempty"`
	SHA256 string `json:"sha256,omitempty"` // of the new content
	Remove bool   `json:"remove,omitempty"` // the file is removed (it did not exist before)
}

func (j *Journal) kind() string {
	if j.Kind == "" {
		return "renewal"
	}
	return j.Kind
}

// JournalPath is the journal of the node at l.
func JournalPath(l pki.Layout) string { return filepath.Join(l.StateDir(), JournalName) }

// Sum is the hex SHA-256 of data.
func Sum(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

// WriteJournal writes j atomically.
func WriteJournal(w fsutil.Writer, l pki.Layout, j *Journal) error {
	data, err := json.MarshalIndent(j, "", "  ")
	if err != nil {
		return err
	}
	if err := w.MkdirAll(l.StateDir(), 0o700); err != nil {
		return err
	}
	return w.WriteFile(JournalPath(l), append(data, '\n'), 0o600)
}

// Change is one file of Replace: its new content and mode, or its removal.
type Change struct {
	Path   string
	Data   []byte
	Mode   os.FileMode
	Remove bool
}

// Replace applies changes as one transaction (the steps above), in their order: give keys
// before certificates. j carries Kind, Command, BackupID and Items; Replace fills Phase and
// Files. The caller holds the node lock and has run RecoverLocked. On an error before the
// commit nothing is changed; after it, the journal stays and the next certctl run completes
// the change.
func Replace(w fsutil.Writer, l pki.Layout, j Journal, changes []Change) error {
	if _, err := os.Stat(JournalPath(l)); err == nil {
		return fmt.Errorf("the journal %s of an interrupted change is still there: run any certctl command to recover it first; nothing was changed", JournalPath(l))
	}
	j.Phase, j.Files = PhasePrepare, nil
	var paths []string
	for _, c := range changes {
		f := File{Path: c.Path, Remove: c.Remove}
		if !c.Remove {
			f.Staged, f.SHA256 = StagedName(c.Path), Sum(c.Data)
		}
		j.Files = append(j.Files, f)
		paths = append(paths, c.Path)
	}
	undo := func(cause error) error {
		for _, f := range j.Files {
			if f.Staged != "" {
				w.Remove(f.Staged)
			}
		}
		RemoveTemps(&j, l)
		w.Remove(JournalPath(l))
		return fmt.Errorf("%w; nothing was changed", cause)
	}
	if err := WriteJournal(w, l, &j); err != nil {
		return undo(err)
	}
	for _, c := range changes {
		if c.Remove {
			continue
		}
		if err := w.MkdirAll(filepath.Dir(c.Path), 0o755); err != nil {
			return undo(err)
		}
		if err := w.WriteNew(StagedName(c.Path), c.Data, c.Mode); err != nil {
			return undo(err)
		}
	}
	for _, d := range DirsOf(paths) {
		if err := w.SyncDir(d); err != nil {
			return undo(err)
		}
	}
	j.Phase = PhaseCommit
	if err := WriteJournal(w, l, &j); err != nil {
		return undo(err)
	}
	if err := commit(w, l, &j); err != nil {
		return fmt.Errorf("%w (the journal %s stays: the next certctl run completes the %s)", err, JournalPath(l), j.kind())
	}
	return nil
}

// commit puts a committed journal's files in place and removes the journal.
func commit(w fsutil.Writer, l pki.Layout, j *Journal) error {
	var paths []string
	for _, f := range j.Files {
		paths = append(paths, f.Path)
		if f.Remove {
			if err := w.Remove(f.Path); err != nil {
				return err
			}
			continue
		}
		if err := w.Rename(f.Staged, f.Path); err != nil {
			return err
		}
	}
	for _, d := range DirsOf(paths) {
		if err := w.SyncDir(d); err != nil {
			return err
		}
	}
	return w.Remove(JournalPath(l))
}

// Recover finishes or rolls back a transaction that was interrupted (killed, power loss),
// from its journal, and says what it did on log. Without a journal it does nothing and
// writes nothing. When another certctl run holds the lock, the journal is that run's:
// Recover leaves it alone. certctl calls it before every command.
func Recover(l pki.Layout, log io.Writer) error {
	if _, err := os.Stat(JournalPath(l)); errors.Is(err, fs.ErrNotExist) && !hasTemps(l.StateDir()) && !hasTemps(userKubeDir(l)) {
		return nil
	}
	lock, err := TryLock(l.StateDir())
	if err != nil {
		var busy *ErrLocked
		if errors.As(err, &busy) {
			return nil
		}
		return err
	}
	defer lock.Release()
	return RecoverLocked(fsutil.OS{}, l, log)
}

// RecoverLocked is Recover for a caller that holds the lock.
func RecoverLocked(w fsutil.Writer, l pki.Layout, log io.Writer) error {
	jp := JournalPath(l)
	data, err := os.ReadFile(jp)
	if errors.Is(err, fs.ErrNotExist) {
		// Killed while writing its first journal (nothing else was touched), or while
		// refreshing ~/.kube/config after a renewal (which holds the lock, like this).
		fsutil.RemoveTemps(l.StateDir())
		fsutil.RemoveTemps(userKubeDir(l))
		return nil
	}
	if err != nil {
		return fmt.Errorf("read renewal journal %s: %w", jp, err)
	}
	var j Journal
	if err := json.Unmarshal(data, &j); err != nil {
		return fmt.Errorf("renewal journal %s is damaged (%v): check the pairs with 'certctl inspect' and restore a backup with 'certctl restore' if needed, then remove the journal", jp, err)
	}
	switch j.Phase {
	case PhasePrepare:
		n := 0
		for _, f := range j.Files {
			if f.Staged == "" {
				continue
			}
			if _, err := os.Stat(f.Staged); err == nil {
				n++
			}
			if err := w.Remove(f.Staged); err != nil {
				return fmt.Errorf("recover interrupted %s: %w", j.kind(), err)
			}
		}
		RemoveTemps(&j, l)
		if err := w.Remove(jp); err != nil {
			return fmt.Errorf("recover interrupted %s: %w", j.kind(), err)
		}
		fmt.Fprintf(log, "certctl: a %s interrupted on %s (%s) had not replaced any file yet: removed %d staged files; %s unchanged\n",
			j.kind(), j.Started.Format(time.RFC3339), j.Command, n, strings.Join(j.Items, ", "))
		return nil
	case PhaseCommit:
		done := 0
		var paths []string
		for _, f := range j.Files {
			paths = append(paths, f.Path)
			if f.Remove {
				if err := w.Remove(f.Path); err != nil {
					return fmt.Errorf("recover interrupted %s: %w", j.kind(), err)
				}
				continue
			}
			if staged, err := os.ReadFile(f.Staged); err == nil {
				if Sum(staged) != f.SHA256 {
					return fmt.Errorf("recover interrupted %s: staged file %s is not what the journal %s recorded; restore backup %s with 'certctl restore %s'", j.kind(), f.Staged, jp, j.BackupID, j.BackupID)
				}
				if err := w.Rename(f.Staged, f.Path); err != nil {
					return fmt.Errorf("recover interrupted %s: %w", j.kind(), err)
				}
				done++
				continue
			}
			cur, err := os.ReadFile(f.Path)
			if err != nil {
				return fmt.Errorf("recover interrupted %s: read %s: %w", j.kind(), f.Path, err)
			}
			if Sum(cur) != f.SHA256 {
				return fmt.Errorf("recover interrupted %s: %s is neither the old nor the staged content and its staged file is gone; restore backup %s with 'certctl restore %s'", j.kind(), f.Path, j.BackupID, j.BackupID)
			}
		}
		for _, d := range DirsOf(paths) {
			if err := w.SyncDir(d); err != nil {
				return fmt.Errorf("recover interrupted %s: %w", j.kind(), err)
			}
		}
		RemoveTemps(&j, l)
		if err := w.Remove(jp); err != nil {
			return fmt.Errorf("recover interrupted %s: %w", j.kind(), err)
		}
		what := "renewed"
		if j.Kind != "" {
			what = "done"
		}
		fmt.Fprintf(log, "certctl: completed a %s interrupted on %s (%s): %s %s (%d files put in place from the journal); the old files are in backup %s\n",
			j.kind(), j.Started.Format(time.RFC3339), j.Command, strings.Join(j.Items, ", "), what, done, j.BackupID)
		return nil
	}
	return fmt.Errorf("renewal journal %s has unknown phase %q", jp, j.Phase)
}

// userKubeDir is the directory of the user's kubeconfig, which certctl refreshes atomically
// (under the lock) after renewing admin.conf.
func userKubeDir(l pki.Layout) string { return filepath.Dir(l.UserKubeconfig) }

// RemoveTemps removes atomic-write leftovers in the directories the journal touches.
func RemoveTemps(j *Journal, l pki.Layout) {
	dirs := map[string]bool{l.StateDir(): true, userKubeDir(l): true}
	for _, f := range j.Files {
		dirs[filepath.Dir(f.Path)] = true
	}
	for d := range dirs {
		fsutil.RemoveTemps(d)
	}
}

// DirsOf returns the directories of paths, each once, in order.
func DirsOf(paths []string) []string {
	var out []string
	for _, p := range paths {
		if d := filepath.Dir(p); !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	return out
}

// hasTemps reports leftover atomic-write temp files in dir.
func hasTemps(dir string) bool {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range entries {
		if fsutil.IsTemp(e.Name()) {
			return true
		}
	}
	return false
}
