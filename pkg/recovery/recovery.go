// Package recovery finishes, before any certctl command on a node, what an interrupted one
// left there: a static-pod manifest still in staging (its component down until it is back), the
// new manifests a ca rotate was killed before installing, a renewal half applied (finished or
// rolled back from its journal).
package recovery

import (
	"fmt"
	"io"

	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/renew"
	"github.com/certctl/certctl/pkg/restart"
)

// Run recovers l's node, saying what it did on w. What cannot be recovered is a warning on w,
// not an error: restore must still work, and renew refuses to proceed by itself.
func Run(l pki.Layout, w io.Writer) {
	for _, recover := range []func(pki.Layout, io.Writer) error{restart.Recover, restart.RecoverPending, renew.Recover} {
		if err := recover(l, w); err != nil {
			fmt.Fprintln(w, "warning:", err)
		}
	}
}
