package kubeletserving_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/kubeletserving"
	corev1 "k8s.io/api/core/v1"
)

// TestStatusRealListeners: Nodes in a real apiserver point at real TLS listeners on distinct
// loopback addresses, some serving CA-signed certificates with IP SANs, some the kubelet's
// self-signed one without.
func TestStatusRealListeners(t *testing.T) {
	c := newCluster(t)
	port := testenv.FreePort(t, "127.0.3.1")
	at := func(ip string) string { return fmt.Sprintf("%s:%d", ip, port) }
	good, goodKey := caSignedServing(t, c.ca, "good", []string{"127.0.3.1"}, "good")
	fakeKubelet(t, at("127.0.3.1"), good, goodKey)
	self, selfKey := kubeletSelfSigned(t, "selfsigned")
	fakeKubelet(t, at("127.0.3.2"), self, selfKey)
	wrong, wrongKey := caSignedServing(t, c.ca, "wrongip", []string{"127.0.9.9"}, "wrongip")
	fakeKubelet(t, at("127.0.3.3"), wrong, wrongKey)
	partial, partialKey := caSignedServing(t, c.ca, "partial", []string{"127.0.3.5"}) // lacks its hostname
	fakeKubelet(t, at("127.0.3.5"), partial, partialKey)
	for _, n := range []struct{ name, ip string }{{"good", "127.0.3.1"}, {"selfsigned", "127.0.3.2"}, {"wrongip", "127.0.3.3"}, {"down", "127.0.3.4"}, {"partial", "127.0.3.5"}} {
		c.addNode(t, n.name, addr(corev1.NodeInternalIP, n.ip), addr(corev1.NodeHostName, n.name))
	}
	// A pending serving CSR shows up in the status.
	c.file(t, c.nodeClient(t, "good"), "pending-one", csrSpec{cn: "system:node:good", orgs: []string{"system:nodes"}, ips: []string{"127.0.3.1"}})

	st, err := kubeletserving.GetStatus(context.Background(), c.admin, kubeletserving.StatusOptions{Port: port, Roots: rootsOf(c), Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]kubeletserving.NodeStatus{}
	for _, n := range st.Nodes {
		byName[n.Node] = n
	}
	tests := []struct {
		node      string
		caSigned  bool
		fails     bool
		problem   string
		uncovered string
	}{
		{"good", true, false, "", ""},
		{"selfsigned", false, true, "doesn't contain any IP SANs", "127.0.3.2"},
		{"wrongip", true, true, "does not cover the InternalIP 127.0.3.3", "127.0.3.3"},
		{"down", false, true, "no TLS answer", ""},
		{"partial", true, false, "", "partial"},
	}
	for _, tc := range tests {
		n, ok := byName[tc.node]
		if !ok {
			t.Fatalf("node %s missing from status", tc.node)
		}
		if n.CASigned != tc.caSigned || n.MetricsServerFails != tc.fails || !strings.Contains(n.Problem, tc.problem) || strings.Join(n.Uncovered, ",") != tc.uncovered {
			t.Errorf("%s: %+v; want caSigned %v, fails %v, problem %q, uncovered %q", tc.node, n, tc.caSigned, tc.fails, tc.problem, tc.uncovered)
		}
	}
	if len(st.Pending) != 1 || st.Pending[0].Name != "pending-one" || st.Pending[0].Requestor != "system:node:good" {
		t.Errorf("pending CSRs %+v", st.Pending)
	}
	var table, js bytes.Buffer
	if err := kubeletserving.RenderStatus(&table, st, "table"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table.String(), "fails on 3 node(s)") || !strings.Contains(table.String(), "1 pending kubelet-serving CSR") {
		t.Errorf("table:\n%s", table.String())
	}
	if err := kubeletserving.RenderStatus(&js, st, "json"); err != nil {
		t.Fatal(err)
	}
	var back kubeletserving.Status
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || len(back.Nodes) != 5 {
		t.Errorf("json round trip: %v %d", err, len(back.Nodes))
	}
}
