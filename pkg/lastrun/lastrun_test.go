package lastrun_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/certctl/certctl/pkg/lastrun"
	"github.com/certctl/certctl/pkg/pki"
)

func TestWriteRead(t *testing.T) {
	l := pki.NewLayout(pki.LayoutOptions{Root: t.TempDir()})
	if r, err := lastrun.Read(l); r != nil || err != nil {
		t.Fatalf("no run yet: %v %v", r, err)
	}
	now := time.Date(2026, 11, 25, 3, 0, 0, 0, time.UTC)
	runs := []lastrun.Record{
		{Time: now, Command: "certctl renew all", Result: lastrun.ResultNoop},
		{Time: now.Add(time.Hour), Command: "certctl renew all", Result: lastrun.ResultRenewed, Renewed: []string{"apiserver", "admin.conf"}, BackupID: "b1"},
		{Time: now.Add(2 * time.Hour), Command: "certctl renew all", Result: lastrun.ResultFailed, Error: "lock held\nby 42"},
	}
	for _, r := range runs {
		if err := lastrun.Write(l, r); err != nil {
			t.Fatal(err)
		}
	}
	got, err := lastrun.Read(l)
	if err != nil || got.Result != lastrun.ResultFailed || got.Success() || got.Error != "lock held\nby 42" {
		t.Fatalf("read %+v %v", got, err)
	}
	log, _ := os.ReadFile(lastrun.LogPath(l))
	lines := strings.Split(strings.TrimSpace(string(log)), "\n")
	want := []string{
		"2026-11-25T03:00:00Z certctl renew: no-op",
		"2026-11-25T04:00:00Z certctl renew: renewed apiserver,admin.conf backup=b1",
		"2026-11-25T05:00:00Z certctl renew: failed error=lock held by 42",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Fatalf("log:\n%s", log)
	}
	os.WriteFile(lastrun.Path(l), []byte("{"), 0o644)
	if _, err := lastrun.Read(l); err == nil || !strings.Contains(err.Error(), "last-run.json") {
		t.Fatalf("corrupt record: %v", err)
	}
}
