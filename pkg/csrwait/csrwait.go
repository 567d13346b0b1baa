// Package csrwait files CertificateSigningRequests and waits on them through watches, with
// client-go's util/certificate/csr: a certificate certctl asks for itself (Issue), or the CSR
// another party files (a kubelet's: Refusal). A Denied or Failed CSR ends a wait at once,
// with a *RefusedError that carries the condition.
package csrwait

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	utilrand "k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	certclient "k8s.io/client-go/kubernetes/typed/certificates/v1"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
	"k8s.io/client-go/util/certificate/csr"
	"k8s.io/client-go/util/retry"
	"k8s.io/klog/v2"
)

// RefusedError is a CSR that will never be signed: Condition is its Denied or Failed
// condition (who refused it and why: Reason, Message).
type RefusedError struct {
	CSR       string
	Condition certificatesv1.CertificateSigningRequestCondition
}

func (e *RefusedError) Error() string {
	how := "denied"
	if e.Condition.Type == certificatesv1.CertificateFailed {
		how = "failed by its signer"
	}
	return fmt.Sprintf("the CSR %s was %s (%s): %s", e.CSR, how, orNone(e.Condition.Reason), orNone(e.Condition.Message))
}

func orNone(s string) string {
	if s == "" {
		return "no reason given"
	}
	return s
}

// Refused is c's Denied or Failed condition as an error, nil when it has neither.
func Refused(c *certificatesv1.CertificateSigningRequest) *RefusedError {
	for _, cond := range c.Status.Conditions {
		if (cond.Type == certificatesv1.CertificateDenied || cond.Type == certificatesv1.CertificateFailed) && cond.Status != corev1.ConditionFalse {
			return &RefusedError{CSR: c.Name, Condition: cond}
		}
	}
	return nil
}

// Pending reports whether c is still waiting for a decision: no certificate, and no Approved,
// Denied or Failed condition.
func Pending(c *certificatesv1.CertificateSigningRequest) bool {
	if len(c.Status.Certificate) > 0 {
		return false
	}
	for _, cond := range c.Status.Conditions {
		switch cond.Type {
		case certificatesv1.CertificateApproved, certificatesv1.CertificateDenied, certificatesv1.CertificateFailed:
			return false
		}
	}
	return true
}

// Request is a CSR to file.
type Request struct {
	NamePrefix string // the CSR's name is this and five random characters
	CSR        []byte // PEM "CERTIFICATE REQUEST", signed by Key
	Key        crypto.Signer
	Signer     string
	Usages     []certificatesv1.KeyUsage
	// Approval, when its Reason is set, approves the CSR with this run's credentials (Type
	// and Status are set here); otherwise someone else approves it (or denies it).
	Approval certificatesv1.CertificateSigningRequestCondition
	Timeout  time.Duration // for the certificate; default 2m
}

// ErrTimeout is wrapped by Issue's error when the certificate did not come within Timeout.
var ErrTimeout = errors.New("not signed in time")

// Issue files r, approves it when r says so, and waits for its certificate through a watch;
// the CSR is deleted at the end whatever happened. It returns the signed certificate (PEM, as
// the signer set it) and the CSR's name. A Denied or Failed CSR returns a *RefusedError at
// once; no certificate within r.Timeout returns an error wrapping ErrTimeout.
func Issue(ctx context.Context, cs kubernetes.Interface, r Request) (certPEM []byte, name string, err error) {
	if r.Timeout == 0 {
		r.Timeout = 2 * time.Minute
	}
	ctx = Quiet(ctx)
	name = r.NamePrefix + utilrand.String(5)
	name, uid, err := csr.RequestCertificateWithContext(ctx, cs, r.CSR, name, r.Signer, nil, r.Usages, r.Key)
	if err != nil {
		return nil, name, fmt.Errorf("file the CSR %s: %w", name, err)
	}
	csrs := cs.CertificatesV1().CertificateSigningRequests()
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = csrs.Delete(dctx, name, metav1.DeleteOptions{})
	}()
	if r.Approval.Reason != "" {
		if err := approve(ctx, csrs, name, r.Approval); err != nil {
			return nil, name, err
		}
	}
	// WaitForCertificate retries a refused list or watch until the timeout: ask once first,
	// so that a missing permission is said at once.
	sel := fields.OneTermEqualSelector("metadata.name", name).String()
	if _, err := csrs.List(ctx, metav1.ListOptions{FieldSelector: sel}); err != nil {
		return nil, name, fmt.Errorf("list the CSR %s (to watch it): %w", name, err)
	}
	wctx, cancel := context.WithTimeout(ctx, r.Timeout)
	defer cancel()
	certPEM, err = csr.WaitForCertificate(wctx, cs, name, uid)
	if err == nil {
		return certPEM, name, nil
	}
	// WaitForCertificate says denied or failed in words only: read the condition.
	if c, gerr := csrs.Get(ctx, name, metav1.GetOptions{}); gerr == nil {
		if refused := Refused(c); refused != nil {
			return nil, name, refused
		}
	}
	if wait.Interrupted(err) {
		if ctx.Err() != nil {
			return nil, name, fmt.Errorf("the CSR %s: %w", name, context.Cause(ctx))
		}
		return nil, name, fmt.Errorf("the CSR %s: %w within %s", name, ErrTimeout, r.Timeout)
	}
	return nil, name, fmt.Errorf("the CSR %s: %w", name, err)
}

// UntilRefused watches the CSR name until it is Denied or Failed (a *RefusedError), deleted
// (nil) or ctx ends (ctx's error): run beside another wait to end it at once on a refusal.
func UntilRefused(ctx context.Context, cs kubernetes.Interface, name string) error {
	sel := fields.OneTermEqualSelector("metadata.name", name).String()
	var refused *RefusedError
	_, err := watchtools.UntilWithSync(Quiet(ctx), ListWatch(cs, sel), &certificatesv1.CertificateSigningRequest{}, nil, func(ev watch.Event) (bool, error) {
		if ev.Type == watch.Deleted {
			return true, nil
		}
		if c, ok := ev.Object.(*certificatesv1.CertificateSigningRequest); ok {
			refused = Refused(c)
		}
		return refused != nil, nil
	})
	if refused != nil {
		return refused
	}
	if err != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// ListWatch lists and watches the CSRs that fieldSelector selects ("" for all).
func ListWatch(cs kubernetes.Interface, fieldSelector string) cache.ListerWatcher {
	csrs := cs.CertificatesV1().CertificateSigningRequests()
	// Told whether cs supports watch-list semantics (a fake clientset does not), as
	// client-go's own WaitForCertificate does.
	return cache.ToListWatcherWithWatchListSemantics(&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = fieldSelector
			return csrs.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = fieldSelector
			return csrs.Watch(ctx, o)
		},
	}, cs)
}

// Quiet is ctx with client-go's contextual logging discarded: a watch reconnecting (the
// apiserver restarting under a certctl run) is logged by client-go to stderr otherwise; what
// matters of it is in the error the wait returns.
func Quiet(ctx context.Context) context.Context { return klog.NewContext(ctx, logr.Discard()) }

// approve adds the Approved condition a to the CSR name. The CSR may change between the read
// and the update (the signer or another controller writing its status: seen on the lab as
// "the object has been modified" right after the CSR was filed): on a conflict it is read again
// and the approval applied to what it is now, unless it is no longer Pending (then the wait
// that follows reports what it is).
func approve(ctx context.Context, csrs certclient.CertificateSigningRequestInterface, name string, a certificatesv1.CertificateSigningRequestCondition) error {
	a.Type, a.Status = certificatesv1.CertificateApproved, corev1.ConditionTrue
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		c, err := csrs.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("read the CSR %s: %w", name, err)
		}
		if !Pending(c) {
			return nil
		}
		c.Status.Conditions = append(c.Status.Conditions, a)
		_, err = csrs.UpdateApproval(ctx, name, c, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("approve the CSR %s: %w", name, err)
	}
	return nil
}
