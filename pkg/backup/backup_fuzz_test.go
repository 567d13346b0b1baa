package backup

// Fuzz target for a backup's manifest.json, which `certctl backup list` and `certctl
// restore` read back. The seed is the manifest Create writes for a renewal's files; the
// target puts the backup's real id where the seeds say @ID@. `make fuzz` runs it; without
// -fuzz the seeds and testdata/fuzz/FuzzX run as ordinary tests.

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/certctl/certctl/pkg/fsutil"
	"github.com/certctl/certctl/pkg/pki"
)

const idMark = "@ID@"

// backupTree writes a node's apiserver pair under root and backs it up (plus a file that does
// not exist), returning the layout and the backup's manifest.
func backupTree(t testing.TB, root string) (pki.Layout, *Manifest) {
	t.Helper()
	l := pki.NewLayout(pki.LayoutOptions{Root: root, Home: "/root"})
	if err := os.MkdirAll(l.PKIDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{"apiserver.crt": "certificate\n", "apiserver.key": "key\n"} {
		if err := os.WriteFile(filepath.Join(l.PKIDir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	paths := []string{filepath.Join(l.PKIDir, "apiserver.crt"), filepath.Join(l.PKIDir, "apiserver.key"), filepath.Join(l.PKIDir, "apiserver-new.crt")}
	m, err := Create(fsutil.OS{}, l, "certctl renew apiserver", paths, time.Date(2026, 12, 2, 16, 22, 14, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	return l, m
}

// under reports whether p is root or a path under it.
func under(root, p string) bool {
	p = filepath.Clean(p)
	return p == root || strings.HasPrefix(p, root+string(filepath.Separator))
}

// FuzzLoadManifest: any manifest.json never panics Load, List or the restore's reading of the
// backup; an error names the manifest. A manifest that loads is the backup's own, every file
// a restore would write or remove is under the root, and it is written back and read again
// equal.
func FuzzLoadManifest(f *testing.F) {
	// One backup per fuzzing process: each run only rewrites its manifest (Create fsyncs,
	// which would make every run slow).
	root := f.TempDir()
	l, bk := backupTree(f, root)
	p := filepath.Join(Dir(l, bk.ID), ManifestName)
	seed, err := os.ReadFile(p)
	if err != nil {
		f.Fatal(err)
	}
	seed = bytes.ReplaceAll(seed, []byte(bk.ID), []byte(idMark))
	f.Add(seed)
	f.Add(bytes.Replace(seed, []byte(`"sha256": "`), []byte(`"sha256": "00`), 1))
	f.Add(bytes.Replace(seed, []byte(`"path": "/etc/kubernetes/pki/apiserver.crt"`), []byte(`"path": "../../../../etc/passwd"`), 1))
	f.Add([]byte(`{"id": "@ID@", "time": "2026-12-02T16:22:14+01:00", "command": "certctl restore", "files": [{"path": "/etc/kubernetes/pki/ca.crt", "mode": 420, "absent": true}]}`))
	f.Add([]byte(`{"id": "another"}`))
	f.Add([]byte(`{"id": "@ID@", "files": [{"path": "/x", "stored": "files/x", "mode": -1}]}`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, data []byte) {
		data = bytes.ReplaceAll(data, []byte(idMark), []byte(bk.ID))
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		_, listErr := List(l)
		m, err := Load(l, bk.ID)
		if err != nil {
			if !strings.Contains(err.Error(), p) {
				t.Fatalf("error %q does not name %s", err, p)
			}
			if listErr == nil {
				t.Fatal("List accepted a backup whose manifest Load refuses")
			}
			return
		}
		if m.ID != bk.ID {
			t.Fatalf("loaded the manifest of %q for backup %q", m.ID, bk.ID)
		}
		for _, q := range m.Paths(l) {
			if !under(root, q) {
				t.Fatalf("manifest path %s resolves outside the root %s", q, root)
			}
		}
		// load reads each stored copy: only when they are all inside the backup (a stored
		// path such as ../../../dev/zero would read this machine's files).
		local := true
		for _, fl := range m.Files {
			local = local && (fl.Absent || filepath.IsLocal(fl.Stored))
		}
		if local {
			if _, changes, err := load(l, bk.ID); err == nil {
				for _, c := range changes {
					if !under(root, c.Path) {
						t.Fatalf("restore would write %s, outside the root %s", c.Path, root)
					}
				}
			}
		}
		again, err := json.Marshal(m)
		if err != nil {
			t.Fatalf("a manifest that loaded does not marshal: %v", err)
		}
		if err := os.WriteFile(p, again, 0o600); err != nil {
			t.Fatal(err)
		}
		m2, err := Load(l, bk.ID)
		if err != nil {
			t.Fatalf("a manifest written back does not load: %v\n%s", err, again)
		}
		if !m.Time.Equal(m2.Time) {
			t.Fatal("the backup's time changed in a round trip")
		}
		m.Time, m2.Time = time.Time{}, time.Time{}
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("manifest changed in a round trip:\n%+v\n%+v", m, m2)
		}
	})
}
