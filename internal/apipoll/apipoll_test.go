package apipoll_test

import (
	"context"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/certctl/certctl/internal/apipoll"
)

// TestPoller: against a real TLS listener on loopback that answers 503 for a while, the
// poller counts successes and failures and records the outage as one window; with roots that
// lack the listener's CA every request fails.
func TestPoller(t *testing.T) {
	var failing atomic.Bool
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	}))
	defer srv.Close()
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	addr := strings.TrimPrefix(srv.URL, "https://")
	p := apipoll.Start(apipoll.Options{Addr: addr, Roots: roots, Interval: 10 * time.Millisecond, Max: time.Minute})
	ctx := context.Background()
	count := func(wantFail bool, n int) {
		t.Helper()
		if err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
			ws := p.Windows()
			if wantFail {
				return len(ws) == 1 && time.Since(ws[0].Start) > time.Duration(n)*10*time.Millisecond, nil
			}
			return len(ws) == 1 && ws[0].End.Before(time.Now().Add(-time.Duration(n)*10*time.Millisecond)), nil
		}); err != nil {
			t.Fatalf("windows %v: %v", p.Windows(), err)
		}
	}
	failing.Store(true)
	count(true, 5)
	failing.Store(false)
	count(false, 5)
	ok, fail, errs := p.Stop()
	ws := p.Windows()
	if ok == 0 || fail == 0 || len(errs) == 0 || !strings.Contains(errs[0], "503") {
		t.Errorf("ok %d fail %d errs %v", ok, fail, errs)
	}
	if len(ws) != 1 || ws[0].Length() <= 0 || apipoll.Longest(ws) != ws[0].Length() || !strings.Contains(apipoll.Text(ws), "-") {
		t.Errorf("windows %v", ws)
	}

	// Roots without the server's CA: every request fails the chain's verification.
	q := apipoll.Start(apipoll.Options{Addr: addr, Roots: x509.NewCertPool(), Interval: 10 * time.Millisecond})
	if err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		return len(q.Windows()) == 1, nil
	}); err != nil {
		t.Fatal(err)
	}
	if ok, fail, _ := q.Stop(); ok != 0 || fail == 0 {
		t.Errorf("a server of another CA: %d ok, %d failed", ok, fail)
	}
}

// TestOverlaps: outages of different nodes that overlap are reported; one node's own, and
// outages one after the other, are not.
func TestOverlaps(t *testing.T) {
	at := func(s int) time.Time { return time.Date(2026, 12, 3, 0, 0, s, 0, time.UTC) }
	tests := []struct {
		name string
		ws   []apipoll.Window
		want int
	}{
		{"one after the other", []apipoll.Window{{Node: "cp1", Start: at(0), End: at(5)}, {Node: "cp2", Start: at(6), End: at(9)}}, 0},
		{"overlapping", []apipoll.Window{{Node: "cp1", Start: at(0), End: at(5)}, {Node: "cp2", Start: at(4), End: at(9)}}, 1},
		{"the same node twice", []apipoll.Window{{Node: "cp1", Start: at(0), End: at(5)}, {Node: "cp1", Start: at(4), End: at(9)}}, 0},
		{"three at once", []apipoll.Window{{Node: "cp1", Start: at(0), End: at(9)}, {Node: "cp2", Start: at(1), End: at(8)}, {Node: "cp3", Start: at(2), End: at(7)}}, 3},
	}
	for _, tc := range tests {
		if got := apipoll.Overlaps(tc.ws); len(got) != tc.want {
			t.Errorf("%s: %d overlaps, want %d: %v", tc.name, len(got), tc.want, got)
		}
	}
}
