package carotate_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certctl/certctl/pkg/carotate"
	"github.com/certctl/certctl/pkg/manifest"
)

// With DeferManifests (ca rotate --restart, what the cluster Jobs run) phase trust of all
// three CAs leaves the manifests the kubelet watches as they were and writes their new
// content to the pending dir, each manifest carrying the edits of every CA (the apiserver's
// --client-ca-file and --etcd-cafile and --requestheader-client-ca-file); the rollback
// removes the pending manifests and leaves the manifests as they were.
func TestDeferManifests(t *testing.T) {
	l := node(t)
	files := []string{"etcd.yaml", "kube-apiserver.yaml", "kube-controller-manager.yaml"}
	before := map[string][]byte{}
	for _, f := range files {
		before[f] = read(t, filepath.Join(l.ManifestsDir, f))
	}
	o := carotate.Options{Layout: l, Generate: true, DeferManifests: true, LockTimeout: 5e9}
	if _, err := carotate.Run(o, carotate.CAs, carotate.PhaseTrust, false); err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"etcd.yaml":                    {"trusted-ca-file", "peer-trusted-ca-file"},
		"kube-apiserver.yaml":          {"client-ca-file", "etcd-cafile", "requestheader-client-ca-file"},
		"kube-controller-manager.yaml": {"client-ca-file", "requestheader-client-ca-file"},
	}
	for _, f := range files {
		if !bytes.Equal(read(t, filepath.Join(l.ManifestsDir, f)), before[f]) {
			t.Errorf("%s in the manifests dir changed: the kubelet would restart it at once", f)
		}
		pending := filepath.Join(l.PendingManifestsDir(), f)
		pod, err := manifest.Load(pending)
		if err != nil {
			t.Fatalf("the pending %s: %v", f, err)
		}
		old, err := manifest.Parse(f, before[f])
		if err != nil {
			t.Fatal(err)
		}
		for _, flag := range want[f] {
			now, was := pod.Flags()[flag], old.Flags()[flag]
			if now == was || !strings.Contains(now, "/rotation/") {
				t.Errorf("the pending %s: --%s %q (was %q), want the rotation's bundle", f, flag, now, was)
			}
		}
	}
	if _, err := carotate.Run(carotate.Options{Layout: l, LockTimeout: 5e9}, carotate.CAs, "", true); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if !bytes.Equal(read(t, filepath.Join(l.ManifestsDir, f)), before[f]) {
			t.Errorf("after the rollback %s differs from before trust", f)
		}
		if _, err := os.Stat(filepath.Join(l.PendingManifestsDir(), f)); !os.IsNotExist(err) {
			t.Errorf("after the rollback the pending %s is still there (%v)", f, err)
		}
	}
}

// TestRollbackDefersManifests: the rollback of a phase whose restart installed its manifests,
// with DeferManifests (ca rotate --rollback --restart, what cluster ca-rotate --rollback's
// Jobs run), leaves the manifests the kubelet watches as the phase made them and writes each
// one's content from before the phase to the pending dir, for the restart to install: put back
// in place, the kubelet restarted etcd by itself while the rollback's restart was starting
// (the multi-node lab); the rest of the phase's files are back at once.
func TestRollbackDefersManifests(t *testing.T) {
	l := node(t)
	files := []string{"etcd.yaml", "kube-apiserver.yaml", "kube-controller-manager.yaml"}
	before := map[string][]byte{}
	for _, f := range files {
		before[f] = read(t, filepath.Join(l.ManifestsDir, f))
	}
	caBefore := read(t, filepath.Join(l.PKIDir, "ca.crt"))
	o := carotate.Options{Layout: l, Generate: true, DeferManifests: true, LockTimeout: 5e9}
	if _, err := carotate.Run(o, carotate.CAs, carotate.PhaseTrust, false); err != nil {
		t.Fatal(err)
	}
	// The restart installs the pending manifests.
	trusted := map[string][]byte{}
	for _, f := range files {
		if err := os.Rename(filepath.Join(l.PendingManifestsDir(), f), filepath.Join(l.ManifestsDir, f)); err != nil {
			t.Fatal(err)
		}
		trusted[f] = read(t, filepath.Join(l.ManifestsDir, f))
	}
	res, err := carotate.Run(carotate.Options{Layout: l, DeferManifests: true, LockTimeout: 5e9}, carotate.CAs, "", true)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if !bytes.Equal(read(t, filepath.Join(l.ManifestsDir, f)), trusted[f]) {
			t.Errorf("the rollback changed %s in the manifests dir: the kubelet would restart it at once", f)
		}
		if got := read(t, filepath.Join(l.PendingManifestsDir(), f)); !bytes.Equal(got, before[f]) {
			t.Errorf("the pending %s is not the manifest from before trust", f)
		}
	}
	if !bytes.Equal(read(t, filepath.Join(l.PKIDir, "ca.crt")), caBefore) {
		t.Errorf("ca.crt not put back by the rollback")
	}
	restarts := map[string]bool{}
	for _, r := range res {
		for _, c := range r.Restart {
			restarts[c] = true
		}
	}
	for _, c := range []string{"etcd", "apiserver", "controller-manager"} {
		if !restarts[c] {
			t.Errorf("the rollback does not restart %s (restarts %v): its pending manifest would wait", c, restarts)
		}
	}
}
