package restart

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/certctl/certctl/pkg/kubelet"
	"github.com/certctl/certctl/pkg/pki"
)

type countingKubelet struct {
	n   int
	err error
}

func (k *countingKubelet) Restart(context.Context) error { k.n++; return k.err }

// TestChangedKubeletOnly: on a node without static pods (a worker: empty manifests dir) a
// change that names only the kubelet restarts the kubelet once and waits until it answers on
// its healthz and serving ports (real listeners on loopback); a kubelet that cannot be
// restarted, or stays unhealthy, fails naming it; nothing named restarts nothing.
func TestChangedKubeletOnly(t *testing.T) {
	healthz := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) }))
	defer healthz.Close()
	serving := httptest.NewTLSServer(http.NotFoundHandler())
	defer serving.Close()
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadURL := "http://" + dead.Addr().String() + "/healthz"
	dead.Close()
	l := pki.NewLayout(pki.LayoutOptions{Root: t.TempDir(), Home: "/root"})
	for _, tc := range []struct {
		name     string
		comps    []string
		kubelet  *countingKubelet
		healthz  string
		restarts int
		err      string
	}{
		{"kubelet", []string{Kubelet}, &countingKubelet{}, healthz.URL + "/healthz", 1, ""},
		{"nothing named", nil, &countingKubelet{}, healthz.URL + "/healthz", 0, ""},
		{"cannot restart", []string{Kubelet}, &countingKubelet{err: errors.New("systemctl: unit not found")}, healthz.URL + "/healthz", 1, "the kubelet could not be restarted: systemctl: unit not found"},
		{"not healthy after", []string{Kubelet}, &countingKubelet{}, deadURL, 1, "healthz"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			req := Request{Layout: l, Out: &out, Kubelet: tc.kubelet, Timeout: 2 * time.Second,
				KubeletWait: kubelet.WaitOptions{HealthzURL: tc.healthz, ServingAddr: strings.TrimPrefix(serving.URL, "https://"), Poll: 50 * time.Millisecond}}
			err := Changed(context.Background(), req, tc.comps)
			if tc.kubelet.n != tc.restarts {
				t.Errorf("%d restarts, want %d", tc.kubelet.n, tc.restarts)
			}
			switch {
			case tc.err == "" && err != nil:
				t.Errorf("unexpected error: %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Errorf("got %v, want an error saying %q", err, tc.err)
			case tc.err == "" && tc.restarts > 0 && !strings.Contains(out.String(), "kubelet restarted and healthy"):
				t.Errorf("output: %q", out.String())
			}
		})
	}
}
