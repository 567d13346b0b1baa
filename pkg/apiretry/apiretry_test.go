package apiretry_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/apiretry"
)

func TestRetryable(t *testing.T) {
	dial := &net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{}}
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	reset := &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}
	for _, tc := range []struct {
		name   string
		method string
		err    error
		want   bool
	}{
		{"refused GET", http.MethodGet, refused, true},
		{"refused POST: never sent", http.MethodPost, refused, true},
		{"any dial failure of a DELETE", http.MethodDelete, fmt.Errorf("wrapped: %w", dial), true},
		{"reset GET", http.MethodGet, reset, true},
		{"reset POST: may have been applied", http.MethodPost, reset, false},
		{"EOF GET", http.MethodGet, io.EOF, true},
		{"EOF PUT", http.MethodPut, io.ErrUnexpectedEOF, false},
		{"a certificate error", http.MethodGet, errors.New("x509: certificate signed by unknown authority"), false},
		{"context canceled", http.MethodGet, context.Canceled, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := apiretry.Retryable(tc.method, tc.err); got != tc.want {
				t.Errorf("Retryable(%s, %v) = %v, want %v", tc.method, tc.err, got, tc.want)
			}
		})
	}
}

// logs records what the transport says, and signals its first line.
type logs struct {
	mu    sync.Mutex
	lines []string
	first chan struct{}
}

func newLogs() *logs { return &logs{first: make(chan struct{})} }

func (l *logs) logf(format string, a ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, a...))
	if len(l.lines) == 1 {
		close(l.first)
	}
}

func (l *logs) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}

// freeAddr is a loopback address nothing listens on (yet).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// serve answers every request on addr with status and the request's method and body, counting
// them, and /readyz with 500 for the first notReady probes, then 200 (counted in probes).
func serve(t *testing.T, addr string, hits, probes *atomic.Int32, notReady int32, status int) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/readyz" {
			if probes.Add(1) <= notReady {
				http.Error(w, "[-]informer-sync failed", http.StatusInternalServerError)
			}
			return
		}
		hits.Add(1)
		b, _ := io.ReadAll(r.Body)
		w.WriteHeader(status)
		fmt.Fprintf(w, "%s %s", r.Method, b)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
}

// TestWaitsForTheAPI: requests to an address that refuses connections are sent again once a
// server listens there and its /readyz says ready (a write's body too), said once when it
// stops and once when it is back;
// past Wait the request fails with the refusal itself; a write whose connection broke after it
// was sent is not sent again.
func TestWaitsForTheAPI(t *testing.T) {
	t.Run("server comes back", func(t *testing.T) {
		for _, tc := range []struct {
			method   string
			notReady int32 // /readyz answers 500 this many times first
		}{{http.MethodGet, 0}, {http.MethodPost, 0}, {http.MethodGet, 3}, {http.MethodPost, 2}} {
			method := tc.method
			t.Run(fmt.Sprintf("%s, not ready %d times", method, tc.notReady), func(t *testing.T) {
				addr := freeAddr(t)
				l := newLogs()
				c := &http.Client{Transport: apiretry.New(http.DefaultTransport.(*http.Transport).Clone(), apiretry.Options{Wait: time.Minute, Logf: l.logf, First: 20 * time.Millisecond, Max: 100 * time.Millisecond})}
				type result struct {
					body string
					err  error
				}
				done := make(chan result, 1)
				go func() {
					req, _ := http.NewRequest(method, "http://"+addr+"/x", strings.NewReader("payload"))
					resp, err := c.Do(req)
					if err != nil {
						done <- result{err: err}
						return
					}
					defer resp.Body.Close()
					b, err := io.ReadAll(resp.Body)
					done <- result{string(b), err}
				}()
				select {
				case <-l.first: // refused once at least: the outage is seen
				case r := <-done:
					t.Fatalf("returned before a server listened: %+v", r)
				case <-time.After(30 * time.Second):
					t.Fatal("the transport said nothing about the refused connection within 30s")
				}
				var hits, probes atomic.Int32
				serve(t, addr, &hits, &probes, tc.notReady, http.StatusOK)
				var r result
				select {
				case r = <-done:
				case <-time.After(30 * time.Second):
					t.Fatal("no answer within 30s of the server listening")
				}
				if r.err != nil || r.body != method+" payload" || hits.Load() != 1 {
					t.Fatalf("got %q, %v after %d requests served; want %q once", r.body, r.err, hits.Load(), method+" payload")
				}
				if probes.Load() != tc.notReady+1 {
					t.Errorf("/readyz asked %d times, want %d (sent only once it said ready)", probes.Load(), tc.notReady+1)
				}
				got := l.all()
				if len(got) != 2 || !strings.Contains(got[0], "does not answer") || !strings.Contains(got[1], "answers again") {
					t.Errorf("logged %q, want the outage and its end once each", got)
				}
			})
		}
	})

	// A starting apiserver answers 403 until its authorizer has synced: an answer of an
	// apiserver whose /readyz says not ready is waited out; that of a ready one is returned.
	t.Run("403 while not ready, then the API's own 403", func(t *testing.T) {
		var hits, probes atomic.Int32
		const notReady = 2
		addr := freeAddr(t)
		serve(t, addr, &hits, &probes, notReady, http.StatusForbidden)
		l := newLogs()
		c := &http.Client{Transport: apiretry.New(http.DefaultTransport.(*http.Transport).Clone(), apiretry.Options{Wait: time.Minute, Logf: l.logf, First: 10 * time.Millisecond})}
		resp, err := c.Post("http://"+addr+"/x", "text/plain", strings.NewReader("create"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		// 403 (probe: not ready), wait, probe: not ready, wait, probe: ready, 403 (probe: ready).
		if resp.StatusCode != http.StatusForbidden || hits.Load() != 2 || probes.Load() != notReady+2 {
			t.Fatalf("got %d after %d requests and %d probes; want the API's 403 after 2 requests and %d probes", resp.StatusCode, hits.Load(), probes.Load(), notReady+2)
		}
		if got := l.all(); len(got) != 2 {
			t.Errorf("logged %q, want the not-ready apiserver and its end", got)
		}
	})

	t.Run("gives up after Wait", func(t *testing.T) {
		addr := freeAddr(t)
		l := newLogs()
		c := &http.Client{Transport: apiretry.New(http.DefaultTransport.(*http.Transport).Clone(), apiretry.Options{Wait: 300 * time.Millisecond, Logf: l.logf, First: 20 * time.Millisecond})}
		start := time.Now()
		_, err := c.Get("http://" + addr + "/")
		took := time.Since(start)
		if !errors.Is(err, syscall.ECONNREFUSED) || took < 300*time.Millisecond || took > 10*time.Second {
			t.Fatalf("got %v after %s; want the refusal after about 300ms", err, took)
		}
		var gave *apiretry.GaveUpError
		if !errors.As(err, &gave) || gave.Host != addr || gave.Waited < 300*time.Millisecond {
			t.Errorf("got %#v; want a *GaveUpError for %s after 300ms or more", gave, addr)
		}
		if got := l.all(); len(got) != 2 || !strings.Contains(got[1], "giving up") {
			t.Errorf("logged %q, want the outage and the giving up", got)
		}
	})

	t.Run("context ends the wait", func(t *testing.T) {
		addr := freeAddr(t)
		c := &http.Client{Transport: apiretry.New(http.DefaultTransport.(*http.Transport).Clone(), apiretry.Options{Wait: time.Hour})}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/", nil)
		start := time.Now()
		if _, err := c.Do(req); err == nil || time.Since(start) > 10*time.Second {
			t.Fatalf("got %v after %s; want an error soon after the context's 200ms", err, time.Since(start))
		}
	})

	t.Run("a write cut after it was sent is not sent again", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		var hits atomic.Int32
		go func() {
			for {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				// Read the whole request, then drop the connection without an answer.
				if req, err := http.ReadRequest(bufio.NewReader(conn)); err == nil {
					_, _ = io.ReadAll(req.Body)
					hits.Add(1)
				}
				conn.Close()
			}
		}()
		c := &http.Client{Transport: apiretry.New(http.DefaultTransport.(*http.Transport).Clone(), apiretry.Options{Wait: time.Minute, First: 10 * time.Millisecond})}
		_, err = c.Post("http://"+ln.Addr().String()+"/", "text/plain", strings.NewReader("create"))
		if err == nil || hits.Load() != 1 {
			t.Fatalf("got %v with %d requests received; want the error, and the request sent once", err, hits.Load())
		}
	})
}

// TestRealAPIServerRestart: a client-go clientset wrapped by apiretry keeps working while the
// real kube-apiserver it talks to is stopped and started again: lists and creates sent every
// 50ms during the restart all succeed, while the same requests from an unwrapped client fail
// (the outage was real).
func TestRealAPIServerRestart(t *testing.T) {
	cp := startControlPlane(t)
	plain := cp.Clientset(t)
	rc := rest.CopyConfig(cp.RESTConfig(t))
	l := newLogs()
	apiretry.Wrap(rc, apiretry.Options{Wait: 2 * time.Minute, Logf: l.logf})
	wrapped, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	restarted := make(chan struct{})
	go func() {
		defer close(restarted)
		cp.RestartAPIServer(t)
	}()
	// Every 50ms until the restart is over: a list from the plain client, and a list then a
	// create from the wrapped one in a goroutine of its own (it may wait for the apiserver),
	// so that requests start in every moment of the restart: stopping, stopped, listening
	// but not ready.
	var (
		wg                sync.WaitGroup
		mu                sync.Mutex
		sent, plainFailed int
		wrappedFailed     []error
		tick              = time.NewTicker(50 * time.Millisecond)
	)
	defer tick.Stop()
loop:
	for i := 0; ; i++ {
		select {
		case <-restarted:
			break loop
		case <-tick.C:
		}
		sent++
		if _, err := plain.CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); err != nil {
			plainFailed++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			reqCtx, cancel := context.WithTimeout(ctx, 3*time.Minute)
			defer cancel()
			_, err := wrapped.CoreV1().Namespaces().List(reqCtx, metav1.ListOptions{})
			if err == nil {
				_, err = wrapped.CoreV1().ConfigMaps("default").Create(reqCtx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("restart-%d", i)}}, metav1.CreateOptions{})
			}
			if err != nil {
				mu.Lock()
				wrappedFailed = append(wrappedFailed, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait() // each request is bounded by its 3-minute context
	t.Logf("during the restart: %d rounds; the plain client failed %d, the wrapped one %d; it said %q", sent, plainFailed, len(wrappedFailed), l.all())
	if plainFailed == 0 {
		t.Fatal("the plain client never failed: no request fell into the apiserver's outage, nothing was tested")
	}
	if len(wrappedFailed) != 0 {
		t.Fatalf("the wrapped client failed %d times, first: %v", len(wrappedFailed), wrappedFailed[0])
	}
	cms, err := plain.CoreV1().ConfigMaps("default").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	created := 0
	for _, cm := range cms.Items {
		if strings.HasPrefix(cm.Name, "restart-") {
			created++
		}
	}
	if created != sent {
		t.Errorf("%d ConfigMaps created for %d rounds: every create exactly once", created, sent)
	}
}

// startControlPlane is a real etcd and kube-apiserver on a tree made by the real kubeadm.
func startControlPlane(t *testing.T) *testenv.ControlPlane {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: a real kube-apiserver and etcd (make test runs it)")
	}
	tr := testenv.KubeadmTree(t, testenv.TreeOptions{})
	return testenv.StartControlPlane(t, testenv.ControlPlaneOptions{PKIDir: tr.Layout.PKIDir, KubeconfigDir: tr.Layout.KubeconfigDir})
}
