package kubelet_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certctl/certctl/pkg/kubelet"
	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/sandbox"
	"k8s.io/apimachinery/pkg/util/wait"
)

// TestWaitClientCAs serves, on a loopback TLS listener, what a kubelet's :10250 does with a
// clientCAFile: a certificate request listing the client CAs it holds (RequestClientCert, the
// pool swapped per handshake as the kubelet's reloading one is). The new CA has the old one's
// subject, as a rotation makes it: only the count tells the bundle from the old CA alone.
func TestWaitClientCAs(t *testing.T) {
	l, err := sandbox.Create(sandbox.Options{Dir: t.TempDir(), KeyAlgorithm: pki.AlgECDSAP256})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(l.PKIDir, "apiserver.crt"), filepath.Join(l.PKIDir, "apiserver.key"))
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(l.PKIDir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	old, err := pki.ParseCertificates("ca.crt", data)
	if err != nil {
		t.Fatal(err)
	}
	key, err := pki.GenerateKey(pki.AlgECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	nw, err := pki.NewCA(key, old[0], time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	poolOf := func(cs ...*x509.Certificate) *x509.CertPool {
		p := x509.NewCertPool()
		for _, c := range cs {
			p.AddCert(c)
		}
		return p
	}
	var held atomic.Pointer[x509.CertPool]
	var shakes atomic.Int64
	held.Store(poolOf(old[0]))
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		shakes.Add(1)
		return &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequestClientCert, ClientCAs: held.Load()}, nil
	}})
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
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				_ = c.(*tls.Conn).Handshake()
			}()
		}
	}()
	addr := ln.Addr().String()
	ctx := context.Background()
	bundle := []*x509.Certificate{old[0], nw}

	for _, tc := range []struct {
		name  string
		holds *x509.CertPool
		want  []*x509.Certificate
		stale bool
	}{
		{"the old CA held, the old CA wanted", poolOf(old[0]), old[:1], false},
		{"the old CA held, the bundle wanted: not reloaded", poolOf(old[0]), bundle, true},
		{"the bundle held, the bundle wanted", poolOf(bundle...), bundle, false},
		{"the bundle held, the new CA alone wanted: not reloaded", poolOf(bundle...), []*x509.Certificate{nw}, true},
		{"the new CA held, the new CA wanted", poolOf(nw), []*x509.Certificate{nw}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			held.Store(tc.holds)
			err := kubelet.WaitClientCAs(ctx, addr, "ca.crt", tc.want, time.Second)
			var stale *kubelet.ClientCAsStaleError
			switch {
			case tc.stale && !errors.As(err, &stale):
				t.Fatalf("want a *ClientCAsStaleError, got %v", err)
			case tc.stale && (stale.Want != len(tc.want) || stale.Got != len(tc.holds.Subjects())):
				t.Errorf("stale: want %d, got %d; the error says %d and %d", len(tc.want), len(tc.holds.Subjects()), stale.Want, stale.Got)
			case !tc.stale && err != nil:
				t.Fatalf("want the kubelet's CAs to match, got %v", err)
			}
		})
	}

	// The pool swapped while certctl waits, as the kubelet's reload does: once the wait has
	// seen the old pool twice.
	held.Store(poolOf(old[0]))
	before := shakes.Load()
	done := make(chan error, 1)
	go func() { done <- kubelet.WaitClientCAs(ctx, addr, "ca.crt", bundle, 20*time.Second) }()
	if err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		return shakes.Load() >= before+2, nil
	}); err != nil {
		t.Fatalf("the wait made no handshakes: %v", err)
	}
	held.Store(poolOf(bundle...))
	if err := <-done; err != nil {
		t.Fatalf("the reload while waiting was not seen: %v", err)
	}

	// No certificate request: a kubelet without clientCAFile.
	plain := serveKubeletTLS(t)
	if _, err := kubelet.ClientCAs(ctx, plain); err == nil {
		t.Error("a server that asks no client certificate: want an error")
	}
}
