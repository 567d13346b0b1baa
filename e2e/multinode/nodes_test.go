package multinode

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/certctl/certctl/pkg/inspect"
	"github.com/certctl/certctl/pkg/kubeletserving"
)

// kubeletCodes are the findings a fresh kubeadm node legitimately has: its kubelet serves the
// self-signed certificate kubeadm leaves by default (case A), which covers no IP address.
var kubeletCodes = []string{inspect.CodeKubeletNoIPSANs, inspect.CodeKubeletIPMissing, inspect.CodeKubeletSelfSigned}

// TestInspectEveryNode runs certctl inspect on every node of a freshly made cluster: the
// control-plane nodes have every certificate and nothing wrong but the kubelet's self-signed
// serving certificate; the worker is checked for its kubelet certificates only, with no finding
// about the control plane it does not run.
func TestInspectEveryNode(t *testing.T) {
	nodes := requireLab(t)
	for _, n := range nodes {
		t.Run(n.Name, func(t *testing.T) {
			rep, r := inspectJSON(t, n)
			if r.Code == 3 {
				t.Fatalf("inspect failed: %s", r)
			}
			if rep.ControlPlane != n.ControlPlane() {
				t.Errorf("inspect says controlPlane=%v for a node whose role is %s", rep.ControlPlane, n.Role)
			}
			seen := map[string]bool{}
			for _, c := range rep.Certificates {
				seen[c.Name] = c.Status != "absent"
				for _, f := range c.Findings {
					kubelet := strings.HasPrefix(c.Name, "kubelet")
					switch {
					case kubelet && slices.Contains(kubeletCodes, f.Code):
						// case A on a fresh node: expected
					case f.Severity == inspect.SevInfo:
					default:
						t.Errorf("%s: %s finding %s: %s", c.Name, f.Severity, f.Code, f.Message)
					}
				}
			}
			want := []string{"kubelet.conf", "kubelet-client"}
			if n.ControlPlane() {
				want = append(want, "ca", "apiserver", "etcd-ca", "etcd-server", "front-proxy-client", "admin.conf", "controller-manager.conf", "scheduler.conf")
			}
			for _, name := range want {
				if !seen[name] {
					t.Errorf("inspect on %s did not check %s (seen: %v)", n.Name, name, seen)
				}
			}
		})
	}
}

// TestKubeletServingStatusSeesEveryKubelet: certctl kubelet-serving status, from a
// control-plane node, dials all the real kubelets and finds case A on each: a self-signed
// certificate that does not cover the node's IP, on which a verifying metrics-server fails.
func TestKubeletServingStatusSeesEveryKubelet(t *testing.T) {
	nodes := requireLab(t)
	cp := controlPlanes(nodes)[0]
	r := certctlOn(t, cp, "kubelet-serving", "status", "-o", "json")
	var st kubeletserving.Status
	if err := json.Unmarshal([]byte(r.Stdout), &st); err != nil {
		t.Fatalf("kubelet-serving status -o json: %v\n%s", err, r)
	}
	for _, n := range nodes {
		i := slices.IndexFunc(st.Nodes, func(s kubeletserving.NodeStatus) bool { return s.Node == n.Name })
		if i < 0 {
			t.Errorf("status does not list node %s: %+v", n.Name, st.Nodes)
			continue
		}
		s := st.Nodes[i]
		if s.Endpoint != n.IP+":10250" || s.NotAfter == nil {
			t.Errorf("%s: status did not read the kubelet's certificate at %s:10250: %+v", n.Name, n.IP, s)
		}
		// Case A on a fresh node; a node fixed by TestKubeletServingEnableOnWorker serves a
		// CA-signed certificate that covers its IP.
		caseA := !s.CASigned && slices.Contains(s.Uncovered, n.IP) && s.MetricsServerFails
		fixed := s.CASigned && len(s.Uncovered) == 0 && !s.MetricsServerFails
		if !caseA && !fixed {
			t.Errorf("%s: neither case A (self-signed, %s not covered, metrics-server fails) nor fixed: %+v", n.Name, n.IP, s)
		}
	}
	if r.Code != 2 {
		t.Errorf("status with failing kubelets: want exit 2, got %d", r.Code)
	}
}
