// Package lease is the coordination.k8s.io Lease that keeps cluster-wide certctl work apart:
// `certctl cluster renew` holds it for its whole rollout, and each scheduled CronJob of
// `certctl schedule manifest` (certctl renew --lease) holds it while it renews its node. A
// holder renews it in the background; a holder that died loses it when it expires.
package lease

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
)

// The Lease every cluster-wide certctl run and every scheduled CronJob take.
const (
	Namespace = "kube-system"
	Name      = "certctl-renew"
)

// DefaultRef is Namespace/Name, as --lease takes it.
const DefaultRef = Namespace + "/" + Name

// DefaultDuration is how long a holder that stopped renewing keeps the Lease.
const DefaultDuration = 60 * time.Second

// Options say which Lease to take, as whom, and how long to wait for it.
type Options struct {
	Namespace string // default Namespace
	Name      string // default Name
	Identity  string // default Identity()
	// Duration: a holder that died loses the Lease this long after its last renewal
	// (default DefaultDuration, at least 3s). The holder renews every Duration/3.
	Duration time.Duration
	// Wait: how long to poll while another holder has the Lease; 0 fails at once with a
	// *HeldError.
	Wait time.Duration
	// Waiting is called once, when the Lease is held by another and Acquire starts to wait.
	Waiting func(*HeldError)
	// Proc is this machine's /proc (default "/proc"): the holder's process is recorded on
	// the Lease from it, and a holder on this machine proven dead there loses the Lease at
	// once (ProcessAnnotation).
	Proc string
}

func (o *Options) defaults() {
	if o.Namespace == "" {
		o.Namespace = Namespace
	}
	if o.Name == "" {
		o.Name = Name
	}
	if o.Identity == "" {
		o.Identity = Identity()
	}
	if o.Duration <= 0 {
		o.Duration = DefaultDuration
	}
	if o.Proc == "" {
		o.Proc = "/proc"
	}
	if o.Duration < 3*time.Second {
		o.Duration = 3 * time.Second
	}
}

// ParseRef reads NAMESPACE/NAME (the --lease flag).
func ParseRef(s string) (namespace, name string, err error) {
	ns, n, ok := strings.Cut(s, "/")
	if !ok || ns == "" || n == "" {
		return "", "", fmt.Errorf("--lease %q: want NAMESPACE/NAME, such as %s", s, DefaultRef)
	}
	if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
		return "", "", fmt.Errorf("--lease %q: namespace %q: %s", s, ns, strings.Join(errs, "; "))
	}
	if errs := validation.IsDNS1123Subdomain(n); len(errs) > 0 {
		return "", "", fmt.Errorf("--lease %q: name %q: %s", s, n, strings.Join(errs, "; "))
	}
	return ns, n, nil
}

// HeldError says who holds the Lease.
type HeldError struct {
	Namespace, Name string
	Holder          string
	Renewed         time.Time
	Expires         time.Time
	Waited          time.Duration // how long Acquire waited for it (0: it did not wait)
}

func (e *HeldError) Error() string {
	waited := ""
	if e.Waited > 0 {
		waited = fmt.Sprintf(" after waiting %s", e.Waited.Round(time.Second))
	}
	return fmt.Sprintf("another certctl run holds the lease %s/%s%s: %s (renewed %s, expires %s unless renewed); wait for it, or if that holder is gone, for the lease to expire (a holder on this machine whose process is gone loses it at once)",
		e.Namespace, e.Name, waited, e.Holder, e.Renewed.Format(time.RFC3339), e.Expires.Format(time.RFC3339))
}

// Lease is a held coordination.k8s.io Lease, renewed in the background until Release.
type Lease struct {
	cs   kubernetes.Interface
	o    Options
	stop context.CancelFunc
	done chan struct{}
	// TookOver is the holder this run took the Lease from before it expired, proven dead
	// (its process gone from this machine); "" otherwise.
	TookOver string
}

// Identity names this process as a Lease holder: host, pid and a random suffix.
func Identity() string {
	h, _ := os.Hostname()
	return fmt.Sprintf("%s/%d/%s", h, os.Getpid(), randHex(3))
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Acquire takes the Lease, or returns a *HeldError when someone else holds it and it has not
// expired. With o.Wait it polls until the Lease is released or expires, and returns the
// *HeldError (naming the holder) when o.Wait has passed. The Lease is renewed every
// Duration/3 until Release.
func Acquire(ctx context.Context, cs kubernetes.Interface, o Options) (*Lease, error) {
	o.defaults()
	tookOver, err := take(ctx, cs, o)
	var held *HeldError
	if o.Wait > 0 && err != nil && retryable(err) {
		if o.Waiting != nil && errors.As(err, &held) {
			o.Waiting(held)
		}
		start := time.Now()
		last := err
		perr := wait.PollUntilContextTimeout(ctx, pollInterval(o.Duration), o.Wait, false, func(pctx context.Context) (bool, error) {
			// Each attempt on the caller's context, not the wait's: near the wait's end the
			// client's rate limiter would otherwise refuse the request ("would exceed context
			// deadline") and that, not the holder, would be the answer.
			actx, cancel := context.WithTimeout(ctx, attemptTimeout)
			defer cancel()
			var err error
			tookOver, err = take(actx, cs, o)
			switch {
			case err == nil:
				return true, nil
			case ctx.Err() != nil || pctx.Err() != nil:
				return false, nil // the wait ran out during the request: keep what kept it before
			case retryable(err):
				last = err
				return false, nil
			}
			return false, err
		})
		err = perr
		if wait.Interrupted(perr) && ctx.Err() == nil {
			err = last // what kept it: the holder, or the API's last answer
		}
		if errors.As(err, &held) {
			held.Waited = time.Since(start)
		}
	}
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	l := &Lease{cs: cs, o: o, stop: cancel, done: make(chan struct{}), TookOver: tookOver}
	go l.renew(rctx)
	return l, nil
}

// attemptTimeout bounds one attempt to take the Lease while waiting for it.
const attemptTimeout = 10 * time.Second

// pollInterval: often enough that a released Lease is taken soon, seldom enough to be no load.
func pollInterval(d time.Duration) time.Duration {
	return min(max(d/10, 200*time.Millisecond), 2*time.Second)
}

// retryable errors are waited out: the Lease held by another or taken at the same moment, or
// the API server the client reaches restarting (a control-plane node renewing) or busy.
func retryable(err error) bool {
	var held *HeldError
	if errors.As(err, &held) || errors.Is(err, errRace) {
		return true
	}
	return transient(err)
}

var errRace = errors.New("another certctl run took the lease at the same moment")

// take takes the Lease when it is free, expired, or held by a process of this machine that is
// proven dead; tookOver names that dead holder.
func take(ctx context.Context, cs kubernetes.Interface, o Options) (tookOver string, err error) {
	leases := cs.CoordinationV1().Leases(o.Namespace)
	now := metav1.NewMicroTime(time.Now())
	secs := int32(o.Duration / time.Second)
	fs := procFS(o.Proc)
	cur, err := leases.Get(ctx, o.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		l := &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: o.Name, Namespace: o.Namespace, Labels: map[string]string{"app.kubernetes.io/name": "certctl"}},
			Spec: coordinationv1.LeaseSpec{
				HolderIdentity: &o.Identity, LeaseDurationSeconds: &secs, AcquireTime: &now, RenewTime: &now,
			},
		}
		recordProcess(&l.ObjectMeta, fs)
		_, err = leases.Create(ctx, l, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return take(ctx, cs, o)
		}
		if apierrors.IsForbidden(err) {
			return "", fmt.Errorf("the lease %s/%s does not exist and this identity may not create it (the schedule manifest creates it: apply it again): %w", o.Namespace, o.Name, err)
		}
		if err != nil {
			return "", fmt.Errorf("create the lease %s/%s: %w", o.Namespace, o.Name, err)
		}
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read the lease %s/%s: %w", o.Namespace, o.Name, err)
	}
	if h := ptr.Deref(cur.Spec.HolderIdentity, ""); h != "" && h != o.Identity {
		renewed := time.Time{}
		if cur.Spec.RenewTime != nil {
			renewed = cur.Spec.RenewTime.Time
		}
		expires := renewed.Add(time.Duration(ptr.Deref(cur.Spec.LeaseDurationSeconds, 0)) * time.Second)
		if time.Now().Before(expires) {
			p, ok := ParseProcess(cur.Annotations[ProcessAnnotation])
			if !ok || !fs.gone(p) {
				return "", &HeldError{Namespace: o.Namespace, Name: o.Name, Holder: h, Renewed: renewed, Expires: expires}
			}
			tookOver = h
		}
	}
	cur.Spec.HolderIdentity = &o.Identity
	cur.Spec.LeaseDurationSeconds = &secs
	cur.Spec.AcquireTime = &now
	cur.Spec.RenewTime = &now
	recordProcess(&cur.ObjectMeta, fs)
	// The update carries the resourceVersion read above: if another run took the lease in
	// between, this fails with a conflict instead of two holders.
	if _, err := leases.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
		if apierrors.IsConflict(err) {
			return "", fmt.Errorf("%w (%s/%s): %w", errRace, o.Namespace, o.Name, err)
		}
		return "", fmt.Errorf("take the lease %s/%s: %w", o.Namespace, o.Name, err)
	}
	return tookOver, nil
}

// recordProcess puts this process on the Lease (ProcessAnnotation), or takes a previous
// holder's record off when /proc cannot say who this is.
func recordProcess(m *metav1.ObjectMeta, fs procFS) {
	self, ok := fs.self()
	if !ok {
		delete(m.Annotations, ProcessAnnotation)
		return
	}
	if m.Annotations == nil {
		m.Annotations = map[string]string{}
	}
	m.Annotations[ProcessAnnotation] = self.String()
}

func (l *Lease) renew(ctx context.Context) {
	defer close(l.done)
	t := time.NewTicker(l.o.Duration / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// A failed renewal is retried at the next tick: the API may be away for a while (the
		// apiserver the client talks to is being restarted), and the Lease is still ours until
		// it expires. Confirm, before work that must not overlap, is what must succeed.
		_ = l.renewOnce(ctx)
	}
}

func (l *Lease) renewOnce(ctx context.Context) error {
	leases := l.cs.CoordinationV1().Leases(l.o.Namespace)
	// A conflict is our own background renewal updating it meanwhile, a request cut by an
	// apiserver restarting behind the balancer is the rollout itself: read again and retry.
	// Only another holder ends it.
	return retry.OnError(retry.DefaultBackoff, func(err error) bool {
		return !errors.Is(err, errTaken) && (apierrors.IsConflict(err) || transient(err))
	}, func() error {
		cur, err := leases.Get(ctx, l.o.Name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("renew the lease: %w", err)
		}
		if ptr.Deref(cur.Spec.HolderIdentity, "") != l.o.Identity {
			return fmt.Errorf("%w: the lease %s/%s is held by %s", errTaken, l.o.Namespace, l.o.Name, ptr.Deref(cur.Spec.HolderIdentity, "nobody"))
		}
		now := metav1.NewMicroTime(time.Now())
		cur.Spec.RenewTime = &now
		_, err = leases.Update(ctx, cur, metav1.UpdateOptions{})
		return err
	})
}

// transient: no answer from the API, or one that says to try again.
func transient(err error) bool {
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return true
	}
	return apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err) || apierrors.IsTooManyRequests(err) ||
		apierrors.IsServiceUnavailable(err) || apierrors.IsInternalError(err)
}

var errTaken = errors.New("lost the lease")

// Identity is the holder name this Lease was taken as.
func (l *Lease) Identity() string { return l.o.Identity }

// String is NAMESPACE/NAME.
func (l *Lease) String() string { return l.o.Namespace + "/" + l.o.Name }

// ReleaseTimeout bounds Release: an API that does not answer must not hold the command (the
// Lease then expires after its duration, as a killed holder's does).
const ReleaseTimeout = 10 * time.Second

// Release stops renewing and gives the Lease up (holder cleared), so the next run need not
// wait for it to expire. It gives up after ReleaseTimeout.
func (l *Lease) Release(ctx context.Context) error {
	l.stop()
	<-l.done
	ctx, cancel := context.WithTimeout(ctx, ReleaseTimeout)
	defer cancel()
	leases := l.cs.CoordinationV1().Leases(l.o.Namespace)
	cur, err := leases.Get(ctx, l.o.Name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("release the lease %s: %w", l, err)
	}
	if ptr.Deref(cur.Spec.HolderIdentity, "") != l.o.Identity {
		return nil
	}
	cur.Spec.HolderIdentity = nil
	cur.Spec.RenewTime = nil
	cur.Spec.AcquireTime = nil
	if _, err := leases.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("release the lease %s: %w", l, err)
	}
	return nil
}

// Abandon stops renewing without giving the Lease up, as a killed holder would: the Lease
// expires after its duration.
func (l *Lease) Abandon() {
	l.stop()
	<-l.done
}

// Confirm renews the Lease now and fails when another holder has it: called before work that
// must not overlap with another run (the next node). The update is conditional on the Lease's
// resourceVersion, so a holder that took it in between makes this fail, never both succeed.
func (l *Lease) Confirm(ctx context.Context) error {
	return l.renewOnce(ctx)
}

// Held says which Lease is held as whom, and from which dead holder it was taken over, for
// the run's log: "kube-system/certctl-renew as host/123/ab12 (taken over from host/99/cd34:
// its process is gone from this machine)".
func (l *Lease) Held() string {
	s := l.String() + " as " + l.o.Identity
	if l.TookOver != "" {
		s += " (taken over from " + l.TookOver + ": its process is gone from this machine)"
	}
	return s
}
