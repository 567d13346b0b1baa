package kubelet_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	podresourcesv1 "k8s.io/kubelet/pkg/apis/podresources/v1"

	"github.com/certctl/certctl/pkg/kubelet"
)

// podResources is a kubelet's pod-resources API as a real gRPC server on a unix socket: it
// lists the pods of listed once the kubelet has "taken its pods back" (after syncAfter calls).
type podResources struct {
	podresourcesv1.UnimplementedPodResourcesListerServer
	listed    []*podresourcesv1.PodResources
	syncAfter int32
	calls     atomic.Int32
}

func (p *podResources) List(context.Context, *podresourcesv1.ListPodResourcesRequest) (*podresourcesv1.ListPodResourcesResponse, error) {
	if p.calls.Add(1) <= p.syncAfter {
		return &podresourcesv1.ListPodResourcesResponse{}, nil // a kubelet whose sync loop has not run
	}
	return &podresourcesv1.ListPodResourcesResponse{PodResources: p.listed}, nil
}

// serveSocket serves srv (nil: a gRPC server without the pod-resources service) on a unix
// socket in kubeletDir's pod-resources directory, as the kubelet does.
func serveSocket(t *testing.T, kubeletDir string, srv podresourcesv1.PodResourcesListerServer) string {
	t.Helper()
	socket := kubelet.PodResourcesSocket(kubeletDir)
	if err := os.MkdirAll(filepath.Dir(socket), 0o755); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	if srv != nil {
		podresourcesv1.RegisterPodResourcesListerServer(g, srv)
	}
	go g.Serve(ln)
	t.Cleanup(g.Stop)
	return socket
}

// TestWaitHealthyWaitsForTheJobsPod: in a node Job (Self set) a restarted kubelet is healthy
// once its pod-resources API lists the Job's pod; one that never does times out with a
// *NotSyncingError naming the pod; a kubelet without the API (no socket, or the service not
// served) is not asked.
func TestWaitHealthyWaitsForTheJobsPod(t *testing.T) {
	servingAddr := serveKubeletTLS(t)
	hln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) })}
	go hs.Serve(hln)
	t.Cleanup(func() { hs.Close() })
	self := kubelet.PodRef{Namespace: "kube-system", Name: "certctl-carotate-worker1-abcde-fghij"}
	other := &podresourcesv1.PodResources{Namespace: "kube-system", Name: "kube-proxy-x1"}
	mine := &podresourcesv1.PodResources{Namespace: self.Namespace, Name: self.Name}
	for _, tc := range []struct {
		name        string
		srv         *podResources // nil: a gRPC server without the service
		noSocket    bool
		wantSyncErr bool
		minCalls    int32
	}{
		{name: "listed at once", srv: &podResources{listed: []*podresourcesv1.PodResources{other, mine}}, minCalls: 1},
		{name: "listed once the sync loop runs", srv: &podResources{listed: []*podresourcesv1.PodResources{mine}, syncAfter: 3}, minCalls: 4},
		{name: "never listed", srv: &podResources{listed: []*podresourcesv1.PodResources{other}}, wantSyncErr: true},
		{name: "same name in another namespace", srv: &podResources{listed: []*podresourcesv1.PodResources{{Namespace: "default", Name: self.Name}}}, wantSyncErr: true},
		{name: "no pod-resources service", srv: nil},
		{name: "no socket", noSocket: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A short path: a unix socket's is at most 107 bytes.
			dir, err := os.MkdirTemp("", "kl")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(dir) })
			socket := kubelet.PodResourcesSocket(dir)
			if !tc.noSocket {
				var srv podresourcesv1.PodResourcesListerServer
				if tc.srv != nil {
					srv = tc.srv
				}
				socket = serveSocket(t, dir, srv)
			}
			o := kubelet.WaitOptions{HealthzURL: "http://" + hln.Addr().String() + "/healthz", ServingAddr: servingAddr,
				Timeout: 2 * time.Second, Poll: 20 * time.Millisecond, Self: &self, PodResources: socket}
			err = kubelet.WaitHealthy(context.Background(), o)
			var ns *kubelet.NotSyncingError
			switch {
			case tc.wantSyncErr && (!errors.As(err, &ns) || ns.Pod != self || ns.Socket != socket):
				t.Fatalf("want a *NotSyncingError for %s at %s, got %v", self, socket, err)
			case !tc.wantSyncErr && err != nil:
				t.Fatalf("WaitHealthy: %v", err)
			case tc.srv != nil && tc.srv.calls.Load() < tc.minCalls:
				t.Fatalf("the pod-resources API was asked %d times, want at least %d", tc.srv.calls.Load(), tc.minCalls)
			}
		})
	}
}

// TestInPod: the Job's pod comes from the downward API's variables; outside a Job (either
// missing) nothing more is awaited, and options that name a pod already keep it.
func TestInPod(t *testing.T) {
	for _, tc := range []struct {
		name, ns, pod string
		given         kubelet.WaitOptions
		want          *kubelet.PodRef
		wantSocket    string
	}{
		{name: "in a Job", ns: "kube-system", pod: "p", want: &kubelet.PodRef{Namespace: "kube-system", Name: "p"}, wantSocket: "/host/var/lib/kubelet/pod-resources/kubelet.sock"},
		{name: "no name", ns: "kube-system"},
		{name: "on the node", ns: "", pod: ""},
		{name: "given", ns: "kube-system", pod: "p", given: kubelet.WaitOptions{Self: &kubelet.PodRef{Namespace: "a", Name: "b"}, PodResources: "/s"},
			want: &kubelet.PodRef{Namespace: "a", Name: "b"}, wantSocket: "/s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(kubelet.EnvPodNamespace, tc.ns)
			t.Setenv(kubelet.EnvPodName, tc.pod)
			got := tc.given.InPod("/host/var/lib/kubelet")
			if (got.Self == nil) != (tc.want == nil) || got.Self != nil && *got.Self != *tc.want || got.PodResources != tc.wantSocket {
				t.Fatalf("InPod: %+v %q, want %+v %q", got.Self, got.PodResources, tc.want, tc.wantSocket)
			}
		})
	}
}
