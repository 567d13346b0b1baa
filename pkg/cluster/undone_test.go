package cluster

import (
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/certctl/certctl/pkg/carotate"
)

// TestUndone: the phase a --rollback without --phase undoes, from what the control-plane
// apiservers (real TLS listeners on loopback) serve. An apiserver that does not answer yet (a
// restart under the Job of a killed run) is waited for: the phase is trust only once every one
// has answered with the old CA; one serving the new CA says issue at once; one that never
// answers is an error naming it.
func TestUndone(t *testing.T) {
	const (
		old = iota
		newCA
		late  // old, from 1 s on
		never // no listener
	)
	for _, tc := range []struct {
		name    string
		serve   []int
		want    string
		wantErr string
	}{
		{"every apiserver old", []int{old, old, old}, carotate.PhaseTrust, ""},
		{"one new", []int{old, newCA, old}, carotate.PhaseIssue, ""},
		{"one restarting, then old", []int{old, late, old}, carotate.PhaseTrust, ""},
		{"one restarting, another new", []int{never, newCA, old}, carotate.PhaseIssue, ""},
		{"one never answers", []int{old, old, never}, "", "did not answer within"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			olds, news := newTestCA(t, 1), newTestCA(t, 2)
			ln, err := net.Listen("tcp", "127.0.8.250:0") // a port free on every address below
			if err != nil {
				t.Fatal(err)
			}
			port := ln.Addr().(*net.TCPAddr).Port
			ln.Close()
			ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
			var nodes []corev1.Node
			for i, s := range tc.serve {
				ip := net.IPv4(127, 0, 8, byte(i+1))
				switch s {
				case old:
					olds.serve(t, ip, port, ok)
				case newCA:
					news.serve(t, ip, port, ok)
				case late:
					time.AfterFunc(time.Second, func() { olds.serve(t, ip, port, ok) })
				}
				nodes = append(nodes, cpNode(i, ip))
			}
			got, err := undone(t.Context(), nodes, port, news.cert, 3*time.Second)
			if got != tc.want || (err == nil) != (tc.wantErr == "") || err != nil && !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("undone = %q, %v; want %q, error with %q", got, err, tc.want, tc.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), "127.0.8.3:") {
				t.Errorf("the error does not name the apiserver that never answered: %v", err)
			}
		})
	}
}
