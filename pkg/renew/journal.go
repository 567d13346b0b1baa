package renew

import (
	"io"
	"time"

	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/txn"
)

// The journal and the lock live in pkg/txn, shared with restore, restart and kubelet-serving
// enable; these names keep renew's callers working.

// JournalName is the journal's file name under Layout.StateDir().
const JournalName = txn.JournalName

// LockName is the lock file under Layout.StateDir().
const LockName = txn.LockName

// StagedSuffix is appended to a file's name for its new content before the rename.
const StagedSuffix = txn.StagedSuffix

// Lock is the node lock (txn.Lock).
type Lock = txn.Lock

// ErrLocked is returned when another process holds the lock (txn.ErrLocked).
type ErrLocked = txn.ErrLocked

// AcquireLock takes the node lock, waiting up to timeout (txn.AcquireLock).
func AcquireLock(stateDir string, timeout time.Duration) (*Lock, error) {
	return txn.AcquireLock(stateDir, timeout)
}

// TryLock takes the node lock without waiting (txn.TryLock).
func TryLock(stateDir string) (*Lock, error) { return txn.TryLock(stateDir) }

// Recover finishes or rolls back an interrupted renewal (or restore, or kubelet config edit)
// from its journal (txn.Recover). certctl calls it before every command.
func Recover(l pki.Layout, log io.Writer) error { return txn.Recover(l, log) }
