package cluster

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
)

// defaultPercent is the share of the workers a wave of the default holds: a quarter, as a
// Deployment's default rolling update, and at least defaultMinParallel (a kubelet restart stops
// no pod: on a small cluster waves of one would only make the rotation longer).
const defaultPercent = 25

// defaultMinParallel is the smallest wave of the default (fewer when there are fewer workers).
const defaultMinParallel = 4

// defaultMaxParallel is the largest wave of the default: each node of a wave holds one or two
// watches open on the command's one HTTP/2 connection, whose streams the apiserver bounds
// (--http2-max-streams-per-connection, 1000); beyond a few hundred workers the client's own
// request rate (50/s) bounds the command's time anyway, not the size of the wave
// (docs/cluster.md, "Scale").
const defaultMaxParallel = 250

// MaxParallel bounds how many workers a cluster command changes at once: N workers, or N
// percent of the workers (rounded down, at least one). The zero value is the default: 25% of
// the workers, at least 4, at most 250. Control-plane nodes are always changed one at a time.
type MaxParallel struct {
	N       int
	Percent bool
}

// ParseMaxParallel reads "N" (a count, at least 1) or "N%" (1-100 percent of the workers);
// "" is the default.
func ParseMaxParallel(s string) (MaxParallel, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return MaxParallel{}, nil // the default
	}
	num, pct := strings.CutSuffix(s, "%")
	n, err := strconv.Atoi(num)
	switch {
	case err != nil || n < 1:
		return MaxParallel{}, fmt.Errorf("want a count of workers (4) or a percentage of them (25%%), at least 1; got %q", s)
	case pct && n > 100:
		return MaxParallel{}, fmt.Errorf("a percentage of the workers is at most 100%%; got %q", s)
	}
	return MaxParallel{N: n, Percent: pct}, nil
}

// Of is the wave size for workers workers: at least 1.
func (m MaxParallel) Of(workers int) int {
	if m.N <= 0 {
		return min(defaultMaxParallel, max(1, min(defaultMinParallel, workers), workers*defaultPercent/100))
	}
	n := m.N
	if m.Percent {
		n = workers * m.N / 100
	}
	return max(1, n)
}

func (m MaxParallel) String() string {
	if m.N <= 0 {
		return "" // the default (flag help says what it is)
	}
	if m.Percent {
		return strconv.Itoa(m.N) + "%"
	}
	return strconv.Itoa(m.N)
}

// waves groups the indices of nodes in their order: each control-plane node (cp[i]) a wave of
// its own; consecutive workers in waves of at most size.
func waves(cp []bool, size int) [][]int {
	var out [][]int
	open := false // the last wave is a worker wave with room
	for i, isCP := range cp {
		switch {
		case isCP:
			out = append(out, []int{i})
			open = false
		case open:
			out[len(out)-1] = append(out[len(out)-1], i)
		default:
			out = append(out, []int{i})
		}
		open = !isCP && len(out[len(out)-1]) < size
	}
	return out
}

// NodeError is the failure of one node of a wave.
type NodeError struct {
	Node string
	Err  error
}

func (e NodeError) Error() string { return e.Node + ": " + e.Err.Error() }
func (e NodeError) Unwrap() error { return e.Err }

// WaveError is a wave in which nodes failed: every failed node, in the order of the wave. The
// other nodes of the wave ran to their end (a node's Job is never cut short because another
// failed); the waves after it did not start.
type WaveError struct {
	Failed []NodeError
}

func (e *WaveError) Error() string {
	if len(e.Failed) == 1 {
		return fmt.Sprintf("node %s failed: %v", e.Failed[0].Node, e.Failed[0].Err)
	}
	parts := make([]string, len(e.Failed))
	for i, f := range e.Failed {
		parts[i] = f.Error()
	}
	return fmt.Sprintf("nodes %s failed: %s", strings.Join(e.Nodes(), ", "), strings.Join(parts, "; "))
}

// Nodes are the failed nodes' names.
func (e *WaveError) Nodes() []string {
	out := make([]string, len(e.Failed))
	for i, f := range e.Failed {
		out[i] = f.Node
	}
	return out
}

func (e *WaveError) Unwrap() []error {
	out := make([]error, len(e.Failed))
	for i, f := range e.Failed {
		out[i] = f
	}
	return out
}

// inWaves runs do on every node of outs (cp[i]: outs[i] is a control-plane node) in waves of
// size workers, each control-plane node alone (waves); before, when set, is checked before each
// wave (the Lease confirmed). A node whose do fails is reported failed with its problem; the
// error is a *WaveError when nodes failed.
func (r *Runner) inWaves(ctx context.Context, outs []NodeOutcome, cp []bool, size int, before func(context.Context) error,
	do func(ctx context.Context, out *NodeOutcome, cp bool) error,
) error {
	return waveRun{
		before: before,
		node: func(ctx context.Context, i int) error {
			if err := do(ctx, &outs[i], cp[i]); err != nil {
				outs[i].State, outs[i].Problem = "failed", err.Error()
				if _, lost := apiGaveUp(err); lost {
					outs[i].State = StateInterrupted
				}
				return err
			}
			return nil
		},
		name:    func(i int) string { return outs[i].Node },
		started: r.waveStarted(outs),
	}.run(ctx, waves(cp, size))
}

// waveRun runs the nodes of a command wave by wave.
type waveRun struct {
	// before is called before each wave (the Lease confirmed); its error stops the run, naming
	// the wave's first node.
	before func(ctx context.Context) error
	// node runs and verifies node i; it is called at once for every node of a wave.
	node func(ctx context.Context, i int) error
	name func(i int) string
	// started is called with each wave before it runs (progress).
	started func(wave []int)
}

// run runs every wave, the next only when every node of this one is done; a wave with a failed
// node ends the run with a *WaveError naming each, one whose nodes the API was lost for with an
// *APILostError naming those (both, joined, when a wave has both).
func (w waveRun) run(ctx context.Context, ws [][]int) error {
	for _, wave := range ws {
		if w.before != nil {
			if err := w.before(ctx); err != nil {
				return fmt.Errorf("stopped before %s: %w", w.name(wave[0]), err)
			}
		}
		if w.started != nil {
			w.started(wave)
		}
		errs := make([]error, len(wave))
		if len(wave) == 1 {
			errs[0] = w.node(ctx, wave[0])
		} else {
			var wg sync.WaitGroup
			for j, i := range wave {
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs[j] = w.node(ctx, i)
				}()
			}
			wg.Wait()
		}
		var we WaveError
		var lost *APILostError
		for j, err := range errs {
			if g, ok := apiGaveUp(err); ok {
				if lost == nil {
					lost = &APILostError{Err: g}
				}
				lost.Nodes = append(lost.Nodes, w.name(wave[j]))
			} else if err != nil {
				we.Failed = append(we.Failed, NodeError{Node: w.name(wave[j]), Err: err})
			}
		}
		switch {
		case lost != nil && len(we.Failed) > 0:
			return errors.Join(&we, lost)
		case lost != nil:
			return lost
		case len(we.Failed) > 0:
			return &we
		}
	}
	return nil
}

// Set parses s as ParseMaxParallel does (a flag value).
func (m *MaxParallel) Set(s string) error {
	v, err := ParseMaxParallel(s)
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// Type names the flag's value in --help.
func (m *MaxParallel) Type() string { return "N|N%" }
