package cluster_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/cluster"
)

// apiserver is a real etcd + kube-apiserver on a tree made by the real kubeadm.
func apiserver(t *testing.T) kubernetes.Interface {
	t.Helper()
	tr := testenv.KubeadmTree(t, testenv.TreeOptions{})
	cp := testenv.StartControlPlane(t, testenv.ControlPlaneOptions{PKIDir: tr.Layout.PKIDir, KubeconfigDir: tr.Layout.KubeconfigDir})
	return cp.Clientset(t)
}

// TestLease: one holder at a time on a real apiserver; a second run is refused with who holds
// it; a released lease is free at once; a holder that died loses it when it expires.
func TestLease(t *testing.T) {
	cs := apiserver(t)
	ctx := context.Background()

	first, err := cluster.AcquireLease(ctx, cs, "run-1", 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_, err = cluster.AcquireLease(ctx, cs, "run-2", 3*time.Second)
	var held *cluster.HeldError
	if !errors.As(err, &held) || held.Holder != "run-1" {
		t.Fatalf("second holder: want a HeldError naming run-1, got %v", err)
	}
	if !strings.Contains(err.Error(), "run-1") {
		t.Errorf("the error does not say who holds the lease: %v", err)
	}
	// The first holder keeps renewing: still held after more than its duration.
	deadline := time.Now().Add(4 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := cluster.AcquireLease(ctx, cs, "run-2", 3*time.Second); err == nil {
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
	second, err := cluster.AcquireLease(ctx, cs, "run-2", 3*time.Second)
	if err != nil {
		t.Fatalf("after release: %v", err)
	}

	// A holder that died: stop its renewals without releasing (as a SIGKILL would), then the
	// lease is taken once it has expired, and not before.
	second.Abandon()
	if _, err := cluster.AcquireLease(ctx, cs, "run-3", 3*time.Second); err == nil {
		t.Fatal("run-3 took the lease right after run-2 stopped renewing")
	}
	var third *cluster.Lease
	start := time.Now()
	for third == nil {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("the dead holder's lease never expired: %v", err)
		}
		third, err = cluster.AcquireLease(ctx, cs, "run-3", 3*time.Second)
		if third == nil {
			time.Sleep(200 * time.Millisecond)
		}
	}
	t.Logf("run-3 took the abandoned lease after %s", time.Since(start).Round(100*time.Millisecond))
	if err := third.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestJobSpecsAccepted: the status and renew Jobs are valid objects for a real apiserver
// (server-side dry run), pinned to their node, tolerating every taint, without a token.
func TestJobSpecsAccepted(t *testing.T) {
	cs := apiserver(t)
	for _, s := range []cluster.JobSpec{
		{Namespace: "kube-system", Node: "cp1", Image: "localhost/certctl:dev", Component: "status", Args: []string{"inspect", "-o", "json"}},
		{Namespace: "kube-system", Node: "a-very-long-node-name.with.dots.example.internal.cluster", Image: "localhost/certctl:dev", Component: "renew", Args: []string{"renew", "all", "--restart", "--yes"}, Privileged: true},
	} {
		job := s.Job()
		got, err := cs.BatchV1().Jobs(s.Namespace).Create(context.Background(), job, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			t.Fatalf("%s job for %s: %v", s.Component, s.Node, err)
		}
		pod := got.Spec.Template.Spec
		if pod.NodeName != s.Node || len(pod.Tolerations) != 1 || pod.Tolerations[0].Operator != "Exists" {
			t.Errorf("%s: not pinned to the node with every taint tolerated: %+v %+v", s.Component, pod.NodeName, pod.Tolerations)
		}
		if ptr.Deref(pod.AutomountServiceAccountToken, true) {
			t.Errorf("%s: the pod would mount a service-account token", s.Component)
		}
		mount := pod.Containers[0].VolumeMounts[0]
		if mount.MountPath != "/host" || mount.ReadOnly == s.Privileged {
			t.Errorf("%s: /host mount %+v (read-only must be %v)", s.Component, mount, !s.Privileged)
		}
		if pod.HostPID != s.Privileged {
			t.Errorf("%s: hostPID %v", s.Component, pod.HostPID)
		}
		if args := pod.Containers[0].Args; args[0] != "--root" || args[1] != "/host" {
			t.Errorf("%s: certctl does not work under /host: %v", s.Component, args)
		}
	}
}

func TestJSONFromLogs(t *testing.T) {
	for _, tc := range []struct {
		name, logs, want string
	}{
		{"indented", "{\n  \"a\": 1\n}\n", "{\n  \"a\": 1\n}"},
		{"stderr before", "note: recovered a staged manifest\n{\"a\":1}\n", "{\"a\":1}"},
		{"stderr after", "{\"a\":{\"b\":[1,2]}}\nwarning: something\n", "{\"a\":{\"b\":[1,2]}}"},
		{"none", "error: no kubeconfig\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := cluster.JSONFromLogs(tc.logs)
			if tc.want == "" {
				if err == nil {
					t.Fatalf("want an error, got %s", got)
				}
				return
			}
			if err != nil || string(got) != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
