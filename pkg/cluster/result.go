package cluster

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"

	"github.com/certctl/certctl/pkg/inspect"
)

// Node states in a cluster status.
const (
	StateOK       = "ok"       // inspected, no finding above info
	StateWarning  = "warning"  // inspected, worst finding a warning
	StateCritical = "critical" // inspected, a critical finding
	StateNotRun   = "not-run"  // the Job could not run or gave no result: listed, never dropped
)

// NodeResult is one node's outcome.
type NodeResult struct {
	Node   string          `json:"node"`
	State  string          `json:"state"`
	Role   string          `json:"role,omitempty"`
	Report *inspect.Report `json:"report,omitempty"`
	// Reason says why a node is not-run (unschedulable, image pull, timeout, bad output).
	Reason string `json:"reason,omitempty"`
}

// ParseResult turns the log of a node's Job (certctl inspect -o json) and its container's
// exit code into the node's result. inspect exits 0, 1 (warnings) or 2 (critical) with a
// report; anything else, or output that is not a report, makes the node not-run.
func ParseResult(node string, logs []byte, exitCode int) NodeResult {
	r := NodeResult{Node: node, State: StateNotRun}
	if exitCode != 0 && exitCode != 1 && exitCode != 2 {
		r.Reason = fmt.Sprintf("certctl exited %d: %s", exitCode, tail(logs))
		return r
	}
	// The report is the JSON document; anything the container printed before it (warnings
	// on stderr merged into the log) is skipped.
	i := bytes.IndexByte(logs, '{')
	if i < 0 {
		r.Reason = fmt.Sprintf("no report in the Job's log: %s", tail(logs))
		return r
	}
	var rep inspect.Report
	dec := json.NewDecoder(bytes.NewReader(logs[i:]))
	if err := dec.Decode(&rep); err != nil {
		r.Reason = fmt.Sprintf("the Job's log is not an inspect report: %v", err)
		return r
	}
	if rep.Certificates == nil {
		r.Reason = "the Job's log is not an inspect report: no certificates"
		return r
	}
	r.Report, r.Role = &rep, rep.Role
	switch rep.Worst() {
	case inspect.SevCritical:
		r.State = StateCritical
	case inspect.SevWarning:
		r.State = StateWarning
	default:
		r.State = StateOK
	}
	return r
}

func tail(b []byte) string {
	b = bytes.TrimSpace(b)
	if len(b) > 300 {
		b = append([]byte("..."), b[len(b)-300:]...)
	}
	if len(b) == 0 {
		return "(empty)"
	}
	return string(b)
}

// Status is the cluster's aggregate.
type Status struct {
	Nodes []NodeResult `json:"nodes"` // sorted by node name
	// Counts per state; NotRun nodes are never folded into OK.
	Counts map[string]int `json:"counts"`
	// Worst is the worst state over the nodes: not-run counts as critical for alerting
	// (a node that cannot be inspected is not known to be fine).
	Worst string `json:"worst"`
}

var stateRank = map[string]int{StateOK: 0, StateWarning: 1, StateCritical: 2, StateNotRun: 3}

// Aggregate builds the cluster status from the node results.
func Aggregate(results []NodeResult) Status {
	s := Status{Nodes: append([]NodeResult(nil), results...), Counts: map[string]int{}, Worst: StateOK}
	sort.Slice(s.Nodes, func(i, j int) bool { return s.Nodes[i].Node < s.Nodes[j].Node })
	for _, r := range s.Nodes {
		s.Counts[r.State]++
		if stateRank[r.State] > stateRank[s.Worst] {
			s.Worst = r.State
		}
	}
	return s
}
