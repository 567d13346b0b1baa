//go:build !failpoints

package failpoint

import "github.com/certctl/certctl/pkg/pki"

const enabled = false

// BeforeStart is the point before a stopped component's manifest goes back: nothing in this
// build.
func BeforeStart(pki.Layout, string) (*Fired, error) { return nil, nil }
