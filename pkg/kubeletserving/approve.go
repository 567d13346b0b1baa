package kubeletserving

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	certv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
	"k8s.io/client-go/util/retry"

	"github.com/certctl/certctl/pkg/csrwait"
)

// Actions a Decision reports.
const (
	ActionApproved     = "approved"
	ActionDenied       = "denied"
	ActionLeftPending  = "left-pending"
	ActionWouldApprove = "would-approve"
	ActionWouldDeny    = "would-deny"
	ActionSkipped      = "skipped"
)

// Condition reasons certctl writes, so `kubectl get csr -o yaml` shows who decided.
const (
	ReasonApproved = "CertctlApproved"
	ReasonDenied   = "CertctlDenied"
)

// Decision is what happened to one CSR.
type Decision struct {
	CSR       string `json:"csr"`
	Requestor string `json:"requestor"`
	Action    string `json:"action"`
	Reason    string `json:"reason,omitempty"`
	// Code is the Rejection code of a refused CSR (ip-not-node-address, ...).
	Code string `json:"code,omitempty"`
}

// ApproveOptions select and treat CSRs.
type ApproveOptions struct {
	Names  []string // CSR names; empty with All: every pending kubelet-serving CSR
	All    bool
	DryRun bool // decide and report, change nothing
	NoDeny bool // leave invalid CSRs pending instead of denying them
	Policy Policy
	// Requestor, when set, restricts the run to CSRs filed by this user (system:node:<name>).
	Requestor string
}

// OtherSignerError refuses a named CSR that is not a kubelet serving request.
type OtherSignerError struct{ CSR, Signer string }

func (e *OtherSignerError) Error() string {
	return fmt.Sprintf("CSR %s is for signer %s, not %s: certctl approves or denies only kubelet serving certificates and left it untouched; decide it with kubectl certificate approve|deny %s",
		e.CSR, e.Signer, certv1.KubeletServingSignerName, e.CSR)
}

// servingSelector selects the CSRs of the kubelet serving signer.
var servingSelector = fields.OneTermEqualSelector("spec.signerName", certv1.KubeletServingSignerName).String()

// Approve decides every selected pending CSR once.
func Approve(ctx context.Context, cs kubernetes.Interface, o ApproveOptions) ([]Decision, error) {
	if len(o.Names) == 0 && !o.All && o.Requestor == "" {
		return nil, fmt.Errorf("name the CSRs to decide, or pass --all")
	}
	var csrs []certv1.CertificateSigningRequest
	if len(o.Names) > 0 {
		for _, n := range o.Names {
			c, err := cs.CertificatesV1().CertificateSigningRequests().Get(ctx, n, metav1.GetOptions{})
			if err != nil {
				return nil, fmt.Errorf("get CSR %s: %w", n, err)
			}
			csrs = append(csrs, *c)
		}
		// A named CSR of another signer is refused before anything is decided: certctl knows
		// what a valid kubelet serving request is, and nothing about the others. Denying one
		// would break whoever filed it (a client certificate, a CA of its own).
		for _, c := range csrs {
			if c.Spec.SignerName != certv1.KubeletServingSignerName {
				return nil, &OtherSignerError{CSR: c.Name, Signer: c.Spec.SignerName}
			}
		}
	} else {
		// Only the kubelet serving CSRs (a field selector the API serves): on a large cluster
		// the others (every kubelet's client certificate, ...) are most of the list.
		list, err := cs.CertificatesV1().CertificateSigningRequests().List(ctx, metav1.ListOptions{FieldSelector: servingSelector})
		if err != nil {
			return nil, fmt.Errorf("list CSRs: %w", err)
		}
		csrs = list.Items
	}
	var out []Decision
	for i := range csrs {
		d, ok, err := decideOne(ctx, cs, &csrs[i], o, len(o.Names) > 0)
		if err != nil {
			return out, err
		}
		if ok {
			out = append(out, d)
		}
	}
	return out, nil
}

// decideOne validates csr and acts. ok is false for CSRs outside the selection (another
// signer or requestor, already decided), unless explicit asks to report them.
func decideOne(ctx context.Context, cs kubernetes.Interface, csr *certv1.CertificateSigningRequest, o ApproveOptions, explicit bool) (Decision, bool, error) {
	d := Decision{CSR: csr.Name, Requestor: csr.Spec.Username}
	if !csrwait.Pending(csr) {
		d.Action, d.Reason = ActionSkipped, "already decided"
		return d, explicit, nil
	}
	if o.Requestor != "" && csr.Spec.Username != o.Requestor {
		return d, false, nil
	}
	if csr.Spec.SignerName != certv1.KubeletServingSignerName {
		return d, false, nil // never decided by certctl (a named one is refused by Approve)
	}
	var node *corev1.Node
	if name, ok := strings.CutPrefix(csr.Spec.Username, NodeUserPrefix); ok && name != "" {
		n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		switch {
		case err == nil:
			node = n
		case !apierrors.IsNotFound(err):
			return d, true, fmt.Errorf("get node %s for CSR %s: %w", name, csr.Name, err)
		}
	}
	verr := Validate(csr, node, o.Policy)
	var rej *Rejection
	if errors.As(verr, &rej) {
		d.Code = rej.Code
	}
	var typ certv1.RequestConditionType // the condition certctl sets, if any
	var reason string
	switch {
	case verr == nil && o.DryRun:
		d.Action = ActionWouldApprove
	case verr == nil:
		d.Action = ActionApproved
		d.Reason = "node identity, usages and SANs check out"
		typ, reason = certv1.CertificateApproved, ReasonApproved
	case o.DryRun:
		d.Action, d.Reason = ActionWouldDeny, verr.Error()
	case o.NoDeny:
		d.Action, d.Reason = ActionLeftPending, verr.Error()
	default:
		d.Action, d.Reason = ActionDenied, verr.Error()
		typ, reason = certv1.CertificateDenied, ReasonDenied
	}
	if typ != "" {
		if err := setCondition(ctx, cs, csr, typ, reason, "certctl: "+d.Reason); errors.Is(err, errDecidedMeanwhile) {
			d.Action, d.Reason = ActionSkipped, err.Error()
			return d, explicit, nil
		} else if err != nil {
			return d, true, err
		}
	}
	return d, true, nil
}

// errDecidedMeanwhile: the CSR was approved or denied by someone else (the in-cluster approver,
// an operator) between certctl's read of it and its own decision.
var errDecidedMeanwhile = errors.New("decided meanwhile by another approver")

// setCondition adds the condition. A conflict (the CSR changed since it was read) is resolved
// on the CSR as it is now: decided by someone else, errDecidedMeanwhile; still pending, the
// condition is added to that.
func setCondition(ctx context.Context, cs kubernetes.Interface, csr *certv1.CertificateSigningRequest, typ certv1.RequestConditionType, reason, msg string) error {
	csrs := cs.CertificatesV1().CertificateSigningRequests()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		c := csr.DeepCopy()
		c.Status.Conditions = append(c.Status.Conditions, certv1.CertificateSigningRequestCondition{
			Type: typ, Status: corev1.ConditionTrue, Reason: reason, Message: msg, LastUpdateTime: metav1.Now(),
		})
		_, err := csrs.UpdateApproval(ctx, c.Name, c, metav1.UpdateOptions{})
		if !apierrors.IsConflict(err) {
			return err
		}
		now, gerr := csrs.Get(ctx, c.Name, metav1.GetOptions{})
		if gerr != nil {
			return gerr
		}
		if !csrwait.Pending(now) {
			return errDecidedMeanwhile
		}
		csr = now
		return err
	})
	if err != nil && !errors.Is(err, errDecidedMeanwhile) {
		return fmt.Errorf("%s CSR %s: %w", strings.ToLower(string(typ)), csr.Name, err)
	}
	return err
}

// Watch decides pending kubelet-serving CSRs as they arrive until ctx is done, reporting each
// decision to report. It re-lists and re-watches when the watch closes.
func Watch(ctx context.Context, cs kubernetes.Interface, o ApproveOptions, report func(Decision)) error {
	o.All = true
	for {
		list, err := cs.CertificatesV1().CertificateSigningRequests().List(ctx, metav1.ListOptions{FieldSelector: servingSelector})
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("list CSRs: %w", err)
		}
		for i := range list.Items {
			if d, ok, err := decideOne(ctx, cs, &list.Items[i], o, false); err != nil {
				return err
			} else if ok {
				report(d)
			}
		}
		// client-go's RetryWatcher resumes from the last resource version it saw when the
		// watch closes (timeouts, an apiserver restart); it ends only when that version is
		// too old (410 Gone), and then everything is listed again.
		w, err := watchtools.NewRetryWatcher(list.ResourceVersion, &cache.ListWatch{
			WatchFunc: func(lo metav1.ListOptions) (watch.Interface, error) {
				lo.FieldSelector = servingSelector
				return cs.CertificatesV1().CertificateSigningRequests().Watch(ctx, lo)
			},
		})
		if err != nil {
			return fmt.Errorf("watch CSRs: %w", err)
		}
		if err := drain(ctx, cs, w, o, report); err != nil {
			return err
		}
		if ctx.Err() != nil {
			return nil
		}
		select { // the resource version expired: back off briefly, re-list
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

func drain(ctx context.Context, cs kubernetes.Interface, w watch.Interface, o ApproveOptions, report func(Decision)) error {
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.ResultChan():
			if !ok {
				return nil
			}
			if ev.Type != watch.Added && ev.Type != watch.Modified {
				continue
			}
			csr, isCSR := ev.Object.(*certv1.CertificateSigningRequest)
			if !isCSR {
				continue
			}
			if d, ok, err := decideOne(ctx, cs, csr, o, false); err != nil {
				if apierrors.IsConflict(err) {
					continue // decided by someone else meanwhile
				}
				return err
			} else if ok {
				report(d)
			}
		}
	}
}

// WriteDecision writes d to w as approve prints it: a tab-separated line (csr, requestor, action,
// reason) for "text", one JSON object on a line of its own for "json" (JSON Lines: a stream of
// decisions, as --watch makes them, reads line by line).
func WriteDecision(w io.Writer, format string, d Decision) error {
	switch format {
	case "text":
		_, err := fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", d.CSR, d.Requestor, d.Action, d.Reason)
		return err
	case "json":
		data, err := json.Marshal(d)
		if err != nil {
			return fmt.Errorf("encode decision on %s: %w", d.CSR, err)
		}
		_, err = fmt.Fprintf(w, "%s\n", data)
		return err
	}
	return fmt.Errorf("unknown output format %q (want text or json)", format)
}
