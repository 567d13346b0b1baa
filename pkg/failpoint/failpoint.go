// Package failpoint injects faults into certctl at named points, for the fault tests of the
// multi-node lab (issue 21), the way etcd's gofail does: a binary built with `-tags failpoints`
// (the lab's image, never a release) reads the node's failpoint file and acts on the lines that
// name the point it reaches; any other build has nothing here but no-ops the compiler removes.
//
// The file is <state dir>/failpoints (/etc/kubernetes/.certctl/failpoints), one fault a line:
//
//	before-start COMPONENT break-key PATH
//
// before-start fires in a restart after COMPONENT stopped, before its manifest goes back:
// break-key replaces the key file PATH (a node path) with a new key that matches no
// certificate, as a renewal that wrote a broken key would leave it.
//
//	before-start COMPONENT break-file PATH
//
// break-file replaces the file PATH (a node path: a CA bundle a rotation wrote) with text that
// holds no PEM block, as a phase that wrote a broken file would leave it.
//
//	before-start COMPONENT set-flag NAME VALUE
//
// set-flag sets the flag --NAME, which the component's manifest carries, to VALUE in the
// manifest about to go back (a restart; not a reload, where no manifest moves): a component
// started with a bad flag (--authorization-mode=certctl-failpoint), as a phase that wrote a bad manifest
// would leave it.
//
//	before-restart COMPONENT hold-until PATH
//
// before-restart fires right before certctl restarts COMPONENT (the kubelet, its new files
// written; a static pod, before its manifest moves out): hold-until waits there until the file
// PATH (a node path) exists, so that a test can cut the node off at that instant (a worker's
// network cut while its Job runs), or look at the node's files then, and let it go on.
//
//	before-check etcd hold-until PATH
//
// before-check fires in a node's rotation of etcd-ca right before its quorum check (the other
// members healthy?), before anything changes: hold-until as above, so that a test can stop
// another member at that instant (etcd short of a member in the middle of the rotation).
//
// A line fires once and is removed from the file when it does (the restart of a rollback finds
// it gone; a test sees it fired).
package failpoint

import (
	"path/filepath"

	"github.com/certctl/certctl/pkg/pki"
)

// Enabled reports whether this binary was built with the failpoints tag.
const Enabled = enabled

// Path is the failpoint file of the node of l.
func Path(l pki.Layout) string { return filepath.Join(l.StateDir(), "failpoints") }

// Fired is a fault that fired: what a caller reports.
type Fired struct {
	Point, Component, Action string
	Args                     []string
}
