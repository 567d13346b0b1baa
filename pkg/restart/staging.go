package restart

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

	"github.com/certctl/certctl/pkg/fsutil"
	"github.com/certctl/certctl/pkg/pki"
)

// The staging directory sits under certctl's state dir, inside /etc/kubernetes: the same
// filesystem as the manifests (so moves are renames) and a directory the kubelet does not
// watch (it reads only staticPodPath itself).
func stagingDir(l pki.Layout) string  { return filepath.Join(l.StateDir(), "staging") }
func journalPath(l pki.Layout) string { return filepath.Join(l.StateDir(), "restart-journal.json") }

// drainRecordPath is where a restart records the load-balancer drain it stands (Drain.Record).
func drainRecordPath(l pki.Layout) string { return filepath.Join(l.StateDir(), "drain.json") }

type journal struct {
	Manifest string    `json:"manifest"` // where it belongs
	Staged   string    `json:"staged"`   // where it is while the component stops
	Time     time.Time `json:"time"`
	Owner
}

// Owner is the process that staged a manifest: while it runs, the manifest is its to put back
// (a restart takes seconds to minutes), and other certctl runs (an inspect from a timer)
// leave it alone. A PID alone is not enough: PIDs are reused, and a reboot starts them over.
type Owner struct {
	PID       int    `json:"pid"`
	BootID    string `json:"bootID,omitempty"`    // /proc/sys/kernel/random/boot_id
	StartTime uint64 `json:"startTime,omitempty"` // clock ticks after boot (/proc/PID/stat)
}

// bootIDFile is where the kernel says which boot this is.
const bootIDFile = "/proc/sys/kernel/random/boot_id"

// self is this process as an Owner.
func self() Owner {
	o := Owner{PID: os.Getpid()}
	if b, err := os.ReadFile(bootIDFile); err == nil {
		o.BootID = strings.TrimSpace(string(b))
	}
	if st, err := procStat("", o.PID); err == nil {
		o.StartTime = st.Starttime
	}
	return o
}

// Alive reports whether the owner still runs: same boot, and its PID names a running process
// that started when the owner did.
func (o Owner) Alive() bool {
	if o.PID <= 0 || o.BootID == "" {
		return false // unknown owner (a journal of an older certctl): treat as gone
	}
	if b, err := os.ReadFile(bootIDFile); err != nil || strings.TrimSpace(string(b)) != o.BootID {
		return false
	}
	st, err := procStat("", o.PID)
	return err == nil && st.State != "Z" && st.Starttime == o.StartTime
}

// stage moves manifest into the staging dir, journal (with its owner) first.
func stage(l pki.Layout, manifest string) (string, error) {
	if err := os.MkdirAll(stagingDir(l), 0o700); err != nil {
		return "", fmt.Errorf("create %s: %w", stagingDir(l), err)
	}
	staged := filepath.Join(stagingDir(l), filepath.Base(manifest))
	j, _ := json.Marshal(journal{Manifest: manifest, Staged: staged, Time: time.Now().UTC(), Owner: self()})
	if err := fsutil.WriteFileAtomic(journalPath(l), j, 0o600); err != nil {
		return "", fmt.Errorf("write restart journal: %w", err)
	}
	if err := os.Rename(manifest, staged); err != nil {
		_ = os.Remove(journalPath(l))
		return "", fmt.Errorf("move %s out of the manifests dir: %w", manifest, err)
	}
	if err := syncDirs(filepath.Dir(manifest), stagingDir(l)); err != nil {
		return staged, err
	}
	return staged, nil
}

// unstage puts the manifest back and clears the journal.
func unstage(l pki.Layout, manifest, staged string) error {
	if err := os.Rename(staged, manifest); err != nil {
		return fmt.Errorf("move %s back to %s: %w (certctl will retry on its next run)", staged, manifest, err)
	}
	if err := syncDirs(filepath.Dir(manifest), stagingDir(l)); err != nil {
		return err
	}
	if err := os.Remove(journalPath(l)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("clear restart journal: %w", err)
	}
	return nil
}

func syncDirs(dirs ...string) error {
	for _, d := range dirs {
		if err := fsutil.SyncDir(d); err != nil {
			return fmt.Errorf("sync %s: %w", d, err)
		}
	}
	return nil
}

// Recover puts back any manifest an interrupted restart left in staging, and removes the
// load-balancer drain one left (RecoverDrain), saying so on w.
// Every certctl command runs it first, without the lock (an inspect must not wait for a
// restart): a manifest whose owner (the restart that staged it) still runs is left alone;
// one whose owner is gone, or ran before the last boot, is put back.
func Recover(l pki.Layout, w io.Writer) error {
	// A drain left by a killed restart keeps the apiserver out of the load balancer.
	derr := RecoverDrain(Drain{Record: drainRecordPath(l)}, w)
	return errors.Join(derr, recoverStaged(l, w))
}

func recoverStaged(l pki.Layout, w io.Writer) error {
	entries, err := os.ReadDir(stagingDir(l))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", stagingDir(l), err)
	}
	var j journal
	if data, err := os.ReadFile(journalPath(l)); err == nil {
		_ = json.Unmarshal(data, &j)
	}
	if j.Owner.Alive() && j.Owner.PID != os.Getpid() {
		return nil // a restart in progress: its manifest, its to put back
	}
	for _, e := range entries {
		if e.IsDir() || fsutil.IsTemp(e.Name()) {
			continue
		}
		staged := filepath.Join(stagingDir(l), e.Name())
		manifest := filepath.Join(l.ManifestsDir, e.Name())
		if j.Staged == staged && j.Manifest != "" {
			manifest = j.Manifest
		}
		if _, err := os.Stat(manifest); err == nil {
			// A manifest is in place already (put back by hand?): keep the staged copy aside.
			aside := staged + ".orphan-" + time.Now().UTC().Format("20060102T150405Z")
			if err := os.Rename(staged, aside); err != nil {
				return fmt.Errorf("move %s aside: %w", staged, err)
			}
			fmt.Fprintf(w, "certctl: %s was left in staging by an interrupted restart, but %s exists: kept it as %s\n", staged, manifest, aside)
			continue
		}
		if err := os.Rename(staged, manifest); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // another certctl run put it back meanwhile
			}
			return fmt.Errorf("put %s back to %s: %w", staged, manifest, err)
		}
		if err := syncDirs(filepath.Dir(manifest), stagingDir(l)); err != nil {
			return err
		}
		fmt.Fprintf(w, "certctl: put %s back (an interrupted restart had moved it out; the kubelet starts the component again)\n", manifest)
	}
	if err := os.Remove(journalPath(l)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("clear restart journal: %w", err)
	}
	return nil
}
