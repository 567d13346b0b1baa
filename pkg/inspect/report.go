// Package inspect diagnoses an inventory: it turns what pki.Load found into a Report of
// certificates with findings (stable codes, severities, remedies) and renders it as a table,
// JSON, YAML or Prometheus text. It never reads flags and never exits.
package inspect

import (
	"time"

	"github.com/certctl/certctl/pkg/lastrun"
)

// Severity of a finding, in increasing order.
type Severity string

const (
	SevInfo     Severity = "info"
	SevWarning  Severity = "warning"
	SevCritical Severity = "critical"
)

func (s Severity) rank() int {
	switch s {
	case SevWarning:
		return 1
	case SevCritical:
		return 2
	}
	return 0
}

// Finding codes. They are a contract: scripts and alerts match on them.
const (
	CodeExpired              = "expired"
	CodeExpiringSoon         = "expiring-soon"
	CodeNotYetValid          = "not-yet-valid"
	CodeNotSignedByCA        = "not-signed-by-ca"
	CodeKeyMismatch          = "key-mismatch"
	CodeCAKeyMismatch        = "ca-key-mismatch"
	CodeKeyMissing           = "key-missing"
	CodeKeyMalformed         = "key-malformed"
	CodeOutlivesCA           = "outlives-ca"
	CodeMissing              = "missing"
	CodeMalformed            = "malformed"
	CodeCAKeyAbsent          = "ca-key-absent"
	CodeSANMissing           = "san-missing"
	CodeKubeletNoIPSANs      = "kubelet-serving-no-ip-sans"
	CodeKubeletIPMissing     = "kubelet-serving-ip-missing"
	CodeKubeletSelfSigned    = "kubelet-serving-self-signed"
	CodeKubeconfigStale      = "kubeconfig-stale"
	CodeKubeconfigCAMismatch = "kubeconfig-ca-mismatch"
	CodeServedStale          = "served-certificate-stale"
	CodeEndpointUnreachable  = "endpoint-unreachable"
	// CodeCARotationDue: a CA expires within CARotationWindow; its remedy is `certctl ca rotate`.
	CodeCARotationDue = "ca-rotation-due"
	// CodeKubeletAPIForbidden: the apiserver's kubelet client identity may not use the
	// kubelet API (kubectl logs, exec, port-forward fail with Forbidden): from kubeadm 1.37
	// (and 1.35.5, 1.36.1) apiserver-kubelet-client has no O, and its rights come from the
	// ClusterRoleBinding kubeadm:apiserver-kubelet-client, which join --control-plane does not
	// make. Found with the API (inspect --api, cluster status).
	CodeKubeletAPIForbidden = "kubelet-api-forbidden"
)

// CARotationWindow is how long before a CA's expiry inspect asks for its rotation: the
// rotation runs in three phases across every node, which takes planning, not an afternoon.
const CARotationWindow = 365 * 24 * time.Hour

// Finding is one thing wrong with an item.
type Finding struct {
	Severity Severity `json:"severity" yaml:"severity"`
	Code     string   `json:"code" yaml:"code"`
	Message  string   `json:"message" yaml:"message"`
	Remedy   string   `json:"remedy,omitempty" yaml:"remedy,omitempty"`
}

// Certificate is one row of the report. Its JSON form is a contract (docs/inspect.md).
type Certificate struct {
	Name    string `json:"name" yaml:"name"`
	Kind    string `json:"kind" yaml:"kind"`
	Path    string `json:"path" yaml:"path"`
	Subject string `json:"subject,omitempty" yaml:"subject,omitempty"`
	// CommonName and Organizations are the subject's CN and O: the user and groups the API
	// server authenticates a client certificate as.
	CommonName     string     `json:"commonName,omitempty" yaml:"commonName,omitempty"`
	Organizations  []string   `json:"organizations,omitempty" yaml:"organizations,omitempty"`
	Issuer         string     `json:"issuer,omitempty" yaml:"issuer,omitempty"`
	NotBefore      *time.Time `json:"notBefore,omitempty" yaml:"notBefore,omitempty"`
	NotAfter       *time.Time `json:"notAfter,omitempty" yaml:"notAfter,omitempty"`
	Serial         string     `json:"serial,omitempty" yaml:"serial,omitempty"`
	DNSNames       []string   `json:"dnsNames" yaml:"dnsNames"`
	IPAddresses    []string   `json:"ipAddresses" yaml:"ipAddresses"`
	EmailAddresses []string   `json:"emailAddresses,omitempty" yaml:"emailAddresses,omitempty"`
	URIs           []string   `json:"uris,omitempty" yaml:"uris,omitempty"`
	KeyAlgorithm   string     `json:"keyAlgorithm,omitempty" yaml:"keyAlgorithm,omitempty"`
	// KeyWritten is when a key pair without a certificate (sa) was written: its age, since
	// nothing expires it (kubeadm never rotates it; certctl ca rotate sa does).
	KeyWritten *time.Time `json:"keyWritten,omitempty" yaml:"keyWritten,omitempty"`
	CA         string     `json:"ca" yaml:"ca"`
	// Status is ok, info, warning, critical (the worst finding), or absent when the node
	// does not have the item by its role.
	Status   string    `json:"status" yaml:"status"`
	Findings []Finding `json:"findings" yaml:"findings"`
	// Served is what the component using this certificate serves right now (--live).
	Served *Served `json:"served,omitempty" yaml:"served,omitempty"`
}

// Served describes the certificate an endpoint presented.
type Served struct {
	Addr        string    `json:"addr" yaml:"addr"`
	Serial      string    `json:"serial" yaml:"serial"`
	NotAfter    time.Time `json:"notAfter" yaml:"notAfter"`
	Fingerprint string    `json:"sha256" yaml:"sha256"`
	MatchesDisk bool      `json:"matchesDisk" yaml:"matchesDisk"`
}

// AddFinding attaches f to the row named name and updates its status; it reports whether
// the row exists.
func (r *Report) AddFinding(name string, f Finding) bool {
	c := r.Get(name)
	if c == nil {
		return false
	}
	c.add(f)
	c.settle()
	return true
}

// Report is what inspect produces.
type Report struct {
	GeneratedAt  time.Time `json:"generatedAt" yaml:"generatedAt"`
	Root         string    `json:"root" yaml:"root"`
	ControlPlane bool      `json:"controlPlane" yaml:"controlPlane"`
	// Role is control-plane or worker, decided by what the node runs; RoleReason is the
	// evidence. On a worker only the kubelet's certificates (and the CA it trusts) are checked.
	Role         string        `json:"role" yaml:"role"`
	RoleReason   string        `json:"roleReason" yaml:"roleReason"`
	Certificates []Certificate `json:"certificates" yaml:"certificates"`
	// LastRun is the last scheduled or applied renewal, when there was one.
	LastRun *lastrun.Record `json:"lastRun,omitempty" yaml:"lastRun,omitempty"`
	// CARotations are the CA rotations whose state is on this node (`certctl ca rotate`),
	// finished (phase drop) or not, when the caller looked (inspect does).
	CARotations []CARotation `json:"caRotations,omitempty" yaml:"caRotations,omitempty"`
	// Schedule is the scheduled renewal installed on this node (systemd timer or cron), when
	// there is one and the caller looked (inspect does).
	Schedule *Schedule `json:"schedule,omitempty" yaml:"schedule,omitempty"`
}

// CARotation is one CA's rotation on this node: the last phase it completed, and when.
type CARotation struct {
	CA    string    `json:"ca" yaml:"ca"`
	Phase string    `json:"phase" yaml:"phase"`
	Time  time.Time `json:"time" yaml:"time"`
}

// State is "complete" for a rotation done through drop, "in progress" otherwise.
func (r CARotation) State() string {
	if r.Phase == "drop" {
		return "complete"
	}
	return "in progress"
}

// Schedule is the node's installed scheduled renewal.
type Schedule struct {
	Method string `json:"method" yaml:"method"` // systemd or cron
	When   string `json:"when" yaml:"when"`
	// NextRun is when the run after the last recorded one was due: the schedule's first time
	// after the later of the last run and the installation. A NextRun well in the past means
	// the schedule did not run (the machine was off, the timer disabled, cron not running).
	NextRun time.Time `json:"nextRun" yaml:"nextRun"`
}

// Worst returns the highest severity in the report, or "" when there is no finding.
func (r *Report) Worst() Severity {
	var worst Severity
	for _, c := range r.Certificates {
		for _, f := range c.Findings {
			if worst == "" || f.Severity.rank() > worst.rank() {
				worst = f.Severity
			}
		}
	}
	return worst
}

// Get returns the row named name, or nil.
func (r *Report) Get(name string) *Certificate {
	for i := range r.Certificates {
		if r.Certificates[i].Name == name {
			return &r.Certificates[i]
		}
	}
	return nil
}

// HasCode reports whether the row named name carries a finding with code.
func (r *Report) HasCode(name, code string) bool {
	c := r.Get(name)
	if c == nil {
		return false
	}
	for _, f := range c.Findings {
		if f.Code == code {
			return true
		}
	}
	return false
}

func (c *Certificate) add(f Finding) { c.Findings = append(c.Findings, f) }

// settle sets Status from the findings.
func (c *Certificate) settle() {
	if c.Status == StatusAbsent {
		return
	}
	c.Status = StatusOK
	worst := -1
	for _, f := range c.Findings {
		if r := f.Severity.rank(); r > worst {
			worst, c.Status = r, string(f.Severity)
		}
	}
}

// Row statuses besides the severities.
const (
	StatusOK     = "ok"
	StatusAbsent = "absent"
)
