//go:build !failpoints

package failpoint

import (
	"context"

	"github.com/certctl/certctl/pkg/pki"
)

const enabled = false

// BeforeStart is the point before a stopped component's manifest goes back: nothing in this
// build.
func BeforeStart(pki.Layout, string, string) (*Fired, error) { return nil, nil }

// BeforeRestart is the point before certctl restarts a component (the kubelet): nothing in
// this build.
func BeforeRestart(context.Context, pki.Layout, string) (*Fired, error) { return nil, nil }

// BeforeCheck is the point before a node's etcd quorum check: nothing in this build.
func BeforeCheck(context.Context, pki.Layout, string) (*Fired, error) { return nil, nil }
