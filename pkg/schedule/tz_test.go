package schedule_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
	_ "time/tzdata" // LoadLocation works without the system's zoneinfo

	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/schedule"
)

// cron and systemd read "30 3 * * *" and "daily" in the node's local time: status must say
// when that really is, in that zone.
func TestStatusNextInNodeTimeZone(t *testing.T) {
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	tokyo, err := os.ReadFile("/usr/share/zoneinfo/Asia/Tokyo")
	if err != nil {
		t.Skipf("no system zoneinfo to build a node's /etc/localtime from: %v", err)
	}
	tests := []struct {
		name      string
		tz        string // "" unsets TZ
		method    string
		when      string
		localtime bool // the node's /etc/localtime links to Asia/Tokyo (absolute link, under the root)
		wantZone  string
		wantUTC   string
	}{
		{"cron with TZ", "America/New_York", schedule.MethodCron, "30 3 * * *", false, "America/New_York", "2026-11-26T08:30:00Z"},
		{"systemd keyword with TZ", "Europe/Berlin", schedule.MethodSystemd, "daily", false, "Europe/Berlin", "2026-11-25T23:00:00Z"},
		{"cron, zone from the node's /etc/localtime", "", schedule.MethodCron, "30 3 * * *", true, "Asia/Tokyo", "2026-11-25T18:30:00Z"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("TZ", tc.tz)
			if tc.tz == "" {
				os.Unsetenv("TZ") // restored by t.Setenv's cleanup
			}
			l := pki.NewLayout(pki.LayoutOptions{Root: t.TempDir()})
			if tc.localtime {
				zone := filepath.Join(l.Root, "usr/share/zoneinfo/Asia/Tokyo")
				if err := os.MkdirAll(filepath.Dir(zone), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(zone, tokyo, 0o644); err != nil {
					t.Fatal(err)
				}
				if err := os.MkdirAll(filepath.Join(l.Root, "etc"), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink("/usr/share/zoneinfo/Asia/Tokyo", filepath.Join(l.Root, "etc/localtime")); err != nil {
					t.Fatal(err)
				}
			}
			o := schedule.Options{Method: tc.method, When: tc.when}
			o.Defaults()
			if _, err := schedule.Install(context.Background(), l, o); err != nil {
				t.Fatal(err)
			}
			st, err := schedule.GetStatus(l, now, nil)
			if err != nil || st.Next == nil {
				t.Fatalf("status: %+v, %v", st, err)
			}
			if got := st.Next.Location().String(); got != tc.wantZone {
				t.Errorf("next run in zone %s, want %s", got, tc.wantZone)
			}
			if got := st.Next.UTC().Format(time.RFC3339); got != tc.wantUTC {
				t.Errorf("next run %s (%s), want %s", got, st.Next.Format(time.RFC3339), tc.wantUTC)
			}
		})
	}
}
