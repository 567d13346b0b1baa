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

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/kubelet"
	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/sandbox"
	"k8s.io/apimachinery/pkg/util/wait"
)

// TestWaitAuthenticates: a stand-in for the kubelet's :10250 (it asks every client for a
// certificate, verifies it against the client CAs it holds now, 401 when it does not verify,
// 403 for an authenticated client it does not authorize) and a client certificate of a new CA
// with the old one's subject, as a rotation makes it.
func TestWaitAuthenticates(t *testing.T) {
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
	old := pki.CertificatesIn(data)[0]
	caKey, err := pki.GenerateKey(pki.AlgECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	nw, err := pki.NewCA(caKey, old, time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	probePEM, err := kubelet.NewProbe(nw, caKey, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	probe, leaf, err := kubelet.ReadProbe("probe.pem", probePEM)
	if err != nil {
		t.Fatal(err)
	}
	if leaf.CheckSignatureFrom(nw) != nil || leaf.Subject.CommonName != kubelet.ProbeCN {
		t.Fatalf("the probe is not a client of the new CA: %s", leaf.Subject)
	}

	poolOf := func(cs ...*x509.Certificate) *x509.CertPool {
		p := x509.NewCertPool()
		for _, c := range cs {
			p.AddCert(c)
		}
		return p
	}
	var held atomic.Pointer[x509.CertPool]
	var asked atomic.Int64
	addr := testenv.ServeKubeletAuth(t, pair, func() (*x509.CertPool, error) {
		asked.Add(1)
		return held.Load(), nil
	})
	ctx := context.Background()

	for _, tc := range []struct {
		name  string
		holds *x509.CertPool
		want  bool // the file holds the probe's CA
		stale bool
	}{
		{"the old CA held, the old CA wanted", poolOf(old), false, false},
		{"the old CA held, the bundle wanted: not reloaded", poolOf(old), true, true},
		{"the bundle held, the bundle wanted", poolOf(old, nw), true, false},
		{"the bundle held, the old CA alone wanted (a rollback): not reloaded", poolOf(old, nw), false, true},
		{"the new CA held, the new CA wanted", poolOf(nw), true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			held.Store(tc.holds)
			err := kubelet.WaitAuthenticates(ctx, addr, "ca.crt", probe, tc.want, time.Second)
			var stale *kubelet.ClientCAStaleError
			switch {
			case tc.stale && (!errors.As(err, &stale) || stale.Want != tc.want):
				t.Fatalf("want a *ClientCAStaleError (want %v), got %v", tc.want, err)
			case !tc.stale && err != nil:
				t.Fatalf("want the kubelet to match the file, got %v", err)
			}
		})
	}

	// The CAs swapped while certctl waits, as the kubelet's reload does: once it has asked twice.
	held.Store(poolOf(old))
	before := asked.Load()
	done := make(chan error, 1)
	go func() { done <- kubelet.WaitAuthenticates(ctx, addr, "ca.crt", probe, true, 20*time.Second) }()
	if err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		return asked.Load() >= before+2, nil
	}); err != nil {
		t.Fatalf("the wait asked nothing: %v", err)
	}
	held.Store(poolOf(old, nw))
	if err := <-done; err != nil {
		t.Fatalf("the reload while waiting was not seen: %v", err)
	}
}
