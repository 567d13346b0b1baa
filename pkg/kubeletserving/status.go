package kubeletserving

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	certv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/certctl/certctl/pkg/csrwait"
	"github.com/certctl/certctl/pkg/live"
	"github.com/certctl/certctl/pkg/render"
)

// StatusOptions tune the survey.
type StatusOptions struct {
	Port        int           // the kubelet's port, default 10250
	Concurrency int           // dials at once, default 64
	Timeout     time.Duration // per dial, default 3s
	Roots       *x509.CertPool
	Now         time.Time
}

// NodeStatus is what one kubelet serves.
type NodeStatus struct {
	Node     string     `json:"node"`
	Endpoint string     `json:"endpoint"`
	Issuer   string     `json:"issuer,omitempty"`
	CASigned bool       `json:"caSigned"` // verifies against the cluster CA
	NotAfter *time.Time `json:"notAfter,omitempty"`
	// Uncovered are the node's addresses (IPs and names) the certificate does not cover.
	Uncovered []string `json:"uncovered"`
	// MetricsServerFails: a verifying client dialling the InternalIP (metrics-server without
	// --kubelet-insecure-tls) rejects this kubelet.
	MetricsServerFails bool   `json:"metricsServerFails"`
	Problem            string `json:"problem,omitempty"`
}

// PendingCSR is a kubelet-serving CSR waiting for a decision.
type PendingCSR struct {
	Name      string    `json:"name"`
	Requestor string    `json:"requestor"`
	Created   time.Time `json:"created"`
}

// Status is the cluster-wide picture.
type Status struct {
	Nodes   []NodeStatus `json:"nodes"`
	Pending []PendingCSR `json:"pendingCSRs"`
}

// GetStatus lists the Nodes and pending kubelet-serving CSRs and dials every kubelet.
func GetStatus(ctx context.Context, cs kubernetes.Interface, o StatusOptions) (*Status, error) {
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	csrs, err := cs.CertificatesV1().CertificateSigningRequests().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list CSRs: %w", err)
	}
	st := &Status{Nodes: Survey(ctx, nodes.Items, o), Pending: []PendingCSR{}}
	for _, c := range csrs.Items {
		if c.Spec.SignerName == certv1.KubeletServingSignerName && csrwait.Pending(&c) {
			st.Pending = append(st.Pending, PendingCSR{Name: c.Name, Requestor: c.Spec.Username, Created: c.CreationTimestamp.UTC()})
		}
	}
	return st, nil
}

// Survey dials every node's kubelet, Concurrency at a time, and judges what it serves.
func Survey(ctx context.Context, nodes []corev1.Node, o StatusOptions) []NodeStatus {
	if o.Port == 0 {
		o.Port = 10250
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 64
	}
	if o.Timeout == 0 {
		o.Timeout = 3 * time.Second
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	out := make([]NodeStatus, len(nodes))
	sem := make(chan struct{}, o.Concurrency)
	var wg sync.WaitGroup
	for i := range nodes {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer func() { <-sem; wg.Done() }()
			out[i] = judge(ctx, &nodes[i], o)
		}(i)
	}
	wg.Wait()
	sort.Slice(out, func(i, j int) bool { return out[i].Node < out[j].Node })
	return out
}

func judge(ctx context.Context, n *corev1.Node, o StatusOptions) NodeStatus {
	st := NodeStatus{Node: n.Name, Uncovered: []string{}}
	ips, names := nodeAddresses(n)
	var internal string
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			internal = a.Address
			break
		}
	}
	if internal == "" {
		st.Problem = "the node reports no InternalIP"
		st.MetricsServerFails = true
		return st
	}
	st.Endpoint = net.JoinHostPort(internal, strconv.Itoa(o.Port))
	chain, err := live.Served(ctx, st.Endpoint, "", nil, o.Timeout)
	if err != nil {
		st.Problem = fmt.Sprintf("no TLS answer: %v", err)
		st.MetricsServerFails = true
		return st
	}
	leaf := chain[0]
	na := leaf.NotAfter.UTC()
	st.Issuer, st.NotAfter = leaf.Issuer.String(), &na
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if o.Roots != nil {
		_, err := leaf.Verify(x509.VerifyOptions{Roots: o.Roots, Intermediates: inter, CurrentTime: o.Now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
		st.CASigned = err == nil
	}
	for _, ip := range ips {
		if leaf.VerifyHostname(ip.String()) != nil {
			st.Uncovered = append(st.Uncovered, ip.String())
		}
	}
	for _, name := range names {
		if leaf.VerifyHostname(name) != nil {
			st.Uncovered = append(st.Uncovered, name)
		}
	}
	var problems []string
	if !st.CASigned {
		problems = append(problems, "not signed by the cluster CA (the kubelet's self-signed certificate)")
	}
	if leaf.VerifyHostname(internal) != nil {
		if len(leaf.IPAddresses) == 0 {
			problems = append(problems, fmt.Sprintf("x509: cannot validate certificate for %s because it doesn't contain any IP SANs", internal))
		} else {
			problems = append(problems, fmt.Sprintf("does not cover the InternalIP %s", internal))
		}
	}
	if o.Now.After(leaf.NotAfter) {
		problems = append(problems, "expired")
	}
	st.MetricsServerFails = len(problems) > 0
	st.Problem = strings.Join(problems, "; ")
	return st
}

// RenderStatus writes st as a table, JSON or YAML.
func RenderStatus(w io.Writer, st *Status, format string) error {
	if ok, err := render.Machine(w, format, st); ok {
		return err
	}
	switch format {
	case "table", "":
	default:
		return fmt.Errorf("unknown output format %q (want table, json or yaml)", format)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tENDPOINT\tCA-SIGNED\tEXPIRES\tUNCOVERED\tMETRICS-SERVER")
	fails := 0
	for _, n := range st.Nodes {
		exp := "-"
		if n.NotAfter != nil {
			exp = n.NotAfter.Format("2006-01-02")
		}
		ms := "ok"
		if n.MetricsServerFails {
			ms, fails = "FAILS", fails+1
		}
		unc := strings.Join(n.Uncovered, ",")
		if unc == "" {
			unc = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%s\t%s\n", n.Node, n.Endpoint, n.CASigned, exp, unc, ms)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if fails > 0 {
		fmt.Fprintf(w, "\nmetrics-server (verifying, without --kubelet-insecure-tls) fails on %d node(s):\n", fails)
		for _, n := range st.Nodes {
			if n.MetricsServerFails {
				fmt.Fprintf(w, "  %s: %s\n", n.Node, n.Problem)
			}
		}
		fmt.Fprintln(w, "fix: certctl kubelet-serving enable --approve on each of them (or --cluster once, then restart their kubelets)")
	}
	if len(st.Pending) > 0 {
		fmt.Fprintf(w, "\n%d pending kubelet-serving CSR(s): certctl kubelet-serving approve --all\n", len(st.Pending))
		for _, p := range st.Pending {
			fmt.Fprintf(w, "  %s from %s\n", p.Name, p.Requestor)
		}
	}
	return nil
}
