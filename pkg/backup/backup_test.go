package backup

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certctl/certctl/pkg/fsutil"
	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/txn"
)

func layout(t *testing.T) pki.Layout {
	root := t.TempDir()
	l := pki.NewLayout(pki.LayoutOptions{Root: root, Home: "/root"})
	if err := os.MkdirAll(filepath.Join(l.PKIDir, "etcd"), 0o755); err != nil {
		t.Fatal(err)
	}
	return l
}

func TestCreateRestore(t *testing.T) {
	l := layout(t)
	crt := filepath.Join(l.PKIDir, "apiserver.crt")
	key := filepath.Join(l.PKIDir, "etcd", "server.key")
	gone := filepath.Join(l.KubeconfigDir, "new.conf")
	os.WriteFile(crt, []byte("old cert"), 0o644)
	os.WriteFile(key, []byte("old key"), 0o600)
	now := time.Date(2026, 11, 25, 2, 0, 0, 0, time.UTC)
	m, err := Create(fsutil.OS{}, l, "certctl renew all", []string{crt, key, gone, crt}, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Files) != 3 || !strings.HasPrefix(m.ID, "20261125T020000Z-") {
		t.Fatalf("manifest %+v", m)
	}
	if m.Files[0].Path != "/etc/kubernetes/pki/apiserver.crt" || m.Files[0].Mode != 0o644 || !m.Files[2].Absent {
		t.Fatalf("files %+v", m.Files)
	}
	os.WriteFile(crt, []byte("new cert"), 0o600)
	os.WriteFile(key, []byte("new key"), 0o644)
	os.WriteFile(gone, []byte("created later"), 0o600)

	list, err := List(l)
	if err != nil || len(list) != 1 || list[0].ID != m.ID || list[0].Command != "certctl renew all" {
		t.Fatalf("list %+v err %v", list, err)
	}
	if _, err := Restore(fsutil.OS{}, l, m.ID); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]string{crt: "old cert", key: "old key"} {
		got, _ := os.ReadFile(p)
		if string(got) != want {
			t.Errorf("%s = %q, want %q", p, got, want)
		}
	}
	if st, _ := os.Stat(crt); st.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644", st.Mode().Perm())
	}
	if st, _ := os.Stat(key); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", st.Mode().Perm())
	}
	if _, err := os.Stat(gone); !os.IsNotExist(err) {
		t.Errorf("%s should have been removed (absent at backup time)", gone)
	}
}

func TestRestoreDamagedChangesNothing(t *testing.T) {
	l := layout(t)
	a := filepath.Join(l.PKIDir, "a.crt")
	b := filepath.Join(l.PKIDir, "b.crt")
	os.WriteFile(a, []byte("a0"), 0o644)
	os.WriteFile(b, []byte("b0"), 0o644)
	m, err := Create(fsutil.OS{}, l, "x", []string{a, b}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(a, []byte("a1"), 0o644)
	os.WriteFile(b, []byte("b1"), 0o644)
	os.WriteFile(filepath.Join(Dir(l, m.ID), m.Files[1].Stored), []byte("tampered"), 0o600)
	_, err = Restore(fsutil.OS{}, l, m.ID)
	if err == nil || !strings.Contains(err.Error(), "damaged") || !strings.Contains(err.Error(), "b.crt") {
		t.Fatalf("err = %v, want damaged naming b.crt", err)
	}
	if got, _ := os.ReadFile(a); string(got) != "a1" {
		t.Fatalf("a restored to %q although the backup is damaged", got)
	}
}

func TestListAndLoadErrors(t *testing.T) {
	l := layout(t)
	if list, err := List(l); err != nil || len(list) != 0 {
		t.Fatalf("empty: %v %v", list, err)
	}
	// An interrupted backup (no manifest) is not listed.
	os.MkdirAll(filepath.Join(l.BackupRoot(), "20260101T000000Z-aaaaaa", "files"), 0o700)
	a := filepath.Join(l.PKIDir, "a.crt")
	os.WriteFile(a, []byte("a"), 0o644)
	m1, _ := Create(fsutil.OS{}, l, "first", []string{a}, time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC))
	m2, _ := Create(fsutil.OS{}, l, "second", []string{a}, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	list, err := List(l)
	if err != nil || len(list) != 2 || list[0].ID != m2.ID || list[1].ID != m1.ID {
		t.Fatalf("list %+v err %v", list, err)
	}
	for _, id := range []string{"", "../x", "nope"} {
		if _, err := Load(l, id); err == nil || !strings.Contains(err.Error(), "backup") {
			t.Errorf("Load(%q) = %v", id, err)
		}
	}
}

// TestRestoreWith: RestoreWith sends files elsewhere or drops them as edit says; where several
// end on one path, the path's own stored copy wins over a file sent there, which wins over the
// path's removal.
func TestRestoreWith(t *testing.T) {
	l := layout(t)
	dir := filepath.Join(l.KubeconfigDir, "manifests")
	pending := filepath.Join(l.KubeconfigDir, "pending")
	for _, d := range []string{dir, pending} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	a, b := filepath.Join(dir, "a.yaml"), filepath.Join(dir, "b.yaml")
	pa, pb := filepath.Join(pending, "a.yaml"), filepath.Join(pending, "b.yaml")
	keep := filepath.Join(l.PKIDir, "ca.crt")
	write := func(p, s string) {
		t.Helper()
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(a, "a before")
	write(b, "b before")
	write(pb, "b pending before") // pa absent in the backup, pb present
	write(keep, "ca before")
	m, err := Create(fsutil.OS{}, l, "test", []string{a, b, pa, pb, keep}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	write(a, "a after")
	write(b, "b after")
	write(pa, "a pending after")
	write(pb, "b pending after")
	write(keep, "ca after")
	toPending := func(c txn.Change) (txn.Change, bool) {
		if filepath.Dir(c.Path) == dir {
			c.Path = filepath.Join(pending, filepath.Base(c.Path))
		}
		return c, true
	}
	if _, err := RestoreWith(fsutil.OS{}, l, m.ID, toPending); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ path, want string }{
		{a, "a after"},           // sent elsewhere: left as it is
		{b, "b after"},           // likewise
		{pa, "a before"},         // absent in the backup, a sent there: a's copy
		{pb, "b pending before"}, // its own copy wins over b's
		{keep, "ca before"},      // not edited: restored
	} {
		got, err := os.ReadFile(tc.path)
		if err != nil || string(got) != tc.want {
			t.Errorf("%s: %q %v, want %q", tc.path, got, err, tc.want)
		}
	}
	// A dropped file is left as it is.
	write(keep, "ca after")
	drop := func(c txn.Change) (txn.Change, bool) { return c, c.Path != keep }
	if _, err := RestoreWith(fsutil.OS{}, l, m.ID, drop); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(keep); string(got) != "ca after" {
		t.Errorf("a dropped file was restored: %q", got)
	}
}
