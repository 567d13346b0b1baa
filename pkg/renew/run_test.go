package renew_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certctl/certctl/pkg/renew"
)

// TestRunCSRDirStaysUnderRoot: --csr-dir is a node path. Whatever it says ("../../x", a
// path climbing past "/", a link to the host's /tmp), the keys and requests land inside the
// root.
func TestRunCSRDirStaysUnderRoot(t *testing.T) {
	outside := t.TempDir() // where an escaping --csr-dir would land
	tests := []struct {
		name, csrDir, want string // want: node path of the CSR dir
		link               bool
	}{
		{"relative with ..", "../../csr", "/csr", false},
		{"absolute with ..", "/etc/../../../../csr", "/csr", false},
		{"climbing to a real dir", "../../../../../../" + outside, outside, false},
		{"through an absolute link", "/srv/out/csr", outside + "/csr", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := newTree(t)
			os.Remove(filepath.Join(l.PKIDir, "ca.key")) // external CA: --csr-only
			if tc.link {
				if err := os.MkdirAll(filepath.Join(l.Root, "srv"), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink(outside, filepath.Join(l.Root, "srv/out")); err != nil {
					t.Fatal(err)
				}
			}
			var out bytes.Buffer
			res, err := renew.Run(context.Background(), l, renew.RunOptions{
				Options: renew.Options{Names: []string{"apiserver"}, Days: 365, CSROnly: true}, CSRDir: tc.csrDir, Out: &out,
			})
			if err != nil {
				t.Fatalf("%v\n%s", err, out.String())
			}
			want := filepath.Join(l.Root, tc.want)
			if res.Applied == nil || res.Applied.CSRDir != want {
				t.Fatalf("CSR dir %+v, want %s", res.Applied, want)
			}
			if _, err := os.Stat(filepath.Join(want, "apiserver.csr")); err != nil {
				t.Fatal(err)
			}
			if entries, _ := os.ReadDir(outside); len(entries) > 0 {
				t.Fatalf("wrote outside the root, into %s: %v", outside, entries)
			}
			if !strings.Contains(out.String(), want) {
				t.Errorf("output does not name %s:\n%s", want, out.String())
			}
		})
	}
}
