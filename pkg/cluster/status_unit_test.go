package cluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/certctl/certctl/pkg/inspect"
)

// A branch a real apiserver does not make on demand: the kubelets' part of cluster status
// fails (here: the second list of nodes, the kubelet-serving one, is refused). The report says
// why, the table prints it, and the worst severity counts it; before, it was dropped.
func TestStatusKeepsTheKubeletsProblem(t *testing.T) {
	cs := fake.NewClientset(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}})
	lists := 0
	cs.PrependReactor("list", "nodes", func(k8stesting.Action) (bool, runtime.Object, error) {
		lists++
		if lists > 1 {
			return true, nil, errors.New("nodes is forbidden")
		}
		return false, nil, nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rep, err := Status(ctx, cs, StatusOptions{Runner: Runner{Image: "certctl:test", JobTimeout: time.Second}, Roots: x509.NewCertPool()})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(rep.KubeletsProblem, "forbidden") || rep.Kubelets != nil {
		t.Fatalf("want the kubelets' problem kept, got %q (%+v)", rep.KubeletsProblem, rep.Kubelets)
	}
	var out bytes.Buffer
	if err := rep.Render(&out, "table"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "not looked at") {
		t.Errorf("the table does not say the kubelets were not looked at:\n%s", out.String())
	}
	if w := (&StatusReport{KubeletsProblem: rep.KubeletsProblem}).Worst(); w != inspect.SevWarning {
		t.Errorf("worst of a report whose only problem is the kubelets': %v, want warning", w)
	}
}

// TestStatusShowsRotations: during a rotation the table says which phase each node is in.
func TestStatusShowsRotations(t *testing.T) {
	at := time.Date(2026, 12, 3, 9, 12, 0, 0, time.UTC)
	node := func(name string, rots ...inspect.CARotation) NodeReport {
		return NodeReport{Node: name, Ran: true, Report: &inspect.Report{GeneratedAt: at, CARotations: rots}}
	}
	tests := []struct {
		name  string
		nodes []NodeReport
		want  []string
		not   []string
	}{
		{"none", []NodeReport{node("cp1")}, nil, []string{"ROTATIONS"}},
		{"half way", []NodeReport{
			node("cp1", inspect.CARotation{CA: "sa", Phase: "issue", Time: at}),
			node("cp2", inspect.CARotation{CA: "sa", Phase: "trust", Time: at}),
			node("cp3", inspect.CARotation{CA: "ca", Phase: "drop", Time: at}),
		}, []string{"ROTATIONS", "cp1   sa  issue  Dec 03, 2026 09:12 UTC  in progress", "cp2   sa  trust", "cp3   ca  drop   Dec 03, 2026 09:12 UTC  complete"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := (&StatusReport{GeneratedAt: at, Nodes: tc.nodes}).Render(&out, "table"); err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("lacks %q:\n%s", w, out.String())
				}
			}
			for _, w := range tc.not {
				if strings.Contains(out.String(), w) {
					t.Errorf("has %q:\n%s", w, out.String())
				}
			}
		})
	}
}

// TestUnreachable: which errors of the command's first request mean the API cannot be reached
// (case C: the command says what to run on each node instead), decided by the error's type.
// The wait for a restarting apiserver before that is pkg/apiretry's (tested on a real one).
func TestUnreachable(t *testing.T) {
	refused := &url.Error{Op: "Get", URL: "https://10.2.1.151:6443/api/v1/nodes", Err: &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}}
	badCert := &url.Error{Op: "Get", URL: "https://10.2.1.151:6443/api/v1/nodes", Err: &tls.CertificateVerificationError{Err: x509.CertificateInvalidError{Reason: x509.Expired}}}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"connection refused", refused, true},
		{"an expired certificate", badCert, true},
		{"an unknown authority", fmt.Errorf("list: %w", x509.UnknownAuthorityError{}), true},
		{"an answer: forbidden", apierrors.NewForbidden(schema.GroupResource{Resource: "nodes"}, "", errors.New("no")), false},
		{"an answer: service unavailable", apierrors.NewServiceUnavailable("etcd"), false},
		{"not a network error", errors.New("decode: bad JSON"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := unreachable(tc.err); got != tc.want {
				t.Errorf("unreachable(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}
