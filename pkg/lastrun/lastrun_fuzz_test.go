package lastrun

// Fuzz target for the record of the last renewal (/var/lib/certctl/last-run.json), which
// `schedule status`, `inspect` and the Prometheus textfile read back. Seeds: records as a
// renewal, a no-op run and a failed run write them. `make fuzz` runs it; without -fuzz the
// seeds and testdata/fuzz/FuzzX run as ordinary tests.

import (
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/certctl/certctl/pkg/pki"
)

// FuzzRead: any last-run.json never panics Read; an error names the file; a record that
// reads is written back by Write and reads again equal.
func FuzzRead(f *testing.F) {
	for _, r := range []Record{
		{Time: time.Date(2026, 12, 2, 16, 22, 14, 0, time.UTC), Command: "certctl renew all --if-expiring-within 30d", Result: ResultRenewed,
			Renewed: []string{"apiserver", "admin.conf"}, BackupID: "20261202T162214Z-1a2b3c"},
		{Time: time.Date(2026, 12, 2, 16, 22, 14, 123456789, time.FixedZone("", 3600)), Command: "certctl renew all", Result: ResultNoop, Renewed: []string{}},
		{Time: time.Date(2026, 12, 2, 16, 22, 14, 0, time.UTC), Command: "certctl renew all", Result: ResultFailed, Error: "renew apiserver: read /etc/kubernetes/pki/ca.key:\npermission denied"},
	} {
		data, err := json.MarshalIndent(r, "", "  ")
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"time": "not a time"}`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, data []byte) {
		l := pki.NewLayout(pki.LayoutOptions{Root: t.TempDir(), Home: "/root"})
		if err := os.MkdirAll(Dir(l), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(Path(l), data, 0o644); err != nil {
			t.Fatal(err)
		}
		r, err := Read(l)
		if err != nil {
			if !strings.Contains(err.Error(), Path(l)) {
				t.Fatalf("error %q does not name %s", err, Path(l))
			}
			return
		}
		r.Success()
		r.Summary()
		if err := os.Remove(Path(l)); err != nil {
			t.Fatal(err)
		}
		if err := Write(l, *r); err != nil {
			t.Fatalf("a record that read does not write: %v", err)
		}
		again, err := Read(l)
		if err != nil {
			t.Fatalf("a record Write wrote does not read: %v", err)
		}
		if r.Renewed == nil {
			r.Renewed = []string{}
		}
		if !r.Time.Equal(again.Time) {
			t.Fatal("the time changed in a round trip")
		}
		r.Time, again.Time = time.Time{}, time.Time{}
		if !reflect.DeepEqual(r, again) {
			t.Fatalf("record changed in a round trip:\n%+v\n%+v", r, again)
		}
	})
}
