package testenv

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"
)

var (
	certctlOnce sync.Once
	certctlPath string
	certctlErr  error
	certctlOut  []byte
)

// Certctl builds the certctl binary once per test process and returns its path; tests that
// run it as a separate process (to kill it, or to run the exact command a unit runs) use it.
// The binary lives in a temporary directory that RemoveCertctl deletes (call it from TestMain).
func Certctl(t testing.TB) string {
	t.Helper()
	certctlOnce.Do(func() {
		dir, err := os.MkdirTemp("", "certctl-bin-")
		if err != nil {
			certctlErr = err
			return
		}
		certctlPath = filepath.Join(dir, "certctl")
		certctlOut, certctlErr = goBuild(certctlPath, "./cmd/certctl")
	})
	if certctlErr != nil {
		t.Fatalf("build certctl: %v\n%s", certctlErr, certctlOut)
	}
	return certctlPath
}

// goBuild builds the module's package pkg (a path relative to the module root) into out.
func goBuild(out, pkg string) ([]byte, error) {
	_, file, _, _ := runtime.Caller(0)
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = filepath.Join(filepath.Dir(file), "..", "..")
	return cmd.CombinedOutput()
}

// RemoveCertctl deletes the binaries Certctl and Named built, if any.
func RemoveCertctl() {
	if certctlPath != "" {
		os.RemoveAll(filepath.Dir(certctlPath))
	}
	if sleeperDir != "" {
		os.RemoveAll(sleeperDir)
	}
}

// ServeTLS starts a real TLS listener on addr (host:0 picks a port) presenting cert, which
// completes handshakes and nothing else: what a kubelet's :10250, an apiserver or a load
// balancer shows a client that only looks at the certificate. It is closed at cleanup; the
// returned address has the port.
func ServeTLS(t testing.TB, addr string, cert tls.Certificate, clientAuth tls.ClientAuthType) string {
	t.Helper()
	ln, err := tls.Listen("tcp", addr, &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: clientAuth})
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
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
	return ln.Addr().String()
}

// ServeKubeletAuth starts a real TLS listener on loopback that answers as a kubelet's :10250
// authenticates clients: it asks every client for a certificate without requiring one, answers
// 401 unless the certificate verifies (client auth) against the CAs roots returns for that
// request, 403 otherwise (authenticated, no rights), 500 when roots fails. It presents cert, is
// closed at cleanup, and returns its address.
func ServeKubeletAuth(t testing.TB, cert tls.Certificate, roots func() (*x509.CertPool, error)) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		pool, err := roots()
		if err != nil {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		certs := r.TLS.PeerCertificates
		if len(certs) == 0 {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if _, err := certs[0].Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusForbidden)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequestClientCert}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// SyncBuffer is a bytes.Buffer a child process writes while the test reads it.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
