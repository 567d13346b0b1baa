package fsutil

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "k.key")
	if err := os.WriteFile(p, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(p, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(p)
	st, _ := os.Stat(p)
	if string(got) != "new" || st.Mode().Perm() != 0o600 {
		t.Fatalf("content %q mode %v, want new 0600", got, st.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("leftover files: %v", entries)
	}
}

func TestWriteFileAtomicMissingDir(t *testing.T) {
	p := filepath.Join(t.TempDir(), "nope", "x")
	err := WriteFileAtomic(p, []byte("x"), 0o600)
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v, want not-exist naming the file", err)
	}
}

func TestFailingWriter(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a")
	os.WriteFile(p, []byte("old"), 0o600)
	w := &FailingWriter{Writer: OS{}, FailAt: 2, Err: syscall.ENOSPC}
	if err := w.WriteFile(p, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := w.WriteFile(p, []byte("two"), 0o600)
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("err = %v, want ENOSPC", err)
	}
	got, _ := os.ReadFile(p)
	if string(got) != "one" {
		t.Fatalf("content %q after injected failure, want one", got)
	}
	if w.Calls() != 2 {
		t.Fatalf("calls = %d", w.Calls())
	}
}

func TestRemoveTemps(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, TempPrefix+"x-1"), nil, 0o600)
	os.WriteFile(filepath.Join(dir, "keep"), nil, 0o600)
	removed, err := RemoveTemps(dir)
	if err != nil || len(removed) != 1 {
		t.Fatalf("removed %v err %v", removed, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "keep")); err != nil {
		t.Fatal("removed a regular file")
	}
}
