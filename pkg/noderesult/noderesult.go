// Package noderesult is the typed record a certctl command run in a node Job leaves for the
// orchestrator (`certctl cluster ...`): what it did that the orchestrator must act on, such
// as a kubelet restart it must wait out. The command writes it as JSON to the file
// --result-file names, the container's termination message file (/dev/termination-log); the
// orchestrator reads it from the pod's status (containerStatuses[].state.terminated.message),
// never from the command's log, whose wording is for people and may change.
//
// The record is versioned: an orchestrator refuses a record of another version (a Job of a
// certctl image of another release) with an error that names both, rather than guess.
package noderesult

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/certctl/certctl/pkg/pki"
)

// Version is the record's schema. A change that an older reader would misread gets a new one.
const Version = "certctl.io/node-result/v1"

// Path is the container's termination message file (the kubelet's default
// terminationMessagePath): the kubelet copies what is written there into the pod's status.
const Path = "/dev/termination-log"

// maxSize is what the kubelet keeps of a termination message (4096 bytes).
const maxSize = 4096

// KubeletOnly is the result of command, which changed nothing else than, when restarted,
// the kubelet (kubeconfig set-server, ca tokens).
func KubeletOnly(command string, restarted bool) Result {
	r := Result{Command: command, KubeletRestarted: restarted}
	if restarted {
		r.Components = []string{pki.CompKubelet}
	}
	return r
}

// Result is what a node command did that its orchestrator must know.
type Result struct {
	Version string `json:"version"`
	// Command is the certctl command that wrote it ("kubeconfig set-server", "ca rotate").
	Command string `json:"command"`
	// Components are the components the command rolled its changes out to: restarted, or
	// seen serving the new files without a restart (apiserver, etcd, controller-manager,
	// scheduler, kubelet).
	Components []string `json:"components,omitempty"`
	// KubeletRestarted: the node's kubelet was restarted (and was healthy again before the
	// command ended): the orchestrator waits until it reports to the API again.
	KubeletRestarted bool `json:"kubeletRestarted"`
}

// ErrNone is returned by Parse for an empty message: the command wrote no record.
var ErrNone = errors.New("the node's certctl left no result record")

// Write writes r (its Version set) to path, a file that must exist or be creatable: the
// termination message file in a Job, any file in a test. An empty path writes nothing.
func Write(path string, r Result) error {
	if path == "" {
		return nil
	}
	r.Version = Version
	data, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode the node result: %w", err)
	}
	if len(data) > maxSize {
		return fmt.Errorf("the node result is %d bytes, more than the %d a termination message keeps", len(data), maxSize)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("write the node result to %s: %w", path, err)
	}
	return nil
}

// Parse reads the record of a termination message. It refuses an empty message (ErrNone), a
// message that is not a record, and a record of another version.
func Parse(msg string) (*Result, error) {
	if msg == "" {
		return nil, ErrNone
	}
	var r Result
	if err := json.Unmarshal([]byte(msg), &r); err != nil {
		return nil, fmt.Errorf("the node's termination message is not a certctl result record: %w", err)
	}
	if r.Version != Version {
		return nil, fmt.Errorf("the node's certctl wrote a result record of version %q; this certctl reads %q: run the Jobs with an image of this certctl's release (--image)", r.Version, Version)
	}
	return &r, nil
}

// Touches reports whether r says the command rolled its changes out to component.
func (r *Result) Touches(component string) bool {
	return slices.Contains(r.Components, component)
}
