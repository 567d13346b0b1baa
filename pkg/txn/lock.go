package txn

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// LockName is the lock file under Layout.StateDir().
const LockName = "lock"

// Lock is an exclusive flock on the state directory's lock file: the node lock. It is held by
// whatever changes the node's files or restarts its components (renew, restore, restart,
// kubelet-serving enable) and by recovery, so two certctl runs never interleave. A flock
// belongs to an open file: taking it twice in one process blocks, so a command takes it once
// and passes it down (restart's Options.Locked) instead of nesting.
type Lock struct{ f *os.File }

// ErrLocked is returned by TryLock when another process holds the lock.
type ErrLocked struct {
	Path string
	PID  int // 0 when unknown
}

func (e *ErrLocked) Error() string {
	who := "another process"
	if e.PID > 0 {
		who = fmt.Sprintf("process %d", e.PID)
	}
	return fmt.Sprintf("another certctl run holds the lock %s (%s); wait for it to finish or raise --lock-timeout", e.Path, who)
}

// AcquireLock takes the lock in stateDir, creating the directory, waiting up to timeout
// (polling) when another process holds it.
func AcquireLock(stateDir string, timeout time.Duration) (*Lock, error) {
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, fmt.Errorf("create state directory %s: %w", stateDir, err)
	}
	var l *Lock
	var last error
	// Polling flock: there is no wait-with-timeout for it.
	_ = wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		l, last = TryLock(stateDir)
		_, busy := last.(*ErrLocked)
		return !busy, nil // taken, or an error that waiting does not cure
	})
	if _, busy := last.(*ErrLocked); busy {
		return nil, fmt.Errorf("waited %s: %w", timeout, last)
	}
	return l, last
}

// TryLock takes the lock without waiting; *ErrLocked when it is held.
func TryLock(stateDir string) (*Lock, error) {
	p := filepath.Join(stateDir, LockName)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", p, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if err == syscall.EWOULDBLOCK {
			data, _ := os.ReadFile(p)
			pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
			return nil, &ErrLocked{Path: p, PID: pid}
		}
		return nil, fmt.Errorf("lock %s: %w", p, err)
	}
	// Record the holder for the error message of whoever waits.
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &Lock{f: f}, nil
}

// Release drops the lock.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	l.f.Truncate(0)
	syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	err := l.f.Close()
	l.f = nil
	return err
}
