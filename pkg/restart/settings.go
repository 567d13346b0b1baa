package restart

import (
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/term"

	"github.com/certctl/certctl/pkg/pki"
)

// Settings are a restart as the operator sets it (certctl restart, renew --restart, ca rotate
// --restart): the flags, before they become a Request.
type Settings struct {
	Timeout, ReloadTimeout time.Duration
	// StopGrace, when StopGraceSet, is every component's stop grace (else each its default).
	StopGrace    time.Duration
	StopGraceSet bool
	// LBDrain > 0: drain the apiserver's port for this long before a stop (Drain).
	LBDrain time.Duration
}

// Request is the restart o describes on l's node, what it did said on out (its progress line
// redrawn in place when out is a terminal).
func (o Settings) Request(l pki.Layout, out io.Writer) (Request, error) {
	f, ok := out.(*os.File)
	r := Request{Layout: l, Timeout: o.Timeout, ReloadTimeout: o.ReloadTimeout, Out: out,
		Progress: NewProgress(out, ok && term.IsTerminal(int(f.Fd())))}
	if o.StopGrace < 0 {
		return r, fmt.Errorf("--stop-grace %s: want a duration >= 0 such as 0s, 1s or 10s", o.StopGrace)
	}
	if o.StopGraceSet {
		r.Grace = UniformStopGrace(o.StopGrace)
	}
	if o.LBDrain > 0 {
		r.Drain = &Drain{Wait: o.LBDrain}
	}
	return r, nil
}
