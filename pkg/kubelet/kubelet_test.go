package kubelet_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/kubelet"
	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/sandbox"
	coordv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
)

func TestSystemdRefusesOtherRoots(t *testing.T) {
	err := kubelet.Systemd{Root: "/host"}.Restart(context.Background())
	if !errors.Is(err, kubelet.ErrNoSystemd) || !strings.Contains(err.Error(), "/host") {
		t.Fatalf("err %v", err)
	}
}

// TestWaitHealthy: a real healthz HTTP server and a real TLS listener; WaitHealthy returns
// once healthz answers 200 and the served certificate satisfies the predicate, and times out
// with what it last saw otherwise.
func TestWaitHealthy(t *testing.T) {
	servingAddr := serveKubeletTLS(t)
	var healthy atomic.Bool
	hln, _ := net.Listen("tcp", "127.0.0.1:0")
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if !healthy.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok"))
	})}
	go srv.Serve(hln)
	defer srv.Close()
	o := kubelet.WaitOptions{HealthzURL: "http://" + hln.Addr().String() + "/healthz", ServingAddr: servingAddr, Timeout: 10 * time.Second, Poll: 20 * time.Millisecond,
		Serving: func(chain []*x509.Certificate) error {
			if chain[0].VerifyHostname("10.2.1.151") != nil {
				return errors.New("does not cover the node IP")
			}
			return nil
		}}
	go func() { time.Sleep(100 * time.Millisecond); healthy.Store(true) }()
	if err := kubelet.WaitHealthy(context.Background(), o); err != nil {
		t.Fatalf("WaitHealthy: %v", err)
	}
	// Long enough for a whole check on a loaded machine (CI runs every package at once): the
	// error must name the last check that finished, not one the deadline cut.
	o.Timeout = 5 * time.Second
	o.Serving = func([]*x509.Certificate) error { return errors.New("self-signed") }
	if err := kubelet.WaitHealthy(context.Background(), o); err == nil || !strings.Contains(err.Error(), "serving certificate: self-signed") {
		t.Fatalf("want a timeout naming the last problem, got %v", err)
	}
}

// serveKubeletTLS serves a sandbox tree's apiserver pair on a loopback TLS listener (a
// kubelet's :10250 as WaitHealthy dials it) and returns its address.
func serveKubeletTLS(t *testing.T) string {
	t.Helper()
	l, err := sandbox.Create(sandbox.Options{Dir: t.TempDir(), KeyAlgorithm: pki.AlgECDSAP256})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(l.PKIDir, "apiserver.crt"), filepath.Join(l.PKIDir, "apiserver.key"))
	if err != nil {
		t.Fatal(err)
	}
	return testenv.ServeTLS(t, "127.0.0.1:0", pair, tls.NoClientCert)
}

// TestWaitNodeReadyBranches: which Ready counts (a unit test of the decision; the real
// apiserver path is exercised by pkg/kubeletclient's tests).
func TestWaitNodeReadyBranches(t *testing.T) {
	since := time.Now()
	old, fresh := metav1.NewTime(since.Add(-time.Hour)), metav1.NewTime(since.Add(time.Second))
	node := func(status corev1.ConditionStatus, hb metav1.Time) *corev1.Node {
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{
			{Type: corev1.NodeReady, Status: status, Reason: "KubeletNotReady", LastHeartbeatTime: hb}}}}
	}
	lease := func(renew time.Time) *coordv1.Lease {
		return &coordv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "n1", Namespace: corev1.NamespaceNodeLease}, Spec: coordv1.LeaseSpec{RenewTime: &metav1.MicroTime{Time: renew}}}
	}
	tests := []struct {
		name    string
		objs    []runtime.Object
		wantErr string
	}{
		{"ready with a fresh heartbeat", []runtime.Object{node(corev1.ConditionTrue, fresh)}, ""},
		{"ready from before, lease renewed since", []runtime.Object{node(corev1.ConditionTrue, old), lease(since.Add(time.Second))}, ""},
		{"ready from before only", []runtime.Object{node(corev1.ConditionTrue, old), lease(since.Add(-time.Minute))}, "has not reported since"},
		{"not ready", []runtime.Object{node(corev1.ConditionFalse, fresh)}, "is not Ready: KubeletNotReady"},
		{"no node", nil, `nodes "n1" not found`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cs := fake.NewSimpleClientset(tc.objs...)
			err := kubelet.WaitNodeReady(context.Background(), cs, kubelet.NodeReadyOptions{Node: "n1", Since: since, Timeout: 300 * time.Millisecond, Poll: 50 * time.Millisecond})
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("err %v, want %q", err, tc.wantErr)
			}
		})
	}
}
