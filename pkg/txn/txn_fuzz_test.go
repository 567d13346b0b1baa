package txn_test

// Fuzz target for the journal certctl reads back after a crash (renew-journal.json). The
// seeds are journals as renew, restore and the kubelet config edit write them, in both phases,
// over a node tree with staged files. `make fuzz` runs it; without -fuzz the seeds and
// testdata/fuzz/FuzzX run as ordinary tests.

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certctl/certctl/pkg/fsutil"
	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/txn"
)

// rootMark stands for the node tree's root in the seeds: the fuzz target puts the temporary
// tree's path in its place, so the journals name files that exist.
const rootMark = "@ROOT@"

// The node tree every run starts from: a renewal killed after its commit, with the key's
// staged file still there and the certificate already renamed.
var (
	oldKey, newKey   = []byte("old apiserver key\n"), []byte("new apiserver key\n")
	newCert          = []byte("new apiserver certificate\n")
	oldFP, stagedFP  = []byte("old front-proxy-client certificate\n"), []byte("staged front-proxy-client certificate\n")
	treeFiles        = map[string][]byte{}
	keyPath, crtPath = "/etc/kubernetes/pki/apiserver.key", "/etc/kubernetes/pki/apiserver.crt"
	fpPath           = "/etc/kubernetes/pki/front-proxy-client.crt"
)

func init() {
	treeFiles[keyPath] = oldKey
	treeFiles[keyPath+txn.StagedSuffix] = newKey
	treeFiles[crtPath] = newCert
	treeFiles[fpPath] = oldFP
	treeFiles[fpPath+txn.StagedSuffix] = stagedFP
}

func seedJournal(f *testing.F, j txn.Journal) []byte {
	f.Helper()
	data, err := json.MarshalIndent(j, "", "  ")
	if err != nil {
		f.Fatal(err)
	}
	return data
}

// inside reports whether p is root or a path under it.
func inside(root, p string) bool {
	p = filepath.Clean(p)
	return filepath.IsAbs(p) && (p == root || strings.HasPrefix(p, root+string(filepath.Separator)))
}

// noSync is the real file system without directory fsyncs, which would make every run slow.
type noSync struct{ fsutil.OS }

func (noSync) SyncDir(string) error { return nil }

// FuzzRecoverJournal: any journal never panics RecoverLocked. An error names a file under the
// node's root (the journal or the file it could not handle); success removes the journal and
// leaves, for the prepare phase, no staged file and, for the commit phase, every file with the
// content the journal recorded (or removed, when it says so).
func FuzzRecoverJournal(f *testing.F) {
	file := func(p string) string { return rootMark + p }
	f.Add(seedJournal(f, txn.Journal{Command: "certctl renew apiserver", BackupID: "20261202T162214Z-1a2b3c", Phase: txn.PhaseCommit,
		Items: []string{"apiserver"}, Files: []txn.File{
			{Path: file(keyPath), Staged: file(keyPath + txn.StagedSuffix), SHA256: txn.Sum(newKey)},
			{Path: file(crtPath), Staged: file(crtPath + txn.StagedSuffix), SHA256: txn.Sum(newCert)},
		}}))
	f.Add(seedJournal(f, txn.Journal{Command: "certctl renew all", BackupID: "20261202T162214Z-1a2b3c", Phase: txn.PhasePrepare,
		Items: []string{"apiserver", "front-proxy-client"}, Files: []txn.File{
			{Path: file(keyPath), Staged: file(keyPath + txn.StagedSuffix), SHA256: txn.Sum(newKey)},
			{Path: file(fpPath), Staged: file(fpPath + txn.StagedSuffix), SHA256: txn.Sum(stagedFP)},
		}}))
	f.Add(seedJournal(f, txn.Journal{Kind: "restore", Command: "certctl restore 20261202T162214Z-1a2b3c", BackupID: "20261202T162214Z-1a2b3c",
		Phase: txn.PhaseCommit, Items: []string{"/etc/kubernetes/pki/apiserver.crt"}, Files: []txn.File{
			{Path: file(fpPath), Staged: file(fpPath + txn.StagedSuffix), SHA256: txn.Sum([]byte("something else"))},
			{Path: file("/etc/kubernetes/pki/new.crt"), Remove: true},
		}}))
	f.Add(seedJournal(f, txn.Journal{Kind: "kubelet config edit", Phase: "rollback", Files: []txn.File{{Path: file(crtPath)}}}))
	f.Add([]byte(`{"phase": "commit", "files": [{"path": "@ROOT@/etc/kubernetes/pki/apiserver.crt", "sha256": "00"}]}`))
	f.Add([]byte(`{"phase": "commit", "files": [`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, data []byte) {
		root := t.TempDir()
		data = bytes.ReplaceAll(data, []byte(rootMark), []byte(root))
		// Recovery renames and removes the files a journal names: only run it on journals
		// that name files inside the temporary tree, never this machine's.
		var j txn.Journal
		if json.Unmarshal(data, &j) == nil {
			for _, fl := range j.Files {
				if !inside(root, fl.Path) || fl.Staged != "" && !inside(root, fl.Staged) {
					return
				}
			}
		}
		l := pki.NewLayout(pki.LayoutOptions{Root: root, Home: "/root"})
		for p, content := range treeFiles {
			full := filepath.Join(root, p)
			if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(full, content, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		jp := txn.JournalPath(l)
		if err := os.MkdirAll(filepath.Dir(jp), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(jp, data, 0o600); err != nil {
			t.Fatal(err)
		}
		err := txn.RecoverLocked(noSync{}, l, io.Discard)
		if err != nil {
			if !strings.Contains(err.Error(), root) {
				t.Fatalf("error %q names no file of the node", err)
			}
			return
		}
		if _, err := os.Stat(jp); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("recovery succeeded but the journal is still there (%v)", err)
		}
		last := map[string]txn.File{}
		for _, fl := range j.Files {
			last[filepath.Clean(fl.Path)] = fl
		}
		for p, fl := range last {
			switch j.Phase {
			case txn.PhasePrepare:
				if fl.Staged != "" && filepath.Clean(fl.Staged) != p && filepath.Clean(fl.Staged) != filepath.Clean(jp) {
					if _, err := os.Lstat(fl.Staged); err == nil && last[filepath.Clean(fl.Staged)].Path == "" {
						t.Fatalf("staged file %s left after recovering a prepared %s", fl.Staged, j.Command)
					}
				}
			case txn.PhaseCommit:
				if p == filepath.Clean(jp) {
					continue
				}
				data, err := os.ReadFile(p)
				if fl.Remove {
					if err == nil {
						t.Fatalf("%s should have been removed", p)
					}
					continue
				}
				if err != nil || txn.Sum(data) != fl.SHA256 {
					t.Fatalf("%s after recovery is not what the journal recorded (%v)", p, err)
				}
			}
		}
	})
}
