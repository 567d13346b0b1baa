package renew

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/certctl/certctl/pkg/backup"
	"github.com/certctl/certctl/pkg/fsutil"
	"github.com/certctl/certctl/pkg/pki"
)

// The journal makes a renewal crash-safe. Apply:
//
//  1. backs up every file it will replace;
//  2. writes the journal in phase "prepare" (atomically), listing each file, its staged
//     name (<file>.certctl-new) and the SHA-256 of its new content;
//  3. writes every staged file (fsynced; then their directories are fsynced);
//  4. rewrites the journal in phase "commit" (atomically);
//  5. renames each staged file over its target, a key before its certificate, then fsyncs
//     the directories;
//  6. removes the journal.
//
// (Apply actually writes the journal first, then the backup, since staged files are written
// while keys are still being generated; the backup is complete before phase "commit".)
//
// A kill before 4 leaves the targets untouched: Recover removes the staged files (the pairs
// are old-and-matching). A kill after 4 may leave a new key beside an old certificate for
// an instant: Recover finishes the renames from the staged files, which are complete (the
// pairs become new-and-matching). After 6 there is nothing to do.

// JournalName is the journal's file name under Layout.StateDir().
const JournalName = "renew-journal.json"

const (
	phasePrepare = "prepare"
	phaseCommit  = "commit"
)

type journal struct {
	Started  time.Time     `json:"started"`
	Command  string        `json:"command"`
	BackupID string        `json:"backup_id"`
	Phase    string        `json:"phase"`
	Items    []string      `json:"items"`
	Files    []journalFile `json:"files"`
}

type journalFile struct {
	Path   string `json:"path"`
	Staged string `json:"staged"`
	SHA256 string `json:"sha256"` // of the new content
}

func journalPath(l pki.Layout) string { return filepath.Join(l.StateDir(), JournalName) }

func writeJournal(w fsutil.Writer, l pki.Layout, j *journal) error {
	data, err := json.MarshalIndent(j, "", "  ")
	if err != nil {
		return err
	}
	if err := w.MkdirAll(l.StateDir(), 0o700); err != nil {
		return err
	}
	return w.WriteFile(journalPath(l), append(data, '\n'), 0o600)
}

// Recover finishes or rolls back a renewal that was interrupted (killed, power loss), from
// its journal, and says what it did on log. Without a journal it does nothing and writes
// nothing. When another certctl run holds the lock, the journal is that run's: Recover
// leaves it alone. certctl calls it before every command.
func Recover(l pki.Layout, log io.Writer) error {
	if _, err := os.Stat(journalPath(l)); errors.Is(err, fs.ErrNotExist) && !hasTemps(l.StateDir()) && !hasTemps(userKubeDir(l)) {
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
	return recoverLocked(fsutil.OS{}, l, log)
}

func recoverLocked(w fsutil.Writer, l pki.Layout, log io.Writer) error {
	jp := journalPath(l)
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
	var j journal
	if err := json.Unmarshal(data, &j); err != nil {
		return fmt.Errorf("renewal journal %s is damaged (%v): check the pairs with 'certctl inspect' and restore a backup with 'certctl restore' if needed, then remove the journal", jp, err)
	}
	switch j.Phase {
	case phasePrepare:
		n := 0
		for _, f := range j.Files {
			if _, err := os.Stat(f.Staged); err == nil {
				n++
			}
			if err := w.Remove(f.Staged); err != nil {
				return fmt.Errorf("recover interrupted renewal: %w", err)
			}
		}
		removeTemps(&j, l)
		if err := w.Remove(jp); err != nil {
			return fmt.Errorf("recover interrupted renewal: %w", err)
		}
		fmt.Fprintf(log, "certctl: a renewal interrupted on %s (%s) had not replaced any file yet: removed %d staged files; %s unchanged\n",
			j.Started.Format(time.RFC3339), j.Command, n, strings.Join(j.Items, ", "))
		return nil
	case phaseCommit:
		var done []string
		for _, f := range j.Files {
			if staged, err := os.ReadFile(f.Staged); err == nil {
				if backup.Sum(staged) != f.SHA256 {
					return fmt.Errorf("recover interrupted renewal: staged file %s is not what the journal %s recorded; restore backup %s with 'certctl restore %s'", f.Staged, jp, j.BackupID, j.BackupID)
				}
				if err := w.Rename(f.Staged, f.Path); err != nil {
					return fmt.Errorf("recover interrupted renewal: %w", err)
				}
				done = append(done, f.Path)
				continue
			}
			cur, err := os.ReadFile(f.Path)
			if err != nil {
				return fmt.Errorf("recover interrupted renewal: read %s: %w", f.Path, err)
			}
			if backup.Sum(cur) != f.SHA256 {
				return fmt.Errorf("recover interrupted renewal: %s is neither the old nor the staged content and its staged file is gone; restore backup %s with 'certctl restore %s'", f.Path, j.BackupID, j.BackupID)
			}
		}
		var paths []string
		for _, f := range j.Files {
			paths = append(paths, f.Path)
		}
		for _, d := range dirsOf(paths) {
			if err := w.SyncDir(d); err != nil {
				return fmt.Errorf("recover interrupted renewal: %w", err)
			}
		}
		removeTemps(&j, l)
		if err := w.Remove(jp); err != nil {
			return fmt.Errorf("recover interrupted renewal: %w", err)
		}
		fmt.Fprintf(log, "certctl: completed a renewal interrupted on %s (%s): %s renewed (%d files put in place from the journal); the old files are in backup %s\n",
			j.Started.Format(time.RFC3339), j.Command, strings.Join(j.Items, ", "), len(done), j.BackupID)
		return nil
	}
	return fmt.Errorf("renewal journal %s has unknown phase %q", jp, j.Phase)
}

// removeTemps removes atomic-write leftovers in the directories the journal touches.
// userKubeDir is the directory of the user's kubeconfig, which certctl refreshes atomically
// (under the renewal lock) after renewing admin.conf.
func userKubeDir(l pki.Layout) string { return filepath.Dir(l.UserKubeconfig) }

func removeTemps(j *journal, l pki.Layout) {
	dirs := map[string]bool{l.StateDir(): true, userKubeDir(l): true}
	for _, f := range j.Files {
		dirs[filepath.Dir(f.Path)] = true
	}
	for d := range dirs {
		fsutil.RemoveTemps(d)
	}
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
