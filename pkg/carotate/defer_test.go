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
