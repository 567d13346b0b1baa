package cluster

import (
	"context"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// HeldError says another holder has the lease.
type HeldError struct {
	Name   string
	Holder string
	Until  time.Time // when its lease runs out unless renewed
}

func (e *HeldError) Error() string {
	return fmt.Sprintf("lease %s is held by %s until %s: another certctl is working on the cluster; try again later",
		e.Name, e.Holder, e.Until.UTC().Format(time.RFC3339))
}

// Lease is a held coordination.k8s.io Lease: mutual exclusion between certctl runs on
// different machines (two operators renewing, a scheduled run during a manual one).
type Lease struct {
	lock     *resourcelock.LeaseLock
	name     string
	holder   string
	duration time.Duration
}

// AcquireLease takes the Lease namespace/name for holder for d, once (no waiting): it
// creates the Lease, or takes it over when it is free or its holder let it expire. Every
// write carries the resourceVersion that was read, so of two certctl runs racing for it
// exactly one wins (client-go's resourcelock.LeaseLock, as leader election uses). A lease
// held by another is a *HeldError.
func AcquireLease(ctx context.Context, cs kubernetes.Interface, namespace, name, holder string, d time.Duration) (*Lease, error) {
	if holder == "" || d < time.Second {
		return nil, fmt.Errorf("lease %s: a holder identity and a duration of at least 1s are required", name)
	}
	l := &Lease{
		lock: &resourcelock.LeaseLock{
			LeaseMeta:  metav1.ObjectMeta{Namespace: namespace, Name: name},
			Client:     cs.CoordinationV1(),
			LockConfig: resourcelock.ResourceLockConfig{Identity: holder},
		},
		name: namespace + "/" + name, holder: holder, duration: d,
	}
	now := metav1.NewTime(time.Now())
	rec := resourcelock.LeaderElectionRecord{
		HolderIdentity: holder, LeaseDurationSeconds: int(d / time.Second),
		AcquireTime: now, RenewTime: now,
	}
	old, _, err := l.lock.Get(ctx)
	switch {
	case apierrors.IsNotFound(err):
		if err := l.lock.Create(ctx, rec); err != nil {
			if apierrors.IsAlreadyExists(err) {
				return nil, l.heldNow(ctx)
			}
			return nil, fmt.Errorf("create lease %s: %w", l.name, err)
		}
		return l, nil
	case err != nil:
		return nil, fmt.Errorf("read lease %s: %w", l.name, err)
	}
	if held := heldBy(old, holder); held != nil {
		held.Name = l.name
		return nil, held
	}
	rec.LeaderTransitions = old.LeaderTransitions
	if old.HolderIdentity != holder {
		rec.LeaderTransitions++
	}
	if err := l.lock.Update(ctx, rec); err != nil {
		if apierrors.IsConflict(err) {
			return nil, l.heldNow(ctx)
		}
		return nil, fmt.Errorf("take lease %s: %w", l.name, err)
	}
	return l, nil
}

// heldBy returns a HeldError when rec is held by someone other than holder and not expired.
func heldBy(rec *resourcelock.LeaderElectionRecord, holder string) *HeldError {
	if rec.HolderIdentity == "" || rec.HolderIdentity == holder {
		return nil
	}
	until := rec.RenewTime.Add(time.Duration(rec.LeaseDurationSeconds) * time.Second)
	if time.Now().After(until) {
		return nil
	}
	return &HeldError{Holder: rec.HolderIdentity, Until: until}
}

// heldNow reports who won a race for the lease.
func (l *Lease) heldNow(ctx context.Context) error {
	rec, _, err := l.lock.Get(ctx)
	if err != nil {
		return fmt.Errorf("lease %s: lost a race for it, then: %w", l.name, err)
	}
	h := heldBy(rec, l.holder)
	if h == nil {
		h = &HeldError{Holder: rec.HolderIdentity, Until: rec.RenewTime.Add(time.Duration(rec.LeaseDurationSeconds) * time.Second)}
	}
	h.Name = l.name
	return h
}

// Release gives the lease up (empty holder, as leader election's ReleaseOnCancel does), if
// this holder still has it.
func (l *Lease) Release(ctx context.Context) error {
	rec, _, err := l.lock.Get(ctx)
	if err != nil {
		return fmt.Errorf("read lease %s: %w", l.name, err)
	}
	if rec.HolderIdentity != l.holder {
		return nil
	}
	now := metav1.NewTime(time.Now())
	if err := l.lock.Update(ctx, resourcelock.LeaderElectionRecord{
		LeaseDurationSeconds: 1, RenewTime: now, AcquireTime: now, LeaderTransitions: rec.LeaderTransitions,
	}); err != nil {
		return fmt.Errorf("release lease %s: %w", l.name, err)
	}
	return nil
}
