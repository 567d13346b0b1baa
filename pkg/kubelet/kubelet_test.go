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
	l, err := sandbox.Create(sandbox.Options{Dir: t.TempDir(), KeyAlgorithm: pki.AlgECDSAP256})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(l.PKIDir, "apiserver.crt"), filepath.Join(l.PKIDir, "apiserver.key"))
	if err != nil {
		t.Fatal(err)
	}
	servingAddr := testenv.ServeTLS(t, "127.0.0.1:0", pair, tls.NoClientCert)
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
	o.Timeout = 1500 * time.Millisecond
	o.Serving = func([]*x509.Certificate) error { return errors.New("self-signed") }
	if err := kubelet.WaitHealthy(context.Background(), o); err == nil || !strings.Contains(err.Error(), "serving certificate: self-signed") {
		t.Fatalf("want a timeout naming the last problem, got %v", err)
	}
}
