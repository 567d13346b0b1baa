package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// LeaseName is the Lease in kube-system that every cluster-wide certctl run, and every
// scheduled CronJob of `certctl schedule manifest`, holds while it works.
const LeaseName = "certctl-renew"

// LeaseNamespace holds the Lease.
const LeaseNamespace = "kube-system"

// HeldError says who holds the Lease.
type HeldError struct {
	Holder  string
	Renewed time.Time
	Expires time.Time
}

func (e *HeldError) Error() string {
	return fmt.Sprintf("another certctl run holds the lease %s/%s: %s (renewed %s, expires %s unless renewed); wait for it, or if that holder is gone, for the lease to expire",
		LeaseNamespace, LeaseName, e.Holder, e.Renewed.Format(time.RFC3339), e.Expires.Format(time.RFC3339))
}

// Lease is a held coordination.k8s.io Lease, renewed in the background until Release.
type Lease struct {
	cs       kubernetes.Interface
	identity string
	duration time.Duration
	stop     context.CancelFunc
	done     chan struct{}
}

// Identity names this process as a Lease holder: host, pid and a random suffix.
func Identity() string {
	h, _ := os.Hostname()
	return fmt.Sprintf("%s/%d/%s", h, os.Getpid(), randHex(3))
}

// AcquireLease takes the Lease for identity, or returns a *HeldError when someone else holds
// it and it has not expired. A holder that died loses it when duration has passed since its
// last renewal. The Lease is renewed every duration/3 until Release.
func AcquireLease(ctx context.Context, cs kubernetes.Interface, identity string, duration time.Duration) (*Lease, error) {
	if duration < 3*time.Second {
		duration = 3 * time.Second
	}
	if err := takeLease(ctx, cs, identity, duration); err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	l := &Lease{cs: cs, identity: identity, duration: duration, stop: cancel, done: make(chan struct{})}
	go l.renew(rctx)
	return l, nil
}

func takeLease(ctx context.Context, cs kubernetes.Interface, identity string, duration time.Duration) error {
	leases := cs.CoordinationV1().Leases(LeaseNamespace)
	now := metav1.NewMicroTime(time.Now())
	secs := int32(duration / time.Second)
	cur, err := leases.Get(ctx, LeaseName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = leases.Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: LeaseName, Namespace: LeaseNamespace, Labels: map[string]string{LabelName: "certctl"}},
			Spec: coordinationv1.LeaseSpec{
				HolderIdentity: &identity, LeaseDurationSeconds: &secs, AcquireTime: &now, RenewTime: &now,
			},
		}, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return takeLease(ctx, cs, identity, duration)
		}
		if err != nil {
			return fmt.Errorf("create the lease %s/%s: %w", LeaseNamespace, LeaseName, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("read the lease %s/%s: %w", LeaseNamespace, LeaseName, err)
	}
	if h := ptr.Deref(cur.Spec.HolderIdentity, ""); h != "" && h != identity {
		renewed := time.Time{}
		if cur.Spec.RenewTime != nil {
			renewed = cur.Spec.RenewTime.Time
		}
		expires := renewed.Add(time.Duration(ptr.Deref(cur.Spec.LeaseDurationSeconds, 0)) * time.Second)
		if time.Now().Before(expires) {
			return &HeldError{Holder: h, Renewed: renewed, Expires: expires}
		}
	}
	cur.Spec.HolderIdentity = &identity
	cur.Spec.LeaseDurationSeconds = &secs
	cur.Spec.AcquireTime = &now
	cur.Spec.RenewTime = &now
	// The update carries the resourceVersion read above: if another run took the lease in
	// between, this fails with a conflict instead of two holders.
	if _, err := leases.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
		if apierrors.IsConflict(err) {
			return fmt.Errorf("another certctl run took the lease %s/%s at the same moment: %w", LeaseNamespace, LeaseName, err)
		}
		return fmt.Errorf("take the lease %s/%s: %w", LeaseNamespace, LeaseName, err)
	}
	return nil
}

func (l *Lease) renew(ctx context.Context) {
	defer close(l.done)
	t := time.NewTicker(l.duration / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// A failed renewal is retried at the next tick: the API may be away for a while (the
		// apiserver the kubeconfig names is being restarted), and the Lease is still ours until
		// it expires. Confirm, before each node, is what must succeed.
		_ = l.renewOnce(ctx)
	}
}

func (l *Lease) renewOnce(ctx context.Context) error {
	leases := l.cs.CoordinationV1().Leases(LeaseNamespace)
	cur, err := leases.Get(ctx, LeaseName, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("renew the lease: %w", err)
	}
	if ptr.Deref(cur.Spec.HolderIdentity, "") != l.identity {
		return fmt.Errorf("%w: the lease %s/%s is held by %s", errTaken, LeaseNamespace, LeaseName, ptr.Deref(cur.Spec.HolderIdentity, "nobody"))
	}
	now := metav1.NewMicroTime(time.Now())
	cur.Spec.RenewTime = &now
	_, err = leases.Update(ctx, cur, metav1.UpdateOptions{})
	return err
}

var errTaken = errors.New("lost the lease")

// Release stops renewing and gives the Lease up (holder cleared), so the next run need not
// wait for it to expire.
func (l *Lease) Release(ctx context.Context) error {
	l.stop()
	<-l.done
	leases := l.cs.CoordinationV1().Leases(LeaseNamespace)
	cur, err := leases.Get(ctx, LeaseName, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("release the lease: %w", err)
	}
	if ptr.Deref(cur.Spec.HolderIdentity, "") != l.identity {
		return nil
	}
	cur.Spec.HolderIdentity = nil
	cur.Spec.RenewTime = nil
	cur.Spec.AcquireTime = nil
	if _, err := leases.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("release the lease: %w", err)
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
