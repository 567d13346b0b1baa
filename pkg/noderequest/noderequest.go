// Package noderequest is what `certctl cluster ...` asks a node Job to do: one typed,
// versioned request, which the Job's certctl runs with `certctl node run --request JSON`.
// Together with pkg/noderesult (what the node answers) it is the contract between an
// orchestrator and the node Jobs of another certctl release: a request of another version is
// refused, naming both, rather than guessed at (docs/cluster.md).
package noderequest

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Version is the requests' schema. A change that an older reader would misread gets a new one.
const Version = "certctl.io/node-request/v1"

// Op is what the node does.
type Op string

// The operations a node Job runs.
const (
	Inspect              Op = "inspect"                // the node's certificates (a record)
	Renew                Op = "renew"                  // renew certificates (and restart)
	SetServer            Op = "kubeconfig set-server"  // point the node's kubeconfigs at another endpoint
	CARotate             Op = "ca rotate"              // one phase of a CA rotation
	CAShow               Op = "ca show"                // the CAs the node holds (a record)
	CATokens             Op = "ca tokens"              // the pods' tokens re-requested with a key
	KubeletClientInstall Op = "kubelet-client install" // a kubelet client certificate installed
	KubeletServingEnable Op = "kubelet-serving enable" // a new kubelet serving certificate through the kubelet's CSR
)

// Duration is a time.Duration written as Go writes it ("3s").
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Restart says the node restarts what the operation changed, and how.
type Restart struct {
	StopGrace Duration `json:"stopGrace,omitempty"`
	LBDrain   Duration `json:"lbDrain,omitempty"`
}

// Request is one node operation.
type Request struct {
	Version string `json:"version"`
	Op      Op     `json:"op"`

	// Names: the certificates (renew) or the CAs (ca rotate, ca show).
	Names []string `json:"names,omitempty"`
	// renew
	SANs              []string `json:"sans,omitempty"`
	Days              int      `json:"days,omitempty"`
	IfExpiringWithin  string   `json:"ifExpiringWithin,omitempty"` // as the flag takes it: 30d
	SkipKubeadmConfig bool     `json:"skipKubeadmConfig,omitempty"`
	// kubeconfig set-server
	Server string `json:"server,omitempty"`
	From   string `json:"from,omitempty"`
	// ca rotate
	Phase    string `json:"phase,omitempty"`
	Rollback bool   `json:"rollback,omitempty"`
	Generate bool   `json:"generate,omitempty"`
	NewCADir string `json:"newCADir,omitempty"` // where the Job mounts the new CAs (not under --root)
	// KubeletProbe: a client certificate of the new cluster CA and its key (PEM, not under
	// --root) to check a kubelet's reload of its client CA file with (ca rotate).
	KubeletProbe string `json:"kubeletProbe,omitempty"`
	// File: the key the pods' tokens are re-requested with (ca tokens), the certificate to
	// install (kubelet-client install); not under --root.
	File string `json:"file,omitempty"`

	DryRun  bool     `json:"dryRun,omitempty"`
	Restart *Restart `json:"restart,omitempty"`
	// Where the answer goes: the typed result in the container's termination message
	// (noderesult.Write), and the record line in the log (noderesult.WriteRecord).
	Result bool `json:"result,omitempty"`
	Record bool `json:"record,omitempty"`
}

// VersionError is a request of another version: an orchestrator of another certctl release.
type VersionError struct{ Got string }

func (e *VersionError) Error() string {
	return fmt.Sprintf("a node request of version %q; this certctl reads %q: run the Jobs with an image of the orchestrator's release (--image)", e.Got, Version)
}

// Encode is r as JSON, its version set.
func Encode(r Request) (string, error) {
	r.Version = Version
	if _, err := r.Args(); err != nil {
		return "", err
	}
	b, err := json.Marshal(r)
	if err != nil {
		return "", fmt.Errorf("encode the node request: %w", err)
	}
	return string(b), nil
}

// Decode reads a request: of this version, with fields that make a command.
func Decode(data string) (*Request, error) {
	var r Request
	if err := json.Unmarshal([]byte(data), &r); err != nil {
		return nil, fmt.Errorf("the node request is not JSON of a request: %w", err)
	}
	if r.Version != Version {
		return nil, &VersionError{Got: r.Version}
	}
	if _, err := r.Args(); err != nil {
		return nil, err
	}
	return &r, nil
}

// ErrInvalid is wrapped by the error of a request that makes no command.
var ErrInvalid = errors.New("invalid node request")

// Args is the certctl command line r means, after the global flags: what the node runs, and
// what people read in the orchestrator's progress.
func (r Request) Args() ([]string, error) {
	bad := func(why string) ([]string, error) { return nil, fmt.Errorf("%w (%s): %s", ErrInvalid, r.Op, why) }
	// What goes where certctl reads an argument must not read as a flag.
	for _, v := range append(slices.Clone(r.Names), r.Server, r.File) {
		if strings.HasPrefix(v, "-") {
			return bad(fmt.Sprintf("%q reads as a flag", v))
		}
	}
	var args []string
	switch r.Op {
	case Inspect:
		args = []string{"inspect"}
	case Renew:
		if len(r.Names) == 0 {
			return bad("no certificate named")
		}
		args = append([]string{"renew"}, r.Names...)
		for _, s := range r.SANs {
			args = append(args, "--san", s)
		}
		if r.Days > 0 {
			args = append(args, "--days", strconv.Itoa(r.Days))
		}
		if r.IfExpiringWithin != "" {
			args = append(args, "--if-expiring-within", r.IfExpiringWithin)
		}
		if r.SkipKubeadmConfig {
			args = append(args, "--skip-kubeadm-config")
		}
		if !r.DryRun && r.Restart != nil {
			args = append(args, "--restart", "--yes")
		}
	case SetServer:
		if r.Server == "" {
			return bad("no server")
		}
		args = []string{"kubeconfig", "set-server", r.Server}
		if r.From != "" {
			args = append(args, "--from", r.From)
		}
	case CARotate:
		if len(r.Names) == 0 || r.Phase == "" {
			return bad("a CA and a phase are needed")
		}
		args = append([]string{"ca", "rotate"}, r.Names...)
		if r.Rollback {
			args = append(args, "--rollback")
		}
		args = append(args, "--phase", r.Phase)
		if r.Generate {
			args = append(args, "--generate")
		}
		if r.NewCADir != "" {
			args = append(args, "--new-ca-dir", r.NewCADir)
		}
		if r.KubeletProbe != "" {
			args = append(args, "--kubelet-probe", r.KubeletProbe)
		}
		if !r.DryRun && r.Restart != nil {
			args = append(args, "--restart")
		}
	case CAShow:
		args = append([]string{"ca", "show"}, r.Names...)
	case CATokens:
		if r.File == "" {
			return bad("no key")
		}
		args = []string{"ca", "tokens", "--refresh", "--key", r.File}
	case KubeletClientInstall:
		if r.File == "" {
			return bad("no certificate file")
		}
		args = []string{"kubelet-client", "install", r.File}
	case KubeletServingEnable:
		args = []string{"kubelet-serving", "enable", "--new-certificate"}
	default:
		return bad("unknown operation")
	}
	if r.DryRun {
		if !slices.Contains([]Op{Renew, SetServer, CARotate}, r.Op) {
			return bad("no dry run")
		}
		args = append(args, "--dry-run")
	}
	if r.Restart != nil && !r.DryRun && slices.Contains([]Op{Renew, CARotate}, r.Op) {
		if r.Restart.StopGrace > 0 {
			args = append(args, "--stop-grace", time.Duration(r.Restart.StopGrace).String())
		}
		if r.Restart.LBDrain > 0 {
			args = append(args, "--lb-drain", time.Duration(r.Restart.LBDrain).String())
		}
	}
	return args, nil
}
