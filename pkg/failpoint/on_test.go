//go:build failpoints

package failpoint_test

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"testing"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/failpoint"
	"github.com/certctl/certctl/pkg/pki"
)

// TestBeforeStart, in a build with the failpoints tag, on a tree of the newest kubeadm: the
// line naming the component fires once (the apiserver's key no longer matches its certificate)
// and is removed; the other lines stay; a line with an unknown action is an error.
func TestBeforeStart(t *testing.T) {
	if !failpoint.Enabled {
		t.Fatal("built without the failpoints tag")
	}
	tr := testenv.KubeadmTree(t, testenv.TreeOptions{})
	l := tr.Layout
	crt, key := filepath.Join(l.PKIDir, "apiserver.crt"), filepath.Join(l.PKIDir, "apiserver.key")
	if f, err := failpoint.BeforeStart(l, pki.CompAPIServer); f != nil || err != nil {
		t.Fatalf("no failpoint file: %v %v", f, err)
	}
	if err := os.MkdirAll(l.StateDir(), 0o700); err != nil {
		t.Fatal(err)
	}
	lines := "before-start etcd break-key /etc/kubernetes/pki/etcd/server.key\n" +
		"before-start apiserver break-key /etc/kubernetes/pki/apiserver.key\n" +
		"before-start scheduler explode\n"
	if err := os.WriteFile(failpoint.Path(l), []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		component string
		fires     bool
		wantErr   bool
	}{
		{pki.CompAPIServer, true, false},
		{pki.CompAPIServer, false, false}, // fired once, gone
		{pki.CompControllerManager, false, false},
		{pki.CompScheduler, true, true},
	}
	for i, tc := range tests {
		f, err := failpoint.BeforeStart(l, tc.component)
		if (f != nil) != tc.fires || (err != nil) != tc.wantErr {
			t.Errorf("%d: BeforeStart(%s) = %+v, %v; want fires %v, error %v", i, tc.component, f, err, tc.fires, tc.wantErr)
		}
	}
	if _, err := tls.LoadX509KeyPair(crt, key); err == nil {
		t.Errorf("%s still matches %s after break-key", key, crt)
	}
	if _, err := tls.LoadX509KeyPair(filepath.Join(l.PKIDir, "etcd", "server.crt"), filepath.Join(l.PKIDir, "etcd", "server.key")); err != nil {
		t.Errorf("etcd's pair, whose line did not fire: %v", err)
	}
	left, err := os.ReadFile(failpoint.Path(l))
	if err != nil {
		t.Fatal(err)
	}
	if want := "before-start etcd break-key /etc/kubernetes/pki/etcd/server.key\n"; string(left) != want {
		t.Errorf("left in the file: %q, want %q", left, want)
	}
}
