package renew_test

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/lease"
)

// TestRenewLease runs `certctl renew --lease kube-system/certctl-renew` (what the CronJobs of
// `schedule manifest` run) against a real apiserver while another holder (as `cluster renew`
// would) has the Lease: the renewal waits without touching a file while the holder renews
// it, and renews once the holder releases it, or once a dead holder's Lease expires; past
// --lease-wait it fails naming the holder, nothing renewed. It gives the Lease up at the end.
func TestRenewLease(t *testing.T) {
	tr, cs := kubeadmCluster(t)
	bin := testenv.Certctl(t)
	ctx := context.Background()
	apiPath := filepath.Join(tr.Layout.PKIDir, "apiserver.crt")
	renewCmd := func(wait string) *exec.Cmd {
		return exec.Command(bin, "--root", tr.Root, "renew", "apiserver", "--yes",
			"--lease", lease.DefaultRef, "--lease-wait", wait, "--kubeconfig", "/etc/kubernetes/admin.conf")
	}
	other := func(id string) *lease.Lease {
		t.Helper()
		l, err := lease.Acquire(ctx, cs, lease.Options{Identity: id, Duration: 3 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}

	t.Run("waits for the holder to release", func(t *testing.T) {
		holder := other("cluster-renew-on-cp1")
		old := cert(t, apiPath)
		buf, exited := start(t, renewCmd("60s"))
		waitFor(t, 30*time.Second, "the renewal to say it waits", func() bool {
			return strings.Contains(buf.String(), "is held by cluster-renew-on-cp1: waiting up to 1m0s")
		})
		// Longer than the Lease's 3s: the holder renews it, the renewal keeps waiting.
		select {
		case err := <-exited:
			t.Fatalf("the renewal did not wait for the lease: %v\n%s", err, buf.String())
		case <-time.After(4 * time.Second):
		}
		if !cert(t, apiPath).Equal(old) {
			t.Fatal("the apiserver certificate changed while another run held the lease")
		}
		if err := holder.Release(ctx); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-exited:
			if err != nil {
				t.Fatalf("%v\n%s", err, buf.String())
			}
		case <-time.After(60 * time.Second):
			t.Fatalf("the renewal did not finish after the lease was released:\n%s", buf.String())
		}
		if cert(t, apiPath).Equal(old) {
			t.Errorf("the apiserver certificate was not renewed:\n%s", buf.String())
		}
		if !strings.Contains(buf.String(), "holding the lease "+lease.DefaultRef+" as ") {
			t.Errorf("the renewal does not say it held the lease:\n%s", buf.String())
		}
		if h := leaseHolder(t, cs); h != "" {
			t.Errorf("the renewal left the lease held by %q", h)
		}
	})

	t.Run("takes a dead holder's lease once it expires", func(t *testing.T) {
		other("killed-cronjob").Abandon()
		old := cert(t, apiPath)
		start := time.Now()
		out, err := renewCmd("60s").CombinedOutput()
		took := time.Since(start)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if !strings.Contains(string(out), "is held by killed-cronjob") || took < 2*time.Second {
			t.Errorf("did not wait for the dead holder's lease to expire (%s):\n%s", took, out)
		}
		if cert(t, apiPath).Equal(old) {
			t.Errorf("not renewed:\n%s", out)
		}
	})

	t.Run("fails after --lease-wait naming the holder", func(t *testing.T) {
		holder := other("cluster-renew-on-cp2")
		defer holder.Release(ctx)
		old := cert(t, apiPath)
		out, err := renewCmd("2s").CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 3 {
			t.Fatalf("want exit 3, got %v\n%s", err, out)
		}
		for _, want := range []string{"nothing renewed", "holds the lease " + lease.DefaultRef, "after waiting 2s", "cluster-renew-on-cp2"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("the error does not say %q:\n%s", want, out)
			}
		}
		if !cert(t, apiPath).Equal(old) {
			t.Error("renewed without the lease")
		}
		if h := leaseHolder(t, cs); h != "cluster-renew-on-cp2" {
			t.Errorf("the lease is held by %q", h)
		}
	})

	t.Run("bad --lease", func(t *testing.T) {
		out, err := exec.Command(bin, "--root", tr.Root, "renew", "apiserver", "--yes", "--lease", "certctl-renew").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "want NAMESPACE/NAME") {
			t.Errorf("want a clear error, got %v:\n%s", err, out)
		}
	})
}

// start starts cmd with its output in a buffer the test reads while it runs.
func start(t *testing.T, cmd *exec.Cmd) (*testenv.SyncBuffer, <-chan error) {
	t.Helper()
	buf := &testenv.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = buf, buf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	return buf, exited
}

func leaseHolder(t *testing.T, cs kubernetes.Interface) string {
	t.Helper()
	l, err := cs.CoordinationV1().Leases(lease.Namespace).Get(context.Background(), lease.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return ptr.Deref(l.Spec.HolderIdentity, "")
}
