package recovery

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/sandbox"
)

// TestRun: a manifest an interrupted restart left in staging is put back, and what cannot be
// recovered is said as a warning while the other recoveries still run.
func TestRun(t *testing.T) {
	tests := []struct {
		name    string
		break_  func(t *testing.T, l pki.Layout) // what the interrupted run left
		back    bool                             // kube-apiserver.yaml is in place after Run
		warning string
	}{
		{"nothing left", func(*testing.T, pki.Layout) {}, true, ""},
		{"manifest in staging", func(t *testing.T, l pki.Layout) {
			staging := filepath.Join(l.StateDir(), "staging")
			if err := os.MkdirAll(staging, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(filepath.Join(l.ManifestsDir, "kube-apiserver.yaml"), filepath.Join(staging, "kube-apiserver.yaml")); err != nil {
				t.Fatal(err)
			}
		}, true, ""},
		{"staging unreadable", func(t *testing.T, l pki.Layout) {
			if err := os.MkdirAll(l.StateDir(), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(l.StateDir(), "staging"), []byte("not a directory"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, true, "warning: read "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := sandbox.Create(sandbox.Options{Dir: dir, KeyAlgorithm: pki.AlgECDSAP256}); err != nil {
				t.Fatal(err)
			}
			l := pki.NewLayout(pki.LayoutOptions{Root: dir})
			tc.break_(t, l)
			var out bytes.Buffer
			Run(l, &out)
			_, err := os.Stat(filepath.Join(l.ManifestsDir, "kube-apiserver.yaml"))
			if back := err == nil; back != tc.back {
				t.Errorf("kube-apiserver.yaml in place: %v, want %v (%s)", back, tc.back, out.String())
			}
			if got := strings.Contains(out.String(), "warning:"); got != (tc.warning != "") || tc.warning != "" && !strings.Contains(out.String(), tc.warning) {
				t.Errorf("said %q, want a warning %q", out.String(), tc.warning)
			}
		})
	}
}
