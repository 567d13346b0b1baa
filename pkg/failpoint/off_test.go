//go:build !failpoints

package failpoint_test

import (
	"context"
	"crypto/tls"
	"os"
	"path/filepath"
	"testing"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/failpoint"
	"github.com/certctl/certctl/pkg/pki"
)

// TestReleaseBuildIgnoresTheFile: a build without the failpoints tag (every release) does
// nothing at a failpoint, even with a failpoint file on the node, and leaves the file alone.
func TestReleaseBuildIgnoresTheFile(t *testing.T) {
	if failpoint.Enabled {
		t.Fatal("built with the failpoints tag")
	}
	tr := testenv.KubeadmTree(t, testenv.TreeOptions{})
	l := tr.Layout
	if err := os.MkdirAll(l.StateDir(), 0o700); err != nil {
		t.Fatal(err)
	}
	line := []byte("before-start apiserver break-key /etc/kubernetes/pki/apiserver.key\n" +
		"before-restart kubelet hold-until /etc/kubernetes/.certctl/never\n" +
		"before-check etcd hold-until /etc/kubernetes/.certctl/never\n")
	if err := os.WriteFile(failpoint.Path(l), line, 0o600); err != nil {
		t.Fatal(err)
	}
	if f, err := failpoint.BeforeStart(l, pki.CompAPIServer, ""); f != nil || err != nil {
		t.Fatalf("BeforeStart in a release build = %+v, %v", f, err)
	}
	if f, err := failpoint.BeforeRestart(context.Background(), l, "kubelet"); f != nil || err != nil {
		t.Fatalf("BeforeRestart in a release build = %+v, %v (its file never made: it would hold)", f, err)
	}
	if f, err := failpoint.BeforeCheck(context.Background(), l, pki.CompEtcd); f != nil || err != nil {
		t.Fatalf("BeforeCheck in a release build = %+v, %v (its file never made: it would hold)", f, err)
	}
	if _, err := tls.LoadX509KeyPair(filepath.Join(l.PKIDir, "apiserver.crt"), filepath.Join(l.PKIDir, "apiserver.key")); err != nil {
		t.Errorf("the apiserver's pair: %v", err)
	}
	if left, _ := os.ReadFile(failpoint.Path(l)); string(left) != string(line) {
		t.Errorf("the failpoint file changed: %q", left)
	}
}
