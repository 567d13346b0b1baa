package kubeconfig_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certctl/certctl/pkg/kubeconfig"
	"k8s.io/client-go/rest"
)

// kubeconfigs are admin.conf written by the real kubeadm, a file that does not parse and a
// path where there is none.
func kubeconfigs(t *testing.T) (admin, broken, missing string) {
	t.Helper()
	dir := t.TempDir()
	broken = filepath.Join(dir, "broken.conf")
	if err := os.WriteFile(broken, []byte("apiVersion: v1\nclusters: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return filepath.Join("testdata", "kubeadm-v1.37.2", "admin.conf"), broken, filepath.Join(dir, "missing.conf")
}

// TestRESTConfig: the first kubeconfig that exists is used (admin.conf written by the real
// kubeadm, here); one that does not parse is an error naming it; none at all wraps
// ErrNotFound and lists what was tried.
func TestRESTConfig(t *testing.T) {
	admin, broken, missing := kubeconfigs(t)
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

// TestWhere: which kubeconfig each way of finding a client takes on a node (admin.conf written
// by the real kubeadm; the test is not in a pod, so no service account is found).
func TestWhere(t *testing.T) {
	admin, broken, missing := kubeconfigs(t)
	for _, tc := range []struct {
		name  string
		where kubeconfig.Where
		// what Config, PodConfig and AdminConfig give: "host" a config, "nil" none without an
		// error, else a word of the error.
		config, pod, admin string
	}{
		{"admin.conf", kubeconfig.Where{Admin: admin, User: missing}, "host", "host", "host"},
		{"the user's only", kubeconfig.Where{Admin: missing, User: admin}, "host", "host", "nil"},
		{"--kubeconfig wins", kubeconfig.Where{Flag: admin, Admin: broken}, "host", "host", "host"},
		{"--kubeconfig missing", kubeconfig.Where{Flag: missing, Admin: admin}, missing, missing, missing},
		{"--kubeconfig broken", kubeconfig.Where{Flag: broken, Admin: admin}, broken, broken, broken},
		{"nothing (a worker)", kubeconfig.Where{Admin: missing, User: missing}, "tried", "tried", "nil"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, c := range []struct {
				way  string
				get  func() (*rest.Config, error)
				want string
			}{
				{"Config", tc.where.Config, tc.config},
				{"PodConfig", tc.where.PodConfig, tc.pod},
				{"AdminConfig", tc.where.AdminConfig, tc.admin},
			} {
				rc, err := c.get()
				switch c.want {
				case "host":
					if err != nil || rc == nil || rc.Host == "" {
						t.Errorf("%s: %+v, %v; want a client configuration", c.way, rc, err)
					}
				case "nil":
					if err != nil || rc != nil {
						t.Errorf("%s: %+v, %v; want none and no error", c.way, rc, err)
					}
				default:
					if err == nil || !strings.Contains(err.Error(), c.want) {
						t.Errorf("%s: %v; want an error saying %q", c.way, err, c.want)
					}
				}
				if c.way == "PodConfig" && rc != nil && rc.Timeout != 10*time.Second {
					t.Errorf("PodConfig: timeout %s, want 10s", rc.Timeout)
				}
			}
		})
	}
}
