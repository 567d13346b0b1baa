package txn

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestAcquireLockWaits: AcquireLock waits (polling the real flock) while another open file
// holds the lock, takes it once released, and after the timeout fails with *ErrLocked; an
// error waiting cannot cure (the state directory cannot be made) fails at once.
func TestAcquireLockWaits(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	first, err := AcquireLock(dir, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = AcquireLock(dir, 300*time.Millisecond)
	var locked *ErrLocked
	if !errors.As(err, &locked) || time.Since(start) < 300*time.Millisecond {
		t.Fatalf("while held: %v after %s, want *ErrLocked after the 300ms timeout", err, time.Since(start))
	}
	released := make(chan struct{})
	go func() {
		time.Sleep(200 * time.Millisecond) // the other holder works a while
		first.Release()
		close(released)
	}()
	second, err := AcquireLock(dir, 30*time.Second)
	if err != nil {
		t.Fatalf("after the release: %v", err)
	}
	<-released
	second.Release()

	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	if _, err := AcquireLock(filepath.Join(file, "state"), 30*time.Second); err == nil || errors.As(err, &locked) || time.Since(start) > 5*time.Second {
		t.Fatalf("state directory under a file: %v after %s, want an immediate error", err, time.Since(start))
	}
}
