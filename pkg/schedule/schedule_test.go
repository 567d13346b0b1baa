package schedule_test

import (
	"context"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certctl/certctl/pkg/lastrun"
	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/schedule"
)

var update = flag.Bool("update", false, "rewrite golden files")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./pkg/schedule -update creates it)", err)
	}
	if string(got) != string(want) {
		t.Errorf("%s differs from the golden file (rerun with -update if intended):\n%s", name, got)
	}
}

// TestCron: robfig/cron's standard syntax (the CronJob controller's), cron's 7 for Sunday, the
// next run, the five fields written to cron.d and CronJobs, and refusals typed by field.
func TestCron(t *testing.T) {
	base := time.Date(2026, 11, 25, 10, 7, 30, 0, time.UTC) // a Wednesday
	const whole = "(whole)"                                 // a CronError on no one field
	tests := []struct {
		expr     string
		next     string
		standard string // "" when the same as expr
		badField string // a refusal: the CronError's Field, or whole
	}{
		{expr: "17 3 * * 1", next: "2026-11-30T03:17:00Z"},
		{expr: "*/15 * * * *", next: "2026-11-25T10:15:00Z"},
		{expr: "0 0 1 * *", next: "2026-12-01T00:00:00Z"},
		{expr: "0 12 * * 0", next: "2026-11-29T12:00:00Z"},
		{expr: "0 12 * * 7", next: "2026-11-29T12:00:00Z", standard: "0 12 * * 0"},
		{expr: "0 12 * * 5-7", next: "2026-11-27T12:00:00Z", standard: "0 12 * * 5-6,0"},
		{expr: "0 12 * * 1-7/2", next: "2026-11-25T12:00:00Z", standard: "0 12 * * 1-6/2,0"}, // 1,3,5,7
		{expr: "0 12 * * 2-7/2", next: "2026-11-26T12:00:00Z", standard: "0 12 * * 2-6/2"},   // 2,4,6
		{expr: "30 9-17/4 * * 1-5", next: "2026-11-25T13:30:00Z"},
		{expr: "0 0 29 2 *", next: "2028-02-29T00:00:00Z"},
		{expr: "0 0 13 * 5", next: "2026-11-27T00:00:00Z"}, // day-of-month OR day-of-week
		{expr: "0 8 * JAN,dec mon-fri", next: "2026-12-01T08:00:00Z"},
		{expr: "0 8 ? * sun", next: "2026-11-29T08:00:00Z", standard: "0 8 * * sun"},
		{expr: "5/20 * * * *", next: "2026-11-25T10:25:00Z"},
		{expr: "@daily", next: "2026-11-26T00:00:00Z", standard: "0 0 * * *"},
		{expr: "@weekly", next: "2026-11-29T00:00:00Z", standard: "0 0 * * 0"},
		{expr: "@yearly", next: "2027-01-01T00:00:00Z", standard: "0 0 1 1 *"},
		{expr: "@hourly", next: "2026-11-25T11:00:00Z", standard: "0 * * * *"},
		{expr: "5 4 * *", badField: whole},
		{expr: "@every 1h", badField: whole},
		{expr: "TZ=UTC 30 3 * * *", badField: whole},
		{expr: "CRON_TZ=UTC 3 * * *", badField: "minute"},
		{expr: "60 * * * *", badField: "minute"},
		{expr: "* 24 * * *", badField: "hour"},
		{expr: "* * 0 * *", badField: "day of month"},
		{expr: "* * * 13 *", badField: "month"},
		{expr: "* * * * 8", badField: "day of week"},
		{expr: "* * * * 6-8", badField: "day of week"},
		{expr: "*/0 * * * *", badField: "minute"},
		{expr: "5-1 * * * *", badField: "minute"},
		{expr: "x * * * *", badField: "minute"},
		{expr: "* * * * mon-fry", badField: "day of week"},
	}
	for _, tc := range tests {
		c, err := schedule.ParseCron(tc.expr)
		if tc.badField != "" {
			var ce *schedule.CronError
			if !errors.As(err, &ce) || ce.Expr != tc.expr || (ce.Field == "" && tc.badField != whole) || (ce.Field != "" && ce.Field != tc.badField) {
				t.Errorf("%q: err %v, want a CronError on the %s field", tc.expr, err, tc.badField)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.expr, err)
			continue
		}
		if got := c.Next(base).Format(time.RFC3339); got != tc.next {
			t.Errorf("%q: next %s, want %s", tc.expr, got, tc.next)
		}
		want := tc.standard
		if want == "" {
			want = tc.expr
		}
		if c.Standard() != want {
			t.Errorf("%q: standard form %q, want %q", tc.expr, c.Standard(), want)
		}
		// The standard form is the same schedule, and what a CronJob's controller parses.
		if again, err := schedule.ParseCron(c.Standard()); err != nil || again.Next(base) != c.Next(base) || again.Standard() != c.Standard() {
			t.Errorf("%q: standard form %q reads differently: %v", tc.expr, c.Standard(), err)
		}
	}
}

func TestRenderGolden(t *testing.T) {
	sys := schedule.Options{Method: schedule.MethodSystemd, When: "weekly", Threshold: "30d", Days: 365, CertctlPath: "/usr/local/bin/certctl", Jitter: time.Hour}
	cron := schedule.Options{Method: schedule.MethodCron, When: "17 3 * * 1", Threshold: "45d", Days: 730, CertctlPath: "/usr/local/bin/certctl", Jitter: 30 * time.Minute}
	files, err := sys.Render()
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "certctl-renew.service.golden", files[schedule.ServicePath])
	golden(t, "certctl-renew.timer.golden", files[schedule.TimerPath])
	files, err = cron.Render()
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "cron.golden", files[schedule.CronPath])
	m, err := schedule.Manifests(schedule.ManifestOptions{Nodes: []string{"cp-1", "cp-2.example.com", "cp-3"}, Image: "registry.example.com/certctl:v1"})
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "cronjobs.golden", m)
}

// TestSystemdAnalyzeVerify checks the rendered units with systemd's own verifier.
func TestSystemdAnalyzeVerify(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		if os.Getenv("CERTCTL_REQUIRE_K8S") == "1" {
			t.Fatal("systemd-analyze is required (apt-get install systemd)")
		}
		t.Skip("SKIP (loud): systemd-analyze not installed")
	}
	exe, err := os.Executable() // ExecStart must name a file that exists
	if err != nil {
		t.Fatal(err)
	}
	for _, when := range []string{"weekly", "Mon *-*-* 03:00:00", "*-*-1,15 04:30"} {
		o := schedule.Options{Method: schedule.MethodSystemd, When: when, Threshold: "30d", Days: 365, CertctlPath: exe, Jitter: time.Hour}
		if err := o.Validate(schedule.SystemdAnalyze()); err != nil {
			t.Fatalf("%q: %v", when, err)
		}
		files, err := o.Render()
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		var paths []string
		for p, data := range files {
			full := filepath.Join(dir, filepath.Base(p))
			os.WriteFile(full, data, 0o644)
			paths = append(paths, full)
		}
		out, err := exec.Command("systemd-analyze", append([]string{"verify", "--man=no"}, paths...)...).CombinedOutput()
		if err != nil || strings.Contains(string(out), "certctl-renew") {
			t.Errorf("systemd-analyze verify (%q): %v\n%s", when, err, out)
		}
	}
	bad := schedule.Options{Method: schedule.MethodSystemd, When: "Someday 25:00", Threshold: "30d", Days: 365, CertctlPath: exe, Jitter: time.Hour}
	if err := bad.Validate(schedule.SystemdAnalyze()); err == nil {
		t.Error("an invalid OnCalendar expression was accepted")
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		o       schedule.Options
		wantErr string
	}{
		{schedule.Options{Method: "launchd"}, "want systemd or cron"},
		{schedule.Options{Threshold: "soon"}, "--threshold"},
		{schedule.Options{Threshold: "400d"}, "not shorter than the validity"},
		{schedule.Options{Days: -1}, "--days -1"},
		{schedule.Options{Days: 40000}, "--days 40000"},
		{schedule.Options{Jitter: 48 * time.Hour}, "--jitter"},
		{schedule.Options{CertctlPath: "certctl"}, "absolute path"},
		{schedule.Options{Method: schedule.MethodCron, When: "Mon *-*-* 03:00"}, "want 5 fields"},
		{schedule.Options{Method: schedule.MethodSystemd, When: "Mon *-*-* 03:00"}, ""}, // validated when systemd-analyze is there
	}
	for _, tc := range tests {
		tc.o.Defaults()
		err := tc.o.Validate(nil)
		if tc.wantErr == "" {
			if err == nil || !strings.Contains(err.Error(), "without systemd-analyze") {
				t.Errorf("%+v without systemd-analyze: %v", tc.o, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%+v: err %v, want %q", tc.o, err, tc.wantErr)
		}
	}
}

// TestInstallRemoveStatus installs under a temporary root (no systemd there), switches
// method, reads the status with a last run, and removes.
func TestInstallRemoveStatus(t *testing.T) {
	t.Setenv("TZ", "UTC") // the expected times below are the node's local time
	l := pki.NewLayout(pki.LayoutOptions{Root: t.TempDir()})
	ctx := context.Background()
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	sys := schedule.Options{When: "daily"}
	sys.Defaults()
	res, err := schedule.Install(ctx, l, sys)
	if err != nil || res.Enabled || !strings.Contains(res.Todo, "systemctl daemon-reload && systemctl enable --now certctl-renew.timer") || len(res.Files) != 2 {
		t.Fatalf("install: %+v %v", res, err)
	}
	st, err := schedule.GetStatus(l, now, nil)
	if err != nil || !st.Installed || st.Method != "systemd" || st.When != "daily" || st.Next.Format(time.RFC3339) != "2026-11-26T00:00:00Z" || st.LastRun != nil {
		t.Fatalf("status: %+v %v", st, err)
	}
	if !strings.HasSuffix(st.Command, "renew all --if-expiring-within 30d --days 365 --yes") {
		t.Errorf("command %q", st.Command)
	}
	cron := schedule.Options{Method: schedule.MethodCron, When: "17 3 * * 1"}
	cron.Defaults()
	if _, err := schedule.Install(ctx, l, cron); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(pki.UnderRoot(l.Root, schedule.TimerPath)); err == nil {
		t.Error("switching to cron left the systemd timer")
	}
	if err := lastrun.Write(l, lastrun.Record{Time: now.Add(-time.Hour), Result: lastrun.ResultRenewed, Renewed: []string{"apiserver"}}); err != nil {
		t.Fatal(err)
	}
	st, err = schedule.GetStatus(l, now, nil)
	if err != nil || st.Method != "cron" || st.When != "17 3 * * 1" || st.Next.Format(time.RFC3339) != "2026-11-30T03:17:00Z" || st.LastRun == nil || st.LastRun.Renewed[0] != "apiserver" {
		t.Fatalf("status after switching: %+v %v", st, err)
	}
	removed, err := schedule.Remove(ctx, l)
	if err != nil || len(removed) != 1 {
		t.Fatalf("remove: %v %v", removed, err)
	}
	if st, _ := schedule.GetStatus(l, now, nil); st.Installed {
		t.Error("still installed after remove")
	}
}
