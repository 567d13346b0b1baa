package restart_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/certctl/certctl/pkg/manifest"
	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/restart"
)

// A manifest a change left pending for the restart goes in with it: the component stops on
// the old manifest and comes back on the new one, and nothing stays pending. Pending manifests
// of a certctl that is gone are installed in place by the next certctl (RecoverPending); those
// of a live one are left to it.
func TestPendingManifest(t *testing.T) {
	n := startNode(t)
	l := n.tr.Layout
	target := filepath.Join(l.ManifestsDir, "kube-scheduler.yaml")
	newData := withFlag(t, target, "cert-dir", "/var/lib/scheduler-certs-new")
	if err := restart.ClaimPending(l); err != nil {
		t.Fatal(err)
	}
	writePending(t, l, "kube-scheduler.yaml", newData)
	var progress bytes.Buffer
	_, err := restart.Run(context.Background(), restart.Options{Layout: l, Node: n.node, Timeout: 45 * time.Second,
		Steps: []restart.Step{{Component: "scheduler", Action: restart.ActionRestart}}, Progress: restart.NewProgress(&progress, false),
		Stopper: restart.ProcessStopper{Layout: l, Node: n.node}})
	t.Logf("progress:\n%s", progress.String())
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(target); !bytes.Equal(got, newData) {
		t.Errorf("after the restart %s is not the pending manifest", target)
	}
	if n.k.Starts("kube-scheduler.yaml") != 2 {
		t.Errorf("the scheduler started %d times, want 2", n.k.Starts("kube-scheduler.yaml"))
	}
	if installed, err := restart.ReleasePending(l, &progress); err != nil || len(installed) != 0 {
		t.Errorf("after the restart took it, ReleasePending installed %v (%v)", installed, err)
	}

	// A certctl that wrote a pending manifest and died: the next one installs it.
	sched := filepath.Join(l.ManifestsDir, "kube-controller-manager.yaml")
	schedData := withFlag(t, sched, "cert-dir", "/var/lib/kcm-certs-new")
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	owner, _ := json.Marshal(map[string]any{"owner": restart.Owner{PID: dead.Process.Pid, BootID: bootID(t)}})
	if err := os.WriteFile(filepath.Join(l.StateDir(), "pending-owner.json"), owner, 0o600); err != nil {
		t.Fatal(err)
	}
	writePending(t, l, "kube-controller-manager.yaml", schedData)
	var out bytes.Buffer
	if err := restart.RecoverPending(l, &out); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(sched); !bytes.Equal(got, schedData) {
		t.Errorf("RecoverPending did not install the dead owner's %s: %s", sched, out.String())
	}
	if _, err := os.Stat(filepath.Join(l.StateDir(), "pending-owner.json")); !os.IsNotExist(err) {
		t.Errorf("the dead owner's claim is still there (%v)", err)
	}
}

func withFlag(t *testing.T, path, flag, value string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out, changes, err := manifest.SetFlags(data, map[string]string{flag: value})
	if err != nil || len(changes) != 1 {
		t.Fatalf("%s: set --%s: %v %v", path, flag, changes, err)
	}
	return out
}

func writePending(t *testing.T, l pki.Layout, name string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(l.PendingManifestsDir(), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(l.PendingManifestsDir(), name), data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func bootID(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		t.Fatal(err)
	}
	return string(bytes.TrimSpace(b))
}
