package pki

import (
	"os"
	"path/filepath"
	"testing"
)

// TestFollowLink: the kubelet's absolute links resolve under --root, relative ones beside
// the link; under "/" nothing is rewritten.
func TestFollowLink(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "var/lib/kubelet/pki")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(dir, "kubelet-client-2026-01-01-00-00-00.pem")
	if err := os.WriteFile(target, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	abs, rel := filepath.Join(dir, "abs.pem"), filepath.Join(dir, "rel.pem")
	if err := os.Symlink("/var/lib/kubelet/pki/kubelet-client-2026-01-01-00-00-00.pem", abs); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("kubelet-client-2026-01-01-00-00-00.pem", rel); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ root, in, want string }{
		{root, abs, target},
		{root, rel, target},
		{root, target, target},
		{"/", abs, abs},
	}
	for _, tc := range tests {
		if got := FollowLink(tc.root, tc.in); got != tc.want {
			t.Errorf("FollowLink(%s, %s) = %s, want %s", tc.root, tc.in, got, tc.want)
		}
	}
}
