package lease_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/lease"
)

// apiserver is a real etcd + kube-apiserver on a tree made by the real kubeadm.
func apiserver(t *testing.T) (kubernetes.Interface, *testenv.ControlPlane) {
	t.Helper()
	tr := testenv.KubeadmTree(t, testenv.TreeOptions{})
	cp := testenv.StartControlPlane(t, testenv.ControlPlaneOptions{PKIDir: tr.Layout.PKIDir, KubeconfigDir: tr.Layout.KubeconfigDir})
	return cp.Clientset(t), cp
}

func acquire(cs kubernetes.Interface, name, id string, wait time.Duration) (*lease.Lease, error) {
	return lease.Acquire(context.Background(), cs, lease.Options{Name: name, Identity: id, Duration: 3 * time.Second, Wait: wait})
}

func holder(t *testing.T, cs kubernetes.Interface, name string) string {
	t.Helper()
	l, err := cs.CoordinationV1().Leases(lease.Namespace).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return ptr.Deref(l.Spec.HolderIdentity, "")
}

// TestLease, on a real apiserver: one holder at a time; a second run is refused with who holds
// it; a released lease is free at once; a holder that died loses it when it expires; with a
// Wait, Acquire waits while the Lease is held, takes it when it is released or expires, and
// after the Wait fails naming the holder.
func TestLease(t *testing.T) {
	cs, cp := apiserver(t)
	ctx := context.Background()

	t.Run("one holder at a time", func(t *testing.T) {
		first, err := acquire(cs, "one-at-a-time", "run-1", 0)
		if err != nil {
			t.Fatal(err)
		}
		_, err = acquire(cs, "one-at-a-time", "run-2", 0)
		var held *lease.HeldError
		if !errors.As(err, &held) || held.Holder != "run-1" {
			t.Fatalf("second holder: want a HeldError naming run-1, got %v", err)
		}
		if !strings.Contains(err.Error(), "run-1") || !strings.Contains(err.Error(), "kube-system/one-at-a-time") {
			t.Errorf("the error does not say which lease and who holds it: %v", err)
		}
		// The first holder keeps renewing: still held after more than its duration.
		deadline := time.Now().Add(4 * time.Second)
		for time.Now().Before(deadline) {
			if _, err := acquire(cs, "one-at-a-time", "run-2", 0); err == nil {
				t.Fatal("run-2 took a lease that run-1 was renewing")
			}
			time.Sleep(500 * time.Millisecond)
		}
		if err := first.Confirm(ctx); err != nil {
			t.Fatalf("run-1 lost its lease while renewing: %v", err)
		}
		if err := first.Release(ctx); err != nil {
			t.Fatal(err)
		}
		if h := holder(t, cs, "one-at-a-time"); h != "" {
			t.Fatalf("released, but the lease names %q", h)
		}
		second, err := acquire(cs, "one-at-a-time", "run-2", 0)
		if err != nil {
			t.Fatalf("after release: %v", err)
		}
		// A holder that died: stop its renewals without releasing (as a SIGKILL would), then
		// the lease is taken once it has expired, and not before.
		second.Abandon()
		if _, err := acquire(cs, "one-at-a-time", "run-3", 0); err == nil {
			t.Fatal("run-3 took the lease right after run-2 stopped renewing")
		}
		start := time.Now()
		third, err := acquire(cs, "one-at-a-time", "run-3", 10*time.Second)
		if err != nil {
			t.Fatalf("the dead holder's lease never expired: %v", err)
		}
		t.Logf("run-3 took the abandoned lease after %s", time.Since(start).Round(100*time.Millisecond))
		if err := third.Release(ctx); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("waits until released", func(t *testing.T) {
		other, err := acquire(cs, "released", "operator", 0)
		if err != nil {
			t.Fatal(err)
		}
		waiting := make(chan *lease.HeldError, 1)
		type result struct {
			l   *lease.Lease
			err error
			at  time.Time
		}
		got := make(chan result, 1)
		go func() {
			l, err := lease.Acquire(ctx, cs, lease.Options{Name: "released", Identity: "cronjob", Duration: 3 * time.Second, Wait: 30 * time.Second,
				Waiting: func(h *lease.HeldError) { waiting <- h }})
			got <- result{l, err, time.Now()}
		}()
		select {
		case h := <-waiting:
			if h.Holder != "operator" {
				t.Errorf("waiting for %q, want operator", h.Holder)
			}
		case r := <-got:
			t.Fatalf("Acquire did not wait for the holder: %v", r.err)
		case <-time.After(10 * time.Second):
			t.Fatal("Acquire neither waited nor returned")
		}
		// Held for more than its duration (the holder renews it): the waiter must not have it.
		select {
		case r := <-got:
			t.Fatalf("took a lease another holder was renewing: %v", r.err)
		case <-time.After(4 * time.Second):
		}
		released := time.Now()
		if err := other.Release(ctx); err != nil {
			t.Fatal(err)
		}
		var r result
		select {
		case r = <-got:
		case <-time.After(10 * time.Second):
			t.Fatal("the waiter did not take the released lease")
		}
		if r.err != nil {
			t.Fatal(r.err)
		}
		t.Logf("taken %s after the release", r.at.Sub(released).Round(10*time.Millisecond))
		if h := holder(t, cs, "released"); h != "cronjob" {
			t.Errorf("the lease names %q, want cronjob", h)
		}
		if err := r.l.Release(ctx); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("waits until expired", func(t *testing.T) {
		dead, err := acquire(cs, "expired", "killed", 0)
		if err != nil {
			t.Fatal(err)
		}
		dead.Abandon()
		start := time.Now()
		l, err := acquire(cs, "expired", "cronjob", 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		took := time.Since(start)
		t.Logf("taken after %s", took.Round(10*time.Millisecond))
		if took < 2*time.Second {
			t.Errorf("taken after %s: before the 3s lease of the dead holder expired", took)
		}
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("gives up after the wait, naming the holder", func(t *testing.T) {
		other, err := acquire(cs, "busy", "cluster-renew-on-cp1", 0)
		if err != nil {
			t.Fatal(err)
		}
		defer other.Release(ctx)
		start := time.Now()
		_, err = acquire(cs, "busy", "cronjob", 2*time.Second)
		took := time.Since(start)
		var held *lease.HeldError
		if !errors.As(err, &held) || held.Holder != "cluster-renew-on-cp1" {
			t.Fatalf("want a HeldError naming cluster-renew-on-cp1, got %v", err)
		}
		if took < 2*time.Second || took > 6*time.Second {
			t.Errorf("gave up after %s, want about the 2s wait", took)
		}
		if !strings.Contains(err.Error(), "cluster-renew-on-cp1") || !strings.Contains(err.Error(), "after waiting 2s") {
			t.Errorf("error: %v", err)
		}
		if h := holder(t, cs, "busy"); h != "cluster-renew-on-cp1" {
			t.Errorf("the waiter changed the holder to %q", h)
		}
	})

	// A client whose rate limiter is the bottleneck (client-go's default is 5 requests/s; a
	// busy CI machine or a slow API gets there): the answer after the wait is still who holds
	// the lease, not the limiter refusing a request that would end after the wait's deadline.
	t.Run("gives up naming the holder with a throttled client", func(t *testing.T) {
		rc, err := clientcmd.BuildConfigFromFlags(cp.URL, cp.AdminKubeconfig(t))
		if err != nil {
			t.Fatal(err)
		}
		rc.TLSClientConfig.ServerName = testenv.APIServerName
		rc.QPS, rc.Burst = 1, 1
		slow, err := kubernetes.NewForConfig(rc)
		if err != nil {
			t.Fatal(err)
		}
		other, err := acquire(cs, "throttled", "cluster-renew-on-cp2", 0)
		if err != nil {
			t.Fatal(err)
		}
		defer other.Release(ctx)
		_, err = lease.Acquire(ctx, slow, lease.Options{Name: "throttled", Identity: "cronjob", Duration: 3 * time.Second, Wait: 2500 * time.Millisecond})
		var held *lease.HeldError
		if !errors.As(err, &held) || held.Holder != "cluster-renew-on-cp2" || !strings.Contains(err.Error(), "after waiting") {
			t.Fatalf("want a HeldError naming cluster-renew-on-cp2 after the wait, got %v", err)
		}
	})
}

func TestParseRef(t *testing.T) {
	for _, tc := range []struct {
		in, ns, name, err string
	}{
		{"kube-system/certctl-renew", "kube-system", "certctl-renew", ""},
		{"ops/certctl.renew", "ops", "certctl.renew", ""},
		{"certctl-renew", "", "", "want NAMESPACE/NAME"},
		{"/certctl-renew", "", "", "want NAMESPACE/NAME"},
		{"kube-system/", "", "", "want NAMESPACE/NAME"},
		{"Kube_System/x", "", "", `namespace "Kube_System"`},
		{"kube-system/a/b", "", "", `name "a/b"`},
	} {
		t.Run(tc.in, func(t *testing.T) {
			ns, name, err := lease.ParseRef(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %v, want an error with %q", err, tc.err)
				}
				return
			}
			if err != nil || ns != tc.ns || name != tc.name {
				t.Fatalf("got %q %q %v", ns, name, err)
			}
		})
	}
}
