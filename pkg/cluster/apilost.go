package cluster

import (
	"errors"
	"fmt"
	"strings"

	"github.com/certctl/certctl/pkg/apiretry"
)

// StateInterrupted is the state of a node whose Job the command stopped waiting for because
// the API stopped answering: what the Job does on the node is not known here.
const StateInterrupted = "interrupted"

// APILostError: the API stopped answering (the client gave up after --api-wait) while the
// command waited for the Jobs of Nodes. That is not those nodes' failure: their Jobs go on by
// themselves, and the same command, run again once the API answers, takes the Lease over,
// adopts them and goes on.
type APILostError struct {
	Nodes []string
	Err   *apiretry.GaveUpError
}

func (e *APILostError) Error() string {
	return fmt.Sprintf("stopped at %s: %v; the Job there goes on by itself: run the same command again once the API answers (it takes the Job's result and goes on)", strings.Join(e.Nodes, ", "), e.Err)
}

func (e *APILostError) Unwrap() error { return e.Err }

// apiGaveUp says whether err holds a request the client gave up on, the API not answering.
func apiGaveUp(err error) (*apiretry.GaveUpError, bool) {
	var g *apiretry.GaveUpError
	return g, errors.As(err, &g)
}
