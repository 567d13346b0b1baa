package restart_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	etcdtransport "go.etcd.io/etcd/client/pkg/v3/transport"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/certctl/certctl/internal/testenv"
)

// peer is a TLS endpoint on loopback that answers every request with 200 and keeps the serial
// of the client certificate of the last request: a kubelet's :10250 or an aggregated API
// server, as the apiserver sees them.
type peer struct {
	mu   sync.Mutex
	last string
	port int
}

func startPeer(t *testing.T, serving tls.Certificate) *peer {
	t.Helper()
	p := &peer{}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{serving}, ClientAuth: tls.RequestClientCert})
	if err != nil {
		t.Fatal(err)
	}
	p.port = ln.Addr().(*net.TCPAddr).Port
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.TLS.PeerCertificates) > 0 {
			p.mu.Lock()
			p.last = r.TLS.PeerCertificates[0].SerialNumber.String()
			p.mu.Unlock()
		}
		// Every request on a connection of its own: what is shown is what a new connection
		// presents (one kept alive keeps the certificate of its handshake; client-go closes
		// those made with an old pair when its periodic check sees the files changed).
		w.Header().Set("Connection", "close")
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"kind":"APIResourceList","apiVersion":"v1","groupVersion":"probe.certctl.io/v1","resources":[]}`)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return p
}

func (p *peer) lastSerial() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last
}

// TestAPIServerClientCertsReload is the evidence behind Plan's verify (no restart) for the
// apiserver's client certificates, on a real kube-apiserver: after `certctl renew` of
// apiserver-kubelet-client and front-proxy-client (no restart), its next request to a kubelet
// (a pod's log) and to an aggregated API present the renewed certificates, within seconds.
func TestAPIServerClientCertsReload(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and kube-apiserver")
	}
	tr := testenv.KubeadmTree(t, testenv.TreeOptions{})
	cp := testenv.StartControlPlane(t, testenv.ControlPlaneOptions{PKIDir: tr.Layout.PKIDir, KubeconfigDir: tr.Layout.KubeconfigDir})
	cs := cp.Clientset(t)
	ctx := context.Background()
	serving, err := tls.LoadX509KeyPair(filepath.Join(tr.Layout.PKIDir, "apiserver.crt"), filepath.Join(tr.Layout.PKIDir, "apiserver.key"))
	if err != nil {
		t.Fatal(err)
	}
	kubelet, aggregated := startPeer(t, serving), startPeer(t, serving)

	// A node whose kubelet is the first peer, and a pod on it: its log is fetched from there.
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "reload-probe"}}
	if node, err = cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	node.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}}
	node.Status.DaemonEndpoints.KubeletEndpoint.Port = int32(kubelet.port)
	if _, err := cs.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	no := false
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "reload-probe"}, Spec: corev1.PodSpec{
		NodeName: "reload-probe", AutomountServiceAccountToken: &no,
		Containers: []corev1.Container{{Name: "c", Image: "none"}},
	}}
	if _, err := cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// An aggregated API served by the second peer (an ExternalName service: the aggregator
	// dials its name).
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "reload-probe"}, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "localhost"}}
	if _, err := cs.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	body, err := json.Marshal(map[string]any{
		"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
		"metadata": map[string]any{"name": "v1.probe.certctl.io"},
		"spec": map[string]any{
			"group": "probe.certctl.io", "version": "v1", "insecureSkipTLSVerify": true,
			"groupPriorityMinimum": 1000, "versionPriority": 15,
			"service": map[string]any{"namespace": "default", "name": "reload-probe", "port": aggregated.port},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := cs.RESTClient().Post().AbsPath("/apis/apiregistration.k8s.io/v1/apiservices").SetHeader("Content-Type", "application/json").Body(body).Do(ctx).Error(); err != nil {
		t.Fatal(err)
	}

	paths := map[string]struct {
		peer *peer
		path string
		file string
	}{
		"apiserver-kubelet-client": {kubelet, "/api/v1/namespaces/default/pods/reload-probe/log", "apiserver-kubelet-client.crt"},
		"front-proxy-client":       {aggregated, "/apis/probe.certctl.io/v1", "front-proxy-client.crt"},
	}
	// presents polls (a request every 200 ms, for at most 30 s) until the peer saw the client
	// certificate with the serial in the file.
	presents := func(name string) time.Duration {
		t.Helper()
		c := paths[name]
		want := serialOf(t, filepath.Join(tr.Layout.PKIDir, c.file))
		start := time.Now()
		var last error
		for time.Since(start) < 30*time.Second {
			last = request(ctx, cs, c.path)
			if c.peer.lastSerial() == want {
				return time.Since(start)
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Fatalf("%s: the apiserver never presented serial %s (the file's) within 30 s: the peer saw %q, last request: %v", name, want, c.peer.lastSerial(), last)
		return 0
	}
	for _, name := range []string{"apiserver-kubelet-client", "front-proxy-client"} {
		presents(name)
	}
	pid := cp.APIServerPID()
	out, err := exec.Command(testenv.Certctl(t), "--root", tr.Root, "renew", "apiserver-kubelet-client", "front-proxy-client", "--yes").CombinedOutput()
	if err != nil {
		t.Fatalf("certctl renew: %v\n%s", err, out)
	}
	for _, name := range []string{"apiserver-kubelet-client", "front-proxy-client"} {
		t.Logf("%s: the apiserver presented the renewed certificate %s after the renewal", name, presents(name).Round(10*time.Millisecond))
	}
	if cp.APIServerPID() != pid {
		t.Fatalf("the apiserver was restarted (pid %d, was %d)", cp.APIServerPID(), pid)
	}
}

func request(ctx context.Context, cs kubernetes.Interface, path string) error {
	return cs.CoreV1().RESTClient().Get().AbsPath(path).Do(ctx).Error()
}

func serialOf(t *testing.T, path string) string {
	t.Helper()
	return testenv.CertFile(t, path).SerialNumber.String()
}

// TestEtcdClientReloadsItsPair is the evidence for apiserver-etcd-client: the apiserver's
// storage backend makes its etcd TLS config with etcd's TLSInfo.ClientConfig
// (k8s.io/apiserver storagebackend/factory/etcd3.go), and that config reads the pair from the
// files at every handshake: a new connection after the files changed presents the new pair.
func TestEtcdClientReloadsItsPair(t *testing.T) {
	tr := testenv.KubeadmTree(t, testenv.TreeOptions{})
	crt, key := filepath.Join(tr.Layout.PKIDir, "apiserver-etcd-client.crt"), filepath.Join(tr.Layout.PKIDir, "apiserver-etcd-client.key")
	serving, err := tls.LoadX509KeyPair(filepath.Join(tr.Layout.PKIDir, "etcd/server.crt"), filepath.Join(tr.Layout.PKIDir, "etcd/server.key"))
	if err != nil {
		t.Fatal(err)
	}
	seen := make(chan string, 4)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{serving}, ClientAuth: tls.RequireAnyClientCert})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tc := c.(*tls.Conn)
			if tc.Handshake() == nil {
				seen <- tc.ConnectionState().PeerCertificates[0].SerialNumber.String()
			}
			tc.Close()
		}
	}()
	cfg, err := (etcdtransport.TLSInfo{CertFile: crt, KeyFile: key, TrustedCAFile: filepath.Join(tr.Layout.PKIDir, "etcd/ca.crt")}).ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	cfg.ServerName = "localhost"
	handshake := func() string {
		t.Helper()
		c, err := tls.Dial("tcp", ln.Addr().String(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		select {
		case s := <-seen:
			return s
		case <-time.After(10 * time.Second):
			t.Fatal("the listener saw no handshake in 10 s")
			return ""
		}
	}
	if got, want := handshake(), serialOf(t, crt); got != want {
		t.Fatalf("first handshake presented serial %s, the file has %s", got, want)
	}
	// The renewal, as certctl does it, of the files the config was made from.
	out, err := exec.Command(testenv.Certctl(t), "--root", tr.Root, "renew", "apiserver-etcd-client", "--yes").CombinedOutput()
	if err != nil {
		t.Fatalf("certctl renew: %v\n%s", err, out)
	}
	if got, want := handshake(), serialOf(t, crt); got != want {
		t.Fatalf("after the renewal a new connection presented serial %s, the file has %s", got, want)
	}
}
