package monitoring

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/certctl/certctl/pkg/inspect"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// EventNamespace is where the Events of a Node go: a Node has no namespace, and the kubelet
// and kubectl put and look for its Events in default.
const EventNamespace = metav1.NamespaceDefault

// EventComponent is the Events' source.
const EventComponent = "certctl"

// Reasons are the Events' reasons by finding code (as RKE2's CertificateExpirationWarning):
// what `kubectl get events --field-selector reason=CertificateExpired` selects on.
var Reasons = map[string]string{
	inspect.CodeExpired:              "CertificateExpired",
	inspect.CodeExpiringSoon:         "CertificateExpiring",
	inspect.CodeNotYetValid:          "CertificateNotYetValid",
	inspect.CodeNotSignedByCA:        "CertificateNotSignedByCA",
	inspect.CodeKeyMismatch:          "CertificateKeyMismatch",
	inspect.CodeCAKeyMismatch:        "CAKeyMismatch",
	inspect.CodeKeyMissing:           "CertificateKeyMissing",
	inspect.CodeKeyMalformed:         "CertificateKeyMalformed",
	inspect.CodeOutlivesCA:           "CertificateOutlivesCA",
	inspect.CodeMissing:              "CertificateMissing",
	inspect.CodeMalformed:            "CertificateMalformed",
	inspect.CodeSANMissing:           "CertificateSANMissing",
	inspect.CodeKubeletNoIPSANs:      "KubeletServingCertificateNoIPSANs",
	inspect.CodeKubeletIPMissing:     "KubeletServingCertificateIPMissing",
	inspect.CodeKubeletSelfSigned:    "KubeletServingCertificateSelfSigned",
	inspect.CodeKubeconfigStale:      "KubeconfigStale",
	inspect.CodeKubeconfigCAMismatch: "KubeconfigCAMismatch",
	inspect.CodeServedStale:          "ServedCertificateStale",
	inspect.CodeCARotationDue:        "CARotationDue",
	inspect.CodeKubeletAPIForbidden:  "KubeletAPIForbidden",
}

// ReasonOther is the reason of a finding code Reasons does not know (a newer node's).
const ReasonOther = "CertificateProblem"

// maxMessage is the longest Event message certctl writes (the API caps notes at 1 kB).
const maxMessage = 1024

// NodeEvent is one Event to have on a Node: its reason and message, and so its name.
type NodeEvent struct {
	Name    string `json:"name"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
	// Count is how often it was recorded, after Record ran (the Event's count).
	Count int32 `json:"count"`
}

// EventsFor lists the Events node's report asks for: one per warning or critical finding,
// with a message that stays the same from run to run while the finding does (an expiry is
// named by its date, never by the time left), so a later run counts up the same Event.
func EventsFor(node string, r *inspect.Report) []NodeEvent {
	var out []NodeEvent
	seen := map[string]bool{}
	for _, c := range r.Certificates {
		for _, f := range c.Findings {
			if f.Severity != inspect.SevWarning && f.Severity != inspect.SevCritical {
				continue
			}
			reason, ok := Reasons[f.Code]
			if !ok {
				reason = ReasonOther
			}
			msg := eventMessage(c, f)
			name := eventName(node, reason, msg)
			if seen[name] {
				continue
			}
			seen[name] = true
			out = append(out, NodeEvent{Name: name, Reason: reason, Message: msg})
		}
	}
	return out
}

func eventMessage(c inspect.Certificate, f inspect.Finding) string {
	var msg string
	date := ""
	if c.NotAfter != nil {
		date = c.NotAfter.UTC().Format(time.RFC3339)
	}
	switch f.Code {
	case inspect.CodeExpired:
		msg = fmt.Sprintf("%s (%s) expired on %s", c.Name, c.Path, date)
	case inspect.CodeExpiringSoon:
		msg = fmt.Sprintf("%s (%s) expires on %s", c.Name, c.Path, date)
	case inspect.CodeCARotationDue:
		msg = fmt.Sprintf("CA %s (%s) expires on %s: plan its rotation", c.Name, c.Path, date)
	case inspect.CodeNotYetValid:
		nb := ""
		if c.NotBefore != nil {
			nb = c.NotBefore.UTC().Format(time.RFC3339)
		}
		msg = fmt.Sprintf("%s (%s) is not valid until %s: check the clock of the machine that signed it", c.Name, c.Path, nb)
	default:
		msg = fmt.Sprintf("%s: %s", c.Name, f.Message)
	}
	msg = fmt.Sprintf("[%s] %s", f.Severity, msg)
	if f.Remedy != "" {
		msg += ". Fix: " + f.Remedy
	}
	if len(msg) > maxMessage {
		msg = msg[:maxMessage-3] + "..."
	}
	return msg
}

// eventName is the Event's name: the node's, then a hash of what the Event says, so the same
// finding reported again (by the next scheduled run, or cluster status) finds its Event.
func eventName(node, reason, msg string) string {
	sum := sha256.Sum256([]byte(node + "\x00" + reason + "\x00" + msg))
	suffix := ".certctl." + hex.EncodeToString(sum[:])[:16]
	if max := 253 - len(suffix); len(node) > max {
		node = node[:max]
	}
	return node + suffix
}

// RecordOptions say where the Events go.
type RecordOptions struct {
	Node   string
	Report *inspect.Report
	Now    time.Time // zero: time.Now()
}

// Record puts the Events of the report on the Node: a new Event for a finding not reported
// yet, and for one already reported its count raised and its lastTimestamp moved, as
// client-go's event correlator does within one process, here across runs (each scheduled run
// is a new process). It needs only create and patch on events in the default namespace, no
// get: the patch that moves lastTimestamp returns the count, a second one raises it (tested
// against its value, so two recorders at once never lose a count).
func Record(ctx context.Context, cs kubernetes.Interface, o RecordOptions) ([]NodeEvent, error) {
	if o.Node == "" {
		return nil, errors.New("events: no node name")
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	evs := EventsFor(o.Node, o.Report)
	var errs []error
	for i := range evs {
		n, err := record(ctx, cs, o, evs[i])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		evs[i].Count = n
	}
	return evs, errors.Join(errs...)
}

func record(ctx context.Context, cs kubernetes.Interface, o RecordOptions, e NodeEvent) (int32, error) {
	api := cs.CoreV1().Events(EventNamespace)
	now := metav1.NewTime(o.Now.Truncate(time.Second))
	ev := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{Name: e.Name, Namespace: EventNamespace,
			Labels: map[string]string{"app.kubernetes.io/name": "certctl"}},
		// The kubelet's reference to its Node: UID is the node's name (kubectl describe node
		// selects the Events by it).
		InvolvedObject: corev1.ObjectReference{Kind: "Node", APIVersion: "v1", Name: o.Node, UID: types.UID(o.Node)},
		Reason:         e.Reason,
		Message:        e.Message,
		Type:           corev1.EventTypeWarning,
		Source:         corev1.EventSource{Component: EventComponent, Host: o.Node},
		FirstTimestamp: now, LastTimestamp: now, Count: 1,
	}
	_, err := api.Create(ctx, ev, metav1.CreateOptions{})
	if err == nil {
		return 1, nil
	}
	if !apierrors.IsAlreadyExists(err) {
		return 0, fmt.Errorf("create event %s/%s (%s on node %s): %w", EventNamespace, e.Name, e.Reason, o.Node, err)
	}
	ts, _ := json.Marshal(now)
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		cur, err := api.Patch(ctx, e.Name, types.MergePatchType, []byte(`{"lastTimestamp":`+string(ts)+`}`), metav1.PatchOptions{})
		if err != nil {
			return 0, fmt.Errorf("update event %s/%s: %w", EventNamespace, e.Name, err)
		}
		next := cur.Count + 1
		patch, _ := json.Marshal([]map[string]any{
			{"op": "test", "path": "/count", "value": cur.Count},
			{"op": "replace", "path": "/count", "value": next},
		})
		if _, lastErr = api.Patch(ctx, e.Name, types.JSONPatchType, patch, metav1.PatchOptions{}); lastErr == nil {
			return next, nil
		}
		if !apierrors.IsInvalid(lastErr) && !apierrors.IsConflict(lastErr) && !apierrors.IsBadRequest(lastErr) {
			break
		}
	}
	return 0, fmt.Errorf("count event %s/%s: %w", EventNamespace, e.Name, lastErr)
}
