package live_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/inspect"
	"github.com/certctl/certctl/pkg/live"
	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/sandbox"
)

// serve starts a real TLS listener on addr (host:0 picks a port) serving the pair in files.
func serve(t *testing.T, addr, certFile, keyFile string) string {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return testenv.ServeTLS(t, addr, pair, tls.NoClientCert)
}

func caPool(t *testing.T, l pki.Layout) *x509.CertPool {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(l.PKIDir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(data)
	return pool
}

func TestProbe(t *testing.T) {
	noLB := testenv.SandboxNode(t, sandbox.FaultAPIServerNoLBSAN)
	expired := testenv.SandboxNode(t, sandbox.FaultAPIServerExpired)
	other := testenv.SandboxNode(t)
	pkiFiles := func(l pki.Layout) (string, string) {
		return filepath.Join(l.PKIDir, "apiserver.crt"), filepath.Join(l.PKIDir, "apiserver.key")
	}
	closed := func() string {
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		a := ln.Addr().String()
		ln.Close()
		return a
	}()
	tests := []struct {
		name       string
		serveFrom  pki.Layout
		trust      pki.Layout
		serverName string
		addr       string
		ok         bool
		problem    string
		remedy     string
	}{
		{"verifies for a SAN it has", noLB, noLB, "kubernetes.default", "", true, "", ""},
		{"verifies for the node IP", noLB, noLB, "10.2.1.151", "", true, "", ""},
		{"case B: the load balancer IP is not covered", noLB, noLB, "10.2.1.139", "", false, "does not cover the IP address 10.2.1.139", "certctl renew apiserver --san 10.2.1.139"},
		{"a DNS name not covered", noLB, noLB, "api.example.com", "", false, "does not cover the DNS name api.example.com", "--san api.example.com"},
		{"served by another cluster's CA", other, noLB, "kubernetes", "", false, "which is not the cluster CA", "another CA"},
		{"expired", expired, expired, "kubernetes", "", false, "expired on", "certctl renew"},
		{"nothing listens", noLB, noLB, "", closed, false, "connection refused", "listens on"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addr := tc.addr
			if addr == "" {
				c, k := pkiFiles(tc.serveFrom)
				addr = serve(t, "127.0.0.1:0", c, k)
			}
			res, err := live.Probe(context.Background(), addr, tc.serverName, caPool(t, tc.trust), time.Now(), 3*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if res.OK != tc.ok {
				t.Fatalf("OK = %v, want %v (problem: %s)", res.OK, tc.ok, res.Problem)
			}
			if !strings.Contains(res.Problem, tc.problem) || !strings.Contains(res.Remedy, tc.remedy) {
				t.Fatalf("problem %q / remedy %q; want them to contain %q / %q", res.Problem, res.Remedy, tc.problem, tc.remedy)
			}
		})
	}
}

func setFlag(t *testing.T, path, old, new string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), old) {
		t.Fatalf("%s has no %q", path, old)
	}
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(string(data), old, new)), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestCheckFindsStaleServedCertificate is case D: the files were renewed, the running
// apiserver still serves the old certificate; etcd serves the file on disk.
func TestCheckFindsStaleServedCertificate(t *testing.T) {
	l := testenv.SandboxNode(t)
	old := testenv.SandboxNode(t)
	// The "running" apiserver serves a certificate that is not apiserver.crt any more.
	apiAddr := serve(t, "127.0.0.1:0", filepath.Join(old.PKIDir, "apiserver.crt"), filepath.Join(old.PKIDir, "apiserver.key"))
	// etcd requires client certificates, as kubeadm configures it; it serves the file on disk.
	etcdPair, err := tls.LoadX509KeyPair(filepath.Join(l.PKIDir, "etcd", "server.crt"), filepath.Join(l.PKIDir, "etcd", "server.key"))
	if err != nil {
		t.Fatal(err)
	}
	etcdAddr := testenv.ServeTLS(t, "127.0.0.2:0", etcdPair, tls.RequireAnyClientCert)
	_, apiPort, _ := net.SplitHostPort(apiAddr)
	setFlag(t, filepath.Join(l.ManifestsDir, "kube-apiserver.yaml"), "--secure-port=6443", "--secure-port="+apiPort)
	setFlag(t, filepath.Join(l.ManifestsDir, "etcd.yaml"), "--listen-client-urls=https://127.0.0.1:2379", fmt.Sprintf("--listen-client-urls=https://%s", etcdAddr))

	inv := pki.Load(l, pki.Default())
	r := inspect.Diagnose(inv, inspect.Options{})
	live.Check(context.Background(), inv, r, 2*time.Second)

	api := r.Get("apiserver")
	if api.Served == nil || api.Served.MatchesDisk {
		t.Fatalf("apiserver served = %+v, want a mismatch", api.Served)
	}
	if !r.HasCode("apiserver", inspect.CodeServedStale) {
		t.Fatalf("apiserver findings %+v, want %s", api.Findings, inspect.CodeServedStale)
	}
	if f := api.Findings[len(api.Findings)-1]; f.Remedy != "certctl restart apiserver" || !strings.Contains(f.Message, "apiserver.crt") {
		t.Errorf("finding %+v: want it to name apiserver.crt and remedy certctl restart apiserver", f)
	}
	etcd := r.Get("etcd-server")
	if etcd.Served == nil || !etcd.Served.MatchesDisk || r.HasCode("etcd-server", inspect.CodeServedStale) {
		t.Fatalf("etcd-server served = %+v findings %+v, want it to match the disk", etcd.Served, etcd.Findings)
	}
	if api.Status != string(inspect.SevCritical) {
		t.Errorf("apiserver status %s, want critical", api.Status)
	}
}

func TestEndpointsFromManifests(t *testing.T) {
	l := testenv.SandboxNode(t)
	setFlag(t, filepath.Join(l.ManifestsDir, "kube-apiserver.yaml"), "--secure-port=6443", "--secure-port=8443")
	setFlag(t, filepath.Join(l.ManifestsDir, "etcd.yaml"), "--listen-client-urls=https://127.0.0.1:2379,https://10.2.1.151:2379", "--listen-client-urls=https://10.2.1.151:2379,https://127.0.0.1:12379")
	got := map[string]string{}
	for _, ep := range live.Endpoints(l) {
		got[ep.Component] = ep.Addr
	}
	want := map[string]string{"apiserver": "127.0.0.1:8443", "etcd": "127.0.0.1:12379", "controller-manager": "127.0.0.1:10257", "scheduler": "127.0.0.1:10259", "kubelet": "127.0.0.1:10250"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s endpoint %q, want %q", k, got[k], v)
		}
	}
}

func splitHostPort(a string) (string, string, error) { return net.SplitHostPort(a) }
