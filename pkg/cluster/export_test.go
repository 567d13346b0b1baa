package cluster

import (
	"context"

	"k8s.io/client-go/kubernetes"

	"github.com/certctl/certctl/pkg/noderequest"
)

// MoveNode is the endpoint's step for one node (its Job, its result read, the wait for its
// kubelet when the result says it was restarted), for the orchestrator's branches on what a
// node's Job returns (job_test.go).
func MoveNode(ctx context.Context, cs kubernetes.Interface, o EndpointOptions, node, from, to string) error {
	o.defaults()
	out := &NodeOutcome{Node: node}
	return o.moveNode(ctx, cs, out, noderequest.Request{Op: noderequest.SetServer, Server: to, From: from})
}
