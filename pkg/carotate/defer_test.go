package carotate_test

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certctl/certctl/pkg/carotate"
	"github.com/certctl/certctl/pkg/manifest"
	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/restart"
)

// trustManifests are the manifests phase trust of every CA edits.
var trustManifests = []string{"etcd.yaml", "kube-apiserver.yaml", "kube-controller-manager.yaml"}

// deferredTrust runs phase trust of every CA with DeferManifests on l and returns the manifests
// (trustManifests) as they were before it.
func deferredTrust(t *testing.T, l pki.Layout) map[string][]byte {
	t.Helper()
	before := map[string][]byte{}
	for _, f := range trustManifests {
		before[f] = read(t, filepath.Join(l.ManifestsDir, f))
	}
	o := carotate.Options{Layout: l, Generate: true, DeferManifests: true, LockTimeout: 5e9}
	if _, err := carotate.Run(o, carotate.CAs, carotate.PhaseTrust, false); err != nil {
		t.Fatal(err)
	}
	return before
}

// With DeferManifests (ca rotate --restart, what the cluster Jobs run) phase trust of all
// three CAs leaves the manifests the kubelet watches as they were and writes their new
// content to the pending dir, each manifest carrying the edits of every CA (the apiserver's
// --client-ca-file and --etcd-cafile and --requestheader-client-ca-file); the rollback
// removes the pending manifests and leaves the manifests as they were.
func TestDeferManifests(t *testing.T) {
	l := node(t)
	before := deferredTrust(t, l)
	want := map[string][]string{
		"etcd.yaml":                    {"trusted-ca-file", "peer-trusted-ca-file"},
		"kube-apiserver.yaml":          {"client-ca-file", "etcd-cafile", "requestheader-client-ca-file"},
		"kube-controller-manager.yaml": {"client-ca-file", "requestheader-client-ca-file"},
	}
	for _, f := range trustManifests {
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
	for _, f := range trustManifests {
		if !bytes.Equal(read(t, filepath.Join(l.ManifestsDir, f)), before[f]) {
			t.Errorf("after the rollback %s differs from before trust", f)
		}
		if _, err := os.Stat(filepath.Join(l.PendingManifestsDir(), f)); !os.IsNotExist(err) {
			t.Errorf("after the rollback the pending %s is still there (%v)", f, err)
		}
	}
}

// A rollback with DeferManifests (ca rotate --rollback --restart) puts the manifests back
// through the pending dir, as the phases do: those the phase's restart had installed stay in
// place until the restart installs the old content from the pending dir (the kubelet does not
// restart them at once, undrained); those it had not (still pending) are removed from the
// pending dir, the manifest in place being the old one already.
func TestRollbackDefersManifests(t *testing.T) {
	for _, installed := range []bool{true, false} {
		name := map[bool]string{true: "installed by the restart", false: "still pending"}[installed]
		t.Run(name, func(t *testing.T) {
			l := node(t)
			before := deferredTrust(t, l)
			phase := map[string][]byte{}
			for _, f := range trustManifests {
				pending := filepath.Join(l.PendingManifestsDir(), f)
				phase[f] = read(t, pending)
				if installed { // what the restart does as it restarts each component
					if err := os.Rename(pending, filepath.Join(l.ManifestsDir, f)); err != nil {
						t.Fatal(err)
					}
				}
			}
			caBefore := read(t, filepath.Join(l.PKIDir, "ca.crt"))
			res, err := carotate.Run(carotate.Options{Layout: l, DeferManifests: true, LockTimeout: 5e9}, carotate.CAs, "", true)
			if err != nil {
				t.Fatal(err)
			}
			restarts := 0
			for _, r := range res {
				restarts += len(r.Restart)
			}
			if restarts == 0 {
				t.Error("the rollback names no component to restart")
			}
			for _, f := range trustManifests {
				inPlace := read(t, filepath.Join(l.ManifestsDir, f))
				pending, perr := os.ReadFile(filepath.Join(l.PendingManifestsDir(), f))
				switch {
				case installed && !bytes.Equal(inPlace, phase[f]):
					t.Errorf("%s in place changed by the rollback: the kubelet would restart it at once", f)
				case installed && (perr != nil || !bytes.Equal(pending, before[f])):
					t.Errorf("the pending %s: %v; want the content from before the phase, for the restart", f, perr)
				case !installed && !bytes.Equal(inPlace, before[f]):
					t.Errorf("%s in place is not as before the phase", f)
				case !installed && !os.IsNotExist(perr):
					t.Errorf("the pending %s of the phase is still there (%v)", f, perr)
				}
			}
			// Every other file is back at once (the CA itself never changed in trust), but for
			// the bundles the manifests in place still name: they go once the pending manifests
			// are in (restart.ReleasePending, what the restart's end and the recovery run).
			if !bytes.Equal(read(t, filepath.Join(l.PKIDir, "ca.crt")), caBefore) {
				t.Error("ca.crt differs after the rollback")
			}
			bundle := filepath.Join(l.PKIDir, "rotation", "ca", "bundle.crt")
			_, berr := os.Stat(bundle)
			if installed != (berr == nil) {
				t.Errorf("the bundle the manifests in place name: %v after the rollback, want it there only while they name it", berr)
			}
			if _, err := restart.ReleasePending(l, io.Discard); err != nil {
				t.Fatal(err)
			}
			for _, f := range trustManifests {
				if !bytes.Equal(read(t, filepath.Join(l.ManifestsDir, f)), before[f]) {
					t.Errorf("%s in place is not as before the phase once the pending manifests are in", f)
				}
			}
			if _, err := os.Stat(filepath.Join(l.PKIDir, "rotation")); !os.IsNotExist(err) {
				t.Errorf("the rotation directory is still there once the pending manifests are in (%v)", err)
			}
			if _, err := os.Stat(restart.PendingRemovalsPath(l)); !os.IsNotExist(err) {
				t.Errorf("the pending removals are still listed (%v)", err)
			}
		})
	}
}
