// Package lastrun keeps the record of the last renewal: a JSON file that `certctl schedule
// status`, `certctl inspect` and the Prometheus textfile read, and a one-line-per-run log.
// Both live under /var/lib/certctl on the node, outside the certificate tree, so a no-op run
// leaves /etc/kubernetes untouched.
package lastrun

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/certctl/certctl/pkg/fsutil"
	"github.com/certctl/certctl/pkg/pki"
)

// Results of a run.
const (
	ResultRenewed = "renewed" // something was renewed
	ResultNoop    = "no-op"   // nothing needed renewing
	ResultFailed  = "failed"
)

// Record is one run.
type Record struct {
	Time     time.Time `json:"time"`
	Command  string    `json:"command"`
	Result   string    `json:"result"`
	Renewed  []string  `json:"renewed"`
	BackupID string    `json:"backupID,omitempty"`
	Error    string    `json:"error,omitempty"`
}

// Success reports whether the run did what it was asked.
func (r *Record) Success() bool { return r.Result != ResultFailed }

// Summary is the record as one log line.
func (r *Record) Summary() string {
	s := fmt.Sprintf("%s certctl renew: %s", r.Time.UTC().Format(time.RFC3339), r.Result)
	if len(r.Renewed) > 0 {
		s += " " + strings.Join(r.Renewed, ",")
	}
	if r.BackupID != "" {
		s += " backup=" + r.BackupID
	}
	if r.Error != "" {
		s += " error=" + strings.ReplaceAll(r.Error, "\n", " ")
	}
	return s
}

// Dir is where the record and the log live.
func Dir(l pki.Layout) string { return pki.UnderRoot(l.Root, "/var/lib/certctl") }

// Path is the record file.
func Path(l pki.Layout) string { return filepath.Join(Dir(l), "last-run.json") }

// LogPath is the one-line-per-run log.
func LogPath(l pki.Layout) string { return filepath.Join(Dir(l), "renew.log") }

// Write stores r atomically and appends its summary to the log.
func Write(l pki.Layout, r Record) error {
	if r.Renewed == nil {
		r.Renewed = []string{}
	}
	if err := os.MkdirAll(Dir(l), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", Dir(l), err)
	}
	// A run killed while writing the record left a temp file: it is stale now.
	if _, err := fsutil.RemoveTemps(Dir(l)); err != nil {
		return err
	}
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := fsutil.WriteFileAtomic(Path(l), append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", Path(l), err)
	}
	f, err := os.OpenFile(LogPath(l), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open %s: %w", LogPath(l), err)
	}
	defer f.Close()
	if _, err := fmt.Fprintln(f, r.Summary()); err != nil {
		return fmt.Errorf("append to %s: %w", LogPath(l), err)
	}
	return nil
}

// Read returns the last record, or nil when there has been no run.
func Read(l pki.Layout) (*Record, error) {
	data, err := os.ReadFile(Path(l))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", Path(l), err)
	}
	var r Record
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", Path(l), err)
	}
	return &r, nil
}
