package schedule_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/schedule"
	batchv1 "k8s.io/api/batch/v1"
)

// TestManifestScheduleSyntax: every cron syntax --schedule takes makes CronJobs a real
// apiserver accepts (server-side dry run: its validation parses spec.schedule with robfig/cron),
// staggered an hour apart, as five fields; Sunday as 7 (cron's) is written as 0, the only
// Sunday a CronJob takes.
func TestManifestScheduleSyntax(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and kube-apiserver")
	}
	_, cs := controlPlane(t)
	for _, tc := range []struct{ schedule, want string }{
		{"30 3 * * 7", "30 3 * * 0|30 4 * * 0"},
		{"0 2 * * 5-7", "0 2 * * 5-6,0|0 3 * * 5-6,0"},
		{"15 1 ? * mon-fri", "15 1 * * mon-fri|15 2 * * mon-fri"},
		{"0 22 1 jan,JUL *", "0 22 1 jan,JUL *|0 23 1 jan,JUL *"},
		{"@weekly", "0 0 * * 0|0 1 * * 0"},
		{"@daily", "0 0 * * *|0 1 * * *"},
	} {
		out, err := schedule.Manifests(schedule.ManifestOptions{Nodes: []string{"cp-1", "cp-2"}, Image: "registry.example.com/certctl:v1", Schedule: tc.schedule})
		if err != nil {
			t.Errorf("--schedule %q: %v", tc.schedule, err)
			continue
		}
		var got []string
		for _, obj := range decodeManifests(t, out) {
			if cj, ok := obj.(*batchv1.CronJob); ok {
				got = append(got, create(t, cs, cj, true).(*batchv1.CronJob).Spec.Schedule)
			}
		}
		if strings.Join(got, "|") != tc.want {
			t.Errorf("--schedule %q: CronJob schedules %v, want %s", tc.schedule, got, tc.want)
		}
	}
	for _, bad := range []string{"@every 1h", "TZ=UTC 30 3 * * *", "30 3 * * 8"} {
		var ce *schedule.CronError
		if _, err := schedule.Manifests(schedule.ManifestOptions{Nodes: []string{"cp-1"}, Image: "registry.example.com/certctl:v1", Schedule: bad}); !errors.As(err, &ce) {
			t.Errorf("--schedule %q: %v, want a CronError", bad, err)
		}
	}
}

// TestCronDescriptorInstalled: a shorthand is written to cron.d as its five fields, which
// status reads back with the next run.
func TestCronDescriptorInstalled(t *testing.T) {
	t.Setenv("TZ", "UTC")
	l := pki.NewLayout(pki.LayoutOptions{Root: t.TempDir()})
	o := schedule.Options{Method: schedule.MethodCron, When: "@weekly"}
	o.Defaults()
	if _, err := schedule.Install(context.Background(), l, o); err != nil {
		t.Fatal(err)
	}
	entry, err := os.ReadFile(pki.UnderRoot(l.Root, schedule.CronPath))
	if err != nil || !strings.Contains(string(entry), "\n0 0 * * 0 root ") {
		t.Fatalf("cron.d entry (%v):\n%s", err, entry)
	}
	st, err := schedule.GetStatus(l, time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC), nil)
	if err != nil || st.When != "0 0 * * 0" || st.Next == nil || st.Next.Format(time.RFC3339) != "2026-11-29T00:00:00Z" {
		t.Fatalf("status %+v, %v", st, err)
	}
}
