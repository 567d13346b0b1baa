package noderotate_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/carotate"
	"github.com/certctl/certctl/pkg/kubelet"
	"github.com/certctl/certctl/pkg/noderotate"
	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/restart"
)

// standInKubelet serves what a kubelet's :10250 shows of its clientCAFile: its certificate
// request lists the CAs it holds, read from file at its start (Restart) and, when reloads, at
// every handshake (a 1.36+ kubelet watching the file).
type standInKubelet struct {
	file     string
	reloads  bool
	mu       sync.Mutex
	held     *x509.CertPool
	restarts atomic.Int32
}

func (k *standInKubelet) load() error {
	data, err := os.ReadFile(k.file)
	if err != nil {
		return err
	}
	p := x509.NewCertPool()
	p.AppendCertsFromPEM(data)
	k.mu.Lock()
	k.held = p
	k.mu.Unlock()
	return nil
}

func (k *standInKubelet) Restart(context.Context) error {
	k.restarts.Add(1)
	return k.load()
}

func (k *standInKubelet) serve(t *testing.T, pair tls.Certificate) string {
	t.Helper()
	if err := k.load(); err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		if k.reloads {
			if err := k.load(); err != nil {
				return nil, err
			}
		}
		k.mu.Lock()
		defer k.mu.Unlock()
		return &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequestClientCert, ClientCAs: k.held}, nil
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
	return ln.Addr().String()
}

// TestRunWorkerKubeletClientCA: phase trust of the cluster CA with --restart on a worker (a
// tree of the real kubeadm, its CA key removed) writes the bundle into ca.crt, the file the
// kubelet's clientCAFile names. A kubelet that reloads it is not restarted: the CAs its TLS
// server lists are the bundle's. One that does not is restarted once, after the wait, and then
// lists them. The rollback of trust puts ca.crt back the same way.
func TestRunWorkerKubeletClientCA(t *testing.T) {
	for _, tc := range []struct {
		name        string
		reloads     bool
		wantRestart bool
	}{
		{"a kubelet that reloads its clientCAFile", true, false},
		{"a kubelet that reads it at start only", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := testenv.KubeadmTree(t, testenv.TreeOptions{Node: true})
			l := tr.Layout
			newCrt, _ := newCAFiles(t, l)
			// Any serving pair: the stand-in's certificate is not what is checked.
			pair, err := tls.LoadX509KeyPair(filepath.Join(l.PKIDir, "apiserver.crt"), filepath.Join(l.PKIDir, "apiserver.key"))
			if err != nil {
				t.Fatal(err)
			}
			testenv.ToWorker(t, l)
			caCrt := filepath.Join(l.PKIDir, "ca.crt")
			k := &standInKubelet{file: caCrt, reloads: tc.reloads}
			addr := k.serve(t, pair)
			healthz := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) }))
			t.Cleanup(healthz.Close)
			var out, log bytes.Buffer
			req := restart.Request{Layout: l, Kubelet: k, KubeletWait: kubelet.WaitOptions{ServingAddr: addr, HealthzURL: healthz.URL, Timeout: 10 * time.Second}, Out: &log}
			run := func(phase string, rollback bool) {
				t.Helper()
				nr, err := noderotate.Run(context.Background(), noderotate.Options{
					Rotate: carotate.Options{Layout: l}, CAs: []string{"ca"}, Phase: phase, Rollback: rollback, NewCACert: newCrt,
					Restart: &req, Out: &out, Log: &log, ReloadTimeout: 2 * time.Second})
				if err != nil {
					t.Fatalf("%s (rollback %v): %v\n%s\n%s", phase, rollback, err, out.String(), log.String())
				}
				if nr.KubeletRestarted != tc.wantRestart {
					t.Errorf("%s (rollback %v): kubelet restarted %v, want %v\n%s", phase, rollback, nr.KubeletRestarted, tc.wantRestart, out.String())
				}
				data, err := os.ReadFile(caCrt)
				if err != nil {
					t.Fatal(err)
				}
				want, err := pki.ParseCertificates(caCrt, data)
				if err != nil {
					t.Fatal(err)
				}
				if err := kubelet.WaitClientCAs(context.Background(), addr, caCrt, want, 2*time.Second); err != nil {
					t.Errorf("%s (rollback %v): the kubelet does not hold ca.crt's CAs: %v", phase, rollback, err)
				}
			}
			run(carotate.PhaseTrust, false)
			if n := len(pki.CertificatesIn(read(t, caCrt))); n != 2 {
				t.Errorf("after trust ca.crt holds %d certificates, want old + new", n)
			}
			run("", true)
			if n := len(pki.CertificatesIn(read(t, caCrt))); n != 1 {
				t.Errorf("after the rollback ca.crt holds %d certificates, want the old CA", n)
			}
			if want := map[bool]int32{true: 2, false: 0}[tc.wantRestart]; k.restarts.Load() != want {
				t.Errorf("the kubelet was restarted %d times, want %d", k.restarts.Load(), want)
			}
		})
	}
}

// newCAFiles writes a new CA like l's cluster CA (its key beside it) into the tree and returns
// their node paths (as --new-ca-cert and --new-ca-key name them).
func newCAFiles(t *testing.T, l pki.Layout) (crt, key string) {
	t.Helper()
	old, err := pki.ParseCertificates("ca.crt", read(t, filepath.Join(l.PKIDir, "ca.crt")))
	if err != nil {
		t.Fatal(err)
	}
	k, err := pki.GenerateKey(pki.KeyAlgorithm(old[0].PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	c, err := pki.NewCA(k, old[0], time.Now().Add(-time.Minute), time.Now().Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	kp, err := pki.EncodePrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(l.Root, "given")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "new.crt"), pki.EncodeCertificates(c), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "new.key"), kp, 0o600); err != nil {
		t.Fatal(err)
	}
	return "/given/new.crt", "/given/new.key"
}

func read(t *testing.T, p string) []byte {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
