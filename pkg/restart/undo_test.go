package restart

import (
	"testing"

	"github.com/certctl/certctl/pkg/pki"
)

// TestUndoAPIAfter: in a rollback, etcd's restart skips its wait for the node's apiserver only
// when the apiserver restarts after it in the same run (its own restart verifies it, on the
// files put back); an apiserver before etcd, or none, leaves the wait as it is.
func TestUndoAPIAfter(t *testing.T) {
	tests := []struct {
		name  string
		comps []string
		want  bool // etcd's apiAfter
	}{
		{"etcd then the apiserver", []string{pki.CompEtcd, pki.CompAPIServer}, true},
		{"etcd, the apiserver, its clients", []string{pki.CompEtcd, pki.CompAPIServer, pki.CompControllerManager, pki.CompScheduler}, true},
		{"etcd alone", []string{pki.CompEtcd}, false},
		{"etcd and the scheduler", []string{pki.CompEtcd, pki.CompScheduler}, false},
		{"the apiserver before etcd", []string{pki.CompAPIServer, pki.CompEtcd}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var comps []*component
			var etcd *component
			for _, n := range tc.comps {
				c := &component{name: n}
				if n == pki.CompEtcd {
					etcd = c
				}
				comps = append(comps, c)
			}
			undoAPIAfter(comps)
			if etcd.apiAfter != tc.want {
				t.Errorf("etcd's apiAfter %v, want %v", etcd.apiAfter, tc.want)
			}
			for _, c := range comps {
				if c != etcd && c.apiAfter {
					t.Errorf("%s marked: only etcd waits for the apiserver", c.name)
				}
			}
		})
	}
}
