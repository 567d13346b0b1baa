package kubeconfig_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certctl/certctl/pkg/kubeconfig"
)

// TestRESTConfig: the first kubeconfig that exists is used (admin.conf written by the real
// kubeadm, here); one that does not parse is an error naming it; none at all wraps
// ErrNotFound and lists what was tried.
func TestRESTConfig(t *testing.T) {
	dir := t.TempDir()
	admin := filepath.Join("testdata", "kubeadm-v1.37.2", "admin.conf")
	broken := filepath.Join(dir, "broken.conf")
	if err := os.WriteFile(broken, []byte("apiVersion: v1\nclusters: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.conf")
	for _, tc := range []struct {
		name  string
		paths []string
		err   string
	}{
		{"the first that exists", []string{missing, admin}, ""},
		{"does not parse", []string{broken, admin}, broken},
		{"none", []string{missing}, "tried " + missing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc, err := kubeconfig.RESTConfig(tc.paths, false)
			switch {
			case tc.err == "" && (err != nil || rc.Host == "" || rc.QPS != 50):
				t.Errorf("got %+v, %v", rc, err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Errorf("got %v, want an error saying %q", err, tc.err)
			}
			if tc.name == "none" && !errors.Is(err, kubeconfig.ErrNotFound) {
				t.Errorf("none: %v is not ErrNotFound", err)
			}
		})
	}
}
