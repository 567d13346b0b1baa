// Package fsutil writes files so that a crash at any instant leaves either the old or the
// new content under a name, never a half-written file: a temp file in the same directory,
// fsync, chmod, rename, fsync of the directory.
package fsutil

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// TempPrefix starts the name of every temporary file certctl writes; recovery removes
// leftovers with this prefix.
const TempPrefix = ".certctl-tmp-"

// Writer is the file-system operations that change a tree. OS is the real one; tests inject
// failures by wrapping it.
type Writer interface {
	// WriteFile replaces path with data atomically and durably, with mode perm.
	WriteFile(path string, data []byte, perm os.FileMode) error
	// WriteNew writes a file whose name nobody reads until it is complete (a staged file, a
	// backup copy): written, fsynced, given mode perm, no temp file. Its directory entry is
	// durable only after SyncDir. A crash may leave it partial.
	WriteNew(path string, data []byte, perm os.FileMode) error
	// Rename moves oldpath to newpath atomically; the move is durable after SyncDir of
	// newpath's directory.
	Rename(oldpath, newpath string) error
	// SyncDir makes the directory's entries (creations, renames) durable.
	SyncDir(dir string) error
	// Remove deletes path; a path that does not exist is not an error.
	Remove(path string) error
	// MkdirAll creates a directory and its parents.
	MkdirAll(path string, perm os.FileMode) error
}

// OS writes to the real file system.
type OS struct{}

// WriteFile implements Writer with WriteFileAtomic.
func (OS) WriteFile(path string, data []byte, perm os.FileMode) error {
	return WriteFileAtomic(path, data, perm)
}

// WriteNew implements Writer.
func (OS) WriteNew(path string, data []byte, perm os.FileMode) (err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(path)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = f.Chmod(perm); err != nil {
		return fmt.Errorf("write %s: chmod: %w", path, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("write %s: fsync: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("write %s: close: %w", path, err)
	}
	return nil
}

// Rename implements Writer.
func (OS) Rename(oldpath, newpath string) error {
	if err := os.Rename(oldpath, newpath); err != nil {
		return fmt.Errorf("rename %s to %s: %w", oldpath, newpath, err)
	}
	return nil
}

// SyncDir implements Writer.
func (OS) SyncDir(dir string) error { return SyncDir(dir) }

// Remove implements Writer.
func (OS) Remove(path string) error {
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	return nil
}

// MkdirAll implements Writer.
func (OS) MkdirAll(path string, perm os.FileMode) error {
	if err := os.MkdirAll(path, perm); err != nil {
		return fmt.Errorf("create directory %s: %w", path, err)
	}
	return nil
}

// WriteFileAtomic replaces path with data: a temp file in the same directory is written,
// fsynced and given mode perm, then renamed over path, and the directory is fsynced. On
// error the temp file is removed and path is untouched.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	return WriteFileAtomicOwned(path, data, perm, -1, -1)
}

// WriteFileAtomicOwned is WriteFileAtomic with the new file given owner uid and group gid
// (-1 keeps certctl's) before it is renamed into place, so it never exists with the wrong
// owner: a user's ~/.kube/config stays the user's.
func WriteFileAtomicOwned(path string, data []byte, perm os.FileMode, uid, gid int) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, TempPrefix+base+"-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	// CreateTemp makes the file 0600 already, so a key is never readable by others, even
	// for an instant.
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("write %s: fsync: %w", path, err)
	}
	if uid >= 0 || gid >= 0 {
		if err = f.Chown(uid, gid); err != nil {
			return fmt.Errorf("write %s: chown %d:%d: %w", path, uid, gid, err)
		}
	}
	if err = f.Chmod(perm); err != nil {
		return fmt.Errorf("write %s: chmod: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("write %s: close: %w", path, err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: rename: %w", path, err)
	}
	return SyncDir(dir)
}

// SyncDir fsyncs a directory so renames and creations in it survive a power loss.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}

// IsTemp reports whether a file name is a leftover temp file of WriteFileAtomic.
func IsTemp(name string) bool { return strings.HasPrefix(filepath.Base(name), TempPrefix) }

// RemoveTemps removes WriteFileAtomic leftovers in dir and returns their paths.
func RemoveTemps(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("read directory %s: %w", dir, err)
	}
	var removed []string
	for _, e := range entries {
		if e.Type().IsRegular() && IsTemp(e.Name()) {
			p := filepath.Join(dir, e.Name())
			if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
				return removed, fmt.Errorf("remove %s: %w", p, err)
			}
			removed = append(removed, p)
		}
	}
	return removed, nil
}

// FailingWriter wraps a Writer and fails the operation number FailAt (1-based, counting
// every call) with Err. It lets tests inject a write error or a full disk at any step.
type FailingWriter struct {
	Writer
	FailAt int
	Err    error
	n      int
}

func (w *FailingWriter) step() error {
	w.n++
	if w.n == w.FailAt {
		return w.Err
	}
	return nil
}

// WriteFile implements Writer.
func (w *FailingWriter) WriteFile(path string, data []byte, perm os.FileMode) error {
	if err := w.step(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return w.Writer.WriteFile(path, data, perm)
}

// Rename implements Writer.
func (w *FailingWriter) Rename(oldpath, newpath string) error {
	if err := w.step(); err != nil {
		return fmt.Errorf("rename %s to %s: %w", oldpath, newpath, err)
	}
	return w.Writer.Rename(oldpath, newpath)
}

// WriteNew implements Writer.
func (w *FailingWriter) WriteNew(path string, data []byte, perm os.FileMode) error {
	if err := w.step(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return w.Writer.WriteNew(path, data, perm)
}

// SyncDir implements Writer.
func (w *FailingWriter) SyncDir(dir string) error {
	if err := w.step(); err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return w.Writer.SyncDir(dir)
}

// MkdirAll implements Writer.
func (w *FailingWriter) MkdirAll(path string, perm os.FileMode) error {
	if err := w.step(); err != nil {
		return fmt.Errorf("create directory %s: %w", path, err)
	}
	return w.Writer.MkdirAll(path, perm)
}

// Calls returns how many operations went through w.
func (w *FailingWriter) Calls() int { return w.n }

// OpLog wraps a Writer and records each operation ("write P", "writenew P", "rename A B",
// "syncdir D", "mkdir P"; those FailingWriter counts, Remove aside) so that tests can see
// what a change wrote, or inject a failure at a chosen kind of step.
type OpLog struct {
	Writer
	Ops []string
}

// WriteFile implements Writer.
func (w *OpLog) WriteFile(p string, d []byte, m os.FileMode) error {
	w.Ops = append(w.Ops, "write "+p)
	return w.Writer.WriteFile(p, d, m)
}

// WriteNew implements Writer.
func (w *OpLog) WriteNew(p string, d []byte, m os.FileMode) error {
	w.Ops = append(w.Ops, "writenew "+p)
	return w.Writer.WriteNew(p, d, m)
}

// Rename implements Writer.
func (w *OpLog) Rename(a, b string) error {
	w.Ops = append(w.Ops, "rename "+a+" "+b)
	return w.Writer.Rename(a, b)
}

// SyncDir implements Writer.
func (w *OpLog) SyncDir(d string) error {
	w.Ops = append(w.Ops, "syncdir "+d)
	return w.Writer.SyncDir(d)
}

// MkdirAll implements Writer.
func (w *OpLog) MkdirAll(p string, m os.FileMode) error {
	w.Ops = append(w.Ops, "mkdir "+p)
	return w.Writer.MkdirAll(p, m)
}
