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

// standInKubelet answers as a kubelet's :10250 does for a client certificate: 401 unless it
// verifies against the client CAs it holds, 403 otherwise (no rights); it reads them from file
// at its start (Restart) and, when reloads, at every request (a 1.36+ kubelet's authenticator
// watching the file).
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
	return testenv.ServeKubeletAuth(t, pair, func() (*x509.CertPool, error) {
		if k.reloads {
			if err := k.load(); err != nil {
				return nil, err
			}
		}
		k.mu.Lock()
		defer k.mu.Unlock()
		return k.held, nil
	})
}

// TestRunWorkerKubeletClientCA: phase trust of the cluster CA with --restart on a worker (a
// tree of the real kubeadm, its CA key removed), the new CA given as cluster ca-rotate's Jobs
// get it (a directory: ca.crt, and a client certificate of the new CA, --kubelet-probe),
// writes the bundle into ca.crt, the file the kubelet's clientCAFile names. A kubelet that
// reloads it is not restarted: it authenticates the probe. One that does not is restarted once,
// after the wait, and then authenticates it. Without a probe there is nothing to check the
// reload with: the kubelet is restarted. The rollback of trust puts ca.crt back the same way
// (the probe then refused).
func TestRunWorkerKubeletClientCA(t *testing.T) {
	for _, tc := range []struct {
		name        string
		reloads     bool
		probe       bool
		wantRestart bool
	}{
		{"a kubelet that reloads its clientCAFile", true, true, false},
		{"a kubelet that reads it at start only", false, true, true},
		{"no probe given", true, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := testenv.KubeadmTree(t, testenv.TreeOptions{Node: true})
			l := tr.Layout
			dir, probePEM := newCADir(t, l, tc.probe)
			probeFile := ""
			if tc.probe {
				probeFile = filepath.Join(dir, kubelet.ProbeFile)
			}
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
			probe, _, err := kubelet.ReadProbe("probe", probePEM)
			if err != nil {
				t.Fatal(err)
			}
			var out, log bytes.Buffer
			req := restart.Request{Layout: l, Kubelet: k, KubeletWait: kubelet.WaitOptions{ServingAddr: addr, HealthzURL: healthz.URL, Timeout: 10 * time.Second}, Out: &log}
			run := func(phase string, rollback, wantAccepted bool) {
				t.Helper()
				nr, err := noderotate.Run(context.Background(), noderotate.Options{
					Rotate: carotate.Options{Layout: l}, CAs: []string{"ca"}, Phase: phase, Rollback: rollback, NewCADir: dir, KubeletProbe: probeFile,
					Restart: &req, Out: &out, Log: &log, ReloadTimeout: 2 * time.Second})
				if err != nil {
					t.Fatalf("%s (rollback %v): %v\n%s\n%s", phase, rollback, err, out.String(), log.String())
				}
				if nr.KubeletRestarted != tc.wantRestart {
					t.Errorf("%s (rollback %v): kubelet restarted %v, want %v\n%s", phase, rollback, nr.KubeletRestarted, tc.wantRestart, out.String())
				}
				if err := kubelet.WaitAuthenticates(context.Background(), addr, caCrt, probe, wantAccepted, 2*time.Second); err != nil {
					t.Errorf("%s (rollback %v): %v", phase, rollback, err)
				}
			}
			run(carotate.PhaseTrust, false, true)
			if n := len(pki.CertificatesIn(read(t, caCrt))); n != 2 {
				t.Errorf("after trust ca.crt holds %d certificates, want old + new", n)
			}
			run("", true, false)
			if n := len(pki.CertificatesIn(read(t, caCrt))); n != 1 {
				t.Errorf("after the rollback ca.crt holds %d certificates, want the old CA", n)
			}
			if want := map[bool]int32{true: 2, false: 0}[tc.wantRestart]; k.restarts.Load() != want {
				t.Errorf("the kubelet was restarted %d times, want %d", k.restarts.Load(), want)
			}
		})
	}
}

// newCADir makes a new CA like l's cluster CA and a directory (outside the tree) as a worker's
// Job of cluster ca-rotate mounts it: ca.crt, and with probe a client certificate of the new CA
// (kubelet.ProbeFile). It returns the directory and the probe (made either way).
func newCADir(t *testing.T, l pki.Layout, probe bool) (string, []byte) {
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
	probePEM, err := kubelet.NewProbe(c, k, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), pki.EncodeCertificates(c), 0o644); err != nil {
		t.Fatal(err)
	}
	if probe {
		if err := os.WriteFile(filepath.Join(dir, kubelet.ProbeFile), probePEM, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir, probePEM
}

func read(t *testing.T, p string) []byte {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
