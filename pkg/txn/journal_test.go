package txn_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/certctl/certctl/pkg/fsutil"
	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/txn"
)

func layout(t *testing.T) (pki.Layout, string, string) {
	t.Helper()
	l := pki.NewLayout(pki.LayoutOptions{Root: t.TempDir(), Home: "/root"})
	os.MkdirAll(l.PKIDir, 0o755)
	keep, gone := filepath.Join(l.PKIDir, "a.key"), filepath.Join(l.PKIDir, "b.crt")
	os.WriteFile(keep, []byte("old key"), 0o600)
	os.WriteFile(gone, []byte("old cert"), 0o644)
	return l, keep, gone
}

// TestReplace: the files change together (one replaced with its mode, one removed) and
// nothing is left behind; a journal of an interrupted change makes Replace refuse, changing
// nothing, until it is recovered; a failed write before the commit changes nothing.
func TestReplace(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(l pki.Layout)
		w       fsutil.Writer
		wantErr string
		changed bool
	}{
		{name: "replace and remove", w: fsutil.OS{}, changed: true},
		{name: "an interrupted change is not recovered", w: fsutil.OS{},
			prepare: func(l pki.Layout) {
				os.MkdirAll(l.StateDir(), 0o700)
				os.WriteFile(txn.JournalPath(l), []byte("{}"), 0o600)
			},
			wantErr: "is still there: run any certctl command to recover it first; nothing was changed"},
	}
	// Every operation up to the commit-phase journal (mkdir, journal, mkdir, staged file,
	// sync, mkdir, journal) failing leaves everything as it was.
	for at := 1; at <= 7; at++ {
		tests = append(tests, struct {
			name    string
			prepare func(l pki.Layout)
			w       fsutil.Writer
			wantErr string
			changed bool
		}{name: "error at operation " + strconv.Itoa(at), w: &fsutil.FailingWriter{Writer: fsutil.OS{}, FailAt: at, Err: os.ErrPermission}, wantErr: "nothing was changed"})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, keep, gone := layout(t)
			if tc.prepare != nil {
				tc.prepare(l)
			}
			err := txn.Replace(tc.w, l, txn.Journal{Kind: "test", Command: "test"}, []txn.Change{
				{Path: keep, Data: []byte("new key"), Mode: 0o600}, {Path: gone, Remove: true}})
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("err %v, want %q", err, tc.wantErr)
			}
			got, _ := os.ReadFile(keep)
			_, goneErr := os.Stat(gone)
			if changed := string(got) == "new key" && os.IsNotExist(goneErr); changed != tc.changed {
				t.Fatalf("changed %v (key %q, removed file: %v), want %v", changed, got, goneErr, tc.changed)
			}
			if !tc.changed && string(got) != "old key" {
				t.Fatalf("half changed: key %q", got)
			}
			if st, _ := os.Stat(keep); st.Mode().Perm() != 0o600 {
				t.Errorf("mode %v", st.Mode().Perm())
			}
			if staged, _ := filepath.Glob(filepath.Join(l.PKIDir, "*"+txn.StagedSuffix)); len(staged) > 0 {
				t.Errorf("staged files left: %v", staged)
			}
		})
	}
}

// TestRecoverNamesTheChange: recovery of a committed journal completes it and says which kind
// of change it was (a restore, not "a renewal").
func TestRecoverNamesTheChange(t *testing.T) {
	l, keep, _ := layout(t)
	os.WriteFile(keep+txn.StagedSuffix, []byte("restored key"), 0o600)
	j := &txn.Journal{Kind: "restore", Command: "certctl restore X", BackupID: "X", Phase: txn.PhaseCommit, Items: []string{"a.key"},
		Files: []txn.File{{Path: keep, Staged: keep + txn.StagedSuffix, SHA256: txn.Sum([]byte("restored key"))}}}
	if err := txn.WriteJournal(fsutil.OS{}, l, j); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	if err := txn.Recover(l, &log); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(keep); string(got) != "restored key" || !strings.Contains(log.String(), "completed a restore interrupted") {
		t.Fatalf("key %q, log %q", got, log.String())
	}
	if _, err := os.Stat(txn.JournalPath(l)); !os.IsNotExist(err) {
		t.Fatalf("journal left: %v", err)
	}
}

// TestStagedFilesAreHidden: a change to a static-pod manifest stages its new content under a
// name the kubelet does not read (it runs every file of the manifests dir but dot files), so
// no second pod of the component exists between the staging and the rename.
func TestStagedFilesAreHidden(t *testing.T) {
	l, _, _ := layout(t)
	os.MkdirAll(l.ManifestsDir, 0o755)
	target := filepath.Join(l.ManifestsDir, "etcd.yaml")
	os.WriteFile(target, []byte("old"), 0o600)
	w := &fsutil.OpLog{Writer: fsutil.OS{}}
	if err := txn.Replace(w, l, txn.Journal{Kind: "test", Command: "test"}, []txn.Change{{Path: target, Data: []byte("new"), Mode: 0o600}}); err != nil {
		t.Fatal(err)
	}
	inDir := 0
	for _, op := range w.Ops {
		verb, p, _ := strings.Cut(op, " ")
		if verb != "write" && verb != "writenew" || filepath.Dir(p) != l.ManifestsDir {
			continue
		}
		inDir++
		if p != target && !strings.HasPrefix(filepath.Base(p), ".") {
			t.Errorf("wrote %s in the manifests dir: the kubelet would run it", p)
		}
	}
	if inDir == 0 {
		t.Fatalf("nothing staged in %s (operations: %v)", l.ManifestsDir, w.Ops)
	}
	if got, _ := os.ReadFile(target); string(got) != "new" {
		t.Fatalf("%s: %q, want the new content", target, got)
	}
	if left, _ := os.ReadDir(l.ManifestsDir); len(left) != 1 {
		t.Fatalf("%s holds %d files, want the manifest alone", l.ManifestsDir, len(left))
	}
}
