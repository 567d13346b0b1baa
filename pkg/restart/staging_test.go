package restart

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/pki"
)

// TestRecoverLeavesALiveOwnersManifest: every certctl command runs Recover without the lock
// (an inspect from a timer during a restart). A staged manifest whose owner still runs is left
// alone; one whose owner is gone, ran before this boot, or whose PID now names another process
// is put back.
func TestRecoverLeavesALiveOwnersManifest(t *testing.T) {
	owner := testenv.StartProcess(t, exec.Command(testenv.Named(t, "certctl")))
	gone := exec.Command(testenv.Named(t, "certctl"))
	if err := gone.Start(); err != nil {
		t.Fatal(err)
	}
	goneOwner := ownerOf(t, gone.Process.Pid)
	gone.Process.Kill()
	gone.Wait()
	live := ownerOf(t, owner.Process.Pid)
	otherBoot, reused := live, live
	otherBoot.BootID = "00000000-0000-0000-0000-000000000000"
	reused.StartTime++
	tests := []struct {
		name     string
		owner    Owner
		putBack  bool
		saysWhat string
	}{
		{"owner runs", live, false, ""},
		{"owner exited", goneOwner, true, "put "},
		{"owner ran before this boot", otherBoot, true, "put "},
		{"owner's PID reused", reused, true, "put "},
		{"no owner recorded (older certctl)", Owner{PID: live.PID}, true, "put "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := pki.NewLayout(pki.LayoutOptions{Root: t.TempDir(), Home: "/root"})
			os.MkdirAll(l.ManifestsDir, 0o755)
			manifest := filepath.Join(l.ManifestsDir, "kube-apiserver.yaml")
			os.WriteFile(manifest, []byte("kind: Pod\n"), 0o600)
			staged, err := stage(l, manifest)
			if err != nil {
				t.Fatal(err)
			}
			var j journal
			data, _ := os.ReadFile(journalPath(l))
			json.Unmarshal(data, &j)
			if j.Owner != self() {
				t.Fatalf("the journal records owner %+v, want this process %+v", j.Owner, self())
			}
			j.Owner = tc.owner
			data, _ = json.Marshal(j)
			os.WriteFile(journalPath(l), data, 0o600)

			var log bytes.Buffer
			if err := Recover(l, &log); err != nil {
				t.Fatal(err)
			}
			_, inPlace := os.Stat(manifest)
			_, inStaging := os.Stat(staged)
			if tc.putBack != (inPlace == nil) || tc.putBack == (inStaging == nil) {
				t.Fatalf("put back: %v (manifest %v, staged %v), want %v; log %q", inPlace == nil, inPlace, inStaging, tc.putBack, log.String())
			}
			if !strings.Contains(log.String(), tc.saysWhat) || (tc.saysWhat == "" && log.Len() > 0) {
				t.Errorf("log %q, want %q", log.String(), tc.saysWhat)
			}
		})
	}
}

func ownerOf(t *testing.T, pid int) Owner {
	t.Helper()
	st, err := procStat("", pid)
	if err != nil {
		t.Fatal(err)
	}
	o := self()
	o.PID, o.StartTime = pid, st.Starttime
	return o
}
