package cluster

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/certctl/certctl/pkg/inspect"
	"github.com/certctl/certctl/pkg/kubeletserving"
	"github.com/certctl/certctl/pkg/monitoring"
	"github.com/certctl/certctl/pkg/noderequest"
	"github.com/certctl/certctl/pkg/noderesult"
	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/render"
)

// StatusOptions drive Status.
type StatusOptions struct {
	Runner          // the Jobs; JobTimeout: per node, from Job creation to its result (default 60s)
	Concurrency int // nodes at once; default 16
	// Roots verify what the kubelets serve (the cluster CA); nil skips the kubelet part.
	Roots *x509.CertPool
	// Nodes limits the run to these nodes (default: every node).
	Nodes []string
}

// NodeReport is one node's part of the cluster status.
type NodeReport struct {
	Node         string          `json:"node"`
	ControlPlane bool            `json:"controlPlane"`
	Ready        bool            `json:"ready"`
	Ran          bool            `json:"ran"`               // certctl ran on the node and reported
	Problem      string          `json:"problem,omitempty"` // why it did not, or what went wrong
	Took         string          `json:"took"`
	Report       *inspect.Report `json:"report,omitempty"`
}

// StatusReport is the whole cluster.
type StatusReport struct {
	GeneratedAt time.Time              `json:"generatedAt"`
	Nodes       []NodeReport           `json:"nodes"`
	Kubelets    *kubeletserving.Status `json:"kubelets,omitempty"`
	// KubeletsProblem is why the kubelets' serving certificates could not be looked at ("" when
	// they were, or were not asked for).
	KubeletsProblem string `json:"kubeletsProblem,omitempty"`
}

func (o *StatusOptions) defaults() {
	o.Runner.defaults(60 * time.Second)
	if o.Concurrency <= 0 {
		o.Concurrency = 16
	}
}

// Status runs `certctl inspect` on every node (its report as a record, noderesult.KindInspect) through one Job each (at most
// Concurrency at once), plus the kubelets' serving certificates as `kubelet-serving status`
// sees them. A node whose Job cannot run is reported with the reason, not left out.
func Status(ctx context.Context, cs kubernetes.Interface, o StatusOptions) (*StatusReport, error) {
	o.defaults()
	if err := o.needImage(); err != nil {
		return nil, err
	}
	nodes, err := listNodes(ctx, cs, o.Nodes)
	if err != nil {
		return nil, err
	}
	rep := &StatusReport{GeneratedAt: time.Now().UTC(), Nodes: make([]NodeReport, len(nodes))}
	var g errgroup.Group
	g.SetLimit(o.Concurrency)
	for i := range nodes {
		g.Go(func() error {
			rep.Nodes[i] = nodeStatus(ctx, cs, o, &nodes[i]) // a node that fails is reported, not an error
			return nil
		})
	}
	if o.Roots != nil {
		ks, err := kubeletserving.GetStatus(ctx, cs, kubeletserving.StatusOptions{Roots: o.Roots, Port: 10250, Concurrency: o.Concurrency, Timeout: 3 * time.Second})
		if err != nil {
			rep.KubeletsProblem = err.Error()
		} else {
			rep.Kubelets = ks
		}
	}
	_ = g.Wait() // the goroutines return nil
	return rep, nil
}

func nodeStatus(ctx context.Context, cs kubernetes.Interface, o StatusOptions, n *corev1.Node) NodeReport {
	nr := NodeReport{Node: n.Name, ControlPlane: isControlPlane(n), Ready: isReady(n)}
	res, err := o.Job(ctx, cs, JobSpec{
		Node: n.Name, Component: "status", Request: noderequest.Request{Op: noderequest.Inspect, Record: true},
		// A node not Ready is reported as such at once: the other nodes' Jobs run meanwhile.
		ReadyWait: 5 * time.Second,
	})
	nr.Took = res.Took.Round(100 * time.Millisecond).String()
	if err != nil {
		nr.Problem = err.Error()
		var notReady *NodeNotReadyError
		if errors.As(err, &notReady) || !nr.Ready {
			nr.Problem += " (run certctl inspect on the node itself)"
		}
		return nr
	}
	var r inspect.Report
	if err := res.Record(noderesult.KindInspect, &r); err != nil {
		nr.Problem = err.Error()
		return nr
	}
	nr.Ran, nr.Report = true, &r
	// The node cannot see the cluster's RBAC: ask the API server whether its apiserver's
	// kubelet client identity may use the kubelet API (a control-plane node joined with kubeadm
	// 1.37 lacks the ClusterRoleBinding it needs).
	if err := inspect.CheckKubeletAPIAccess(ctx, inspect.SubjectAccessReviewer(cs), &r); err != nil {
		nr.Problem = err.Error()
	}
	return nr
}

func listNodes(ctx context.Context, cs kubernetes.Interface, only []string) ([]corev1.Node, error) {
	list, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	nodes := list.Items
	if len(only) > 0 {
		byName := map[string]corev1.Node{}
		for _, n := range nodes {
			byName[n.Name] = n
		}
		nodes = nil
		for _, name := range only {
			n, ok := byName[name]
			if !ok {
				return nil, fmt.Errorf("no node named %q in the cluster", name)
			}
			nodes = append(nodes, n)
		}
	}
	sort.SliceStable(nodes, func(i, j int) bool {
		ci, cj := isControlPlane(&nodes[i]), isControlPlane(&nodes[j])
		if ci != cj {
			return ci
		}
		return nodes[i].Name < nodes[j].Name
	})
	return nodes, nil
}

func isControlPlane(n *corev1.Node) bool {
	_, ok := n.Labels[pki.ControlPlaneLabel]
	return ok
}

func isReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// Worst is the exit-code severity of the whole report: a node that did not report counts as
// critical (its certificates are unknown), like inspect's unreadable files.
func (r *StatusReport) Worst() inspect.Severity {
	var worst inspect.Severity
	rank := map[inspect.Severity]int{"": -1, inspect.SevInfo: 0, inspect.SevWarning: 1, inspect.SevCritical: 2}
	bump := func(s inspect.Severity) {
		if rank[s] > rank[worst] {
			worst = s
		}
	}
	for _, n := range r.Nodes {
		if !n.Ran {
			bump(inspect.SevCritical)
			continue
		}
		bump(n.Report.Worst())
	}
	if r.Kubelets != nil {
		for _, k := range r.Kubelets.Nodes {
			if k.MetricsServerFails {
				bump(inspect.SevWarning)
			}
		}
	}
	if r.KubeletsProblem != "" {
		bump(inspect.SevWarning)
	}
	return worst
}

// Render writes the report as table, wide, json or yaml.
func (r *StatusReport) Render(w io.Writer, format string) error {
	if ok, err := render.Machine(w, format, r); ok {
		return err
	}
	switch format {
	case "table", "wide", "":
		return r.table(w, format == "wide")
	}
	return fmt.Errorf("unknown output format %q (want table, wide, json or yaml)", format)
}

func (r *StatusReport) table(w io.Writer, wide bool) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	hdr := "NODE\tNAME\tEXPIRES\tRESIDUAL\tSTATUS\tFINDINGS"
	if wide {
		hdr += "\tCA\tSERIAL"
	}
	fmt.Fprintln(tw, hdr)
	for _, n := range r.Nodes {
		if !n.Ran {
			fmt.Fprintf(tw, "%s\t-\t-\t-\tNOT RUN\t%s\n", n.Node, n.Problem)
			continue
		}
		for _, c := range n.Report.Certificates {
			if c.Status == "absent" && !wide {
				continue
			}
			expires, residual := "-", "-"
			if c.NotAfter != nil {
				expires = c.NotAfter.UTC().Format("Jan 02, 2006 15:04 MST")
				if left := c.NotAfter.Sub(n.Report.GeneratedAt); left > 0 {
					residual = inspect.Residual(left)
				} else {
					residual = "<invalid>"
				}
			}
			var codes []string
			for _, f := range c.Findings {
				codes = append(codes, f.Code)
			}
			line := fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s", n.Node, c.Name, expires, residual, c.Status, dash(strings.Join(codes, ",")))
			if wide {
				line += fmt.Sprintf("\t%s\t%s", dash(c.CA), dash(c.Serial))
			}
			fmt.Fprintln(tw, line)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, section := range []func(io.Writer) error{r.rotations, r.kubelets, r.findings} {
		if err := section(w); err != nil {
			return err
		}
	}
	return nil
}

// rotations is where each node is in a rotation (certctl cluster ca-rotate, or ca rotate on the
// node): during one, the nodes' phases tell how far it got.
func (r *StatusReport) rotations(w io.Writer) error {
	var rot [][]string
	for _, n := range r.Nodes {
		if !n.Ran {
			continue
		}
		for _, c := range n.Report.CARotations {
			rot = append(rot, []string{n.Node, c.CA, c.Phase, c.Time.UTC().Format("Jan 02, 2006 15:04 MST"), c.State()})
		}
	}
	if len(rot) > 0 {
		fmt.Fprintln(w, "\nROTATIONS")
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NODE\tCA\tPHASE\tDONE\tSTATE")
		for _, row := range rot {
			fmt.Fprintln(tw, strings.Join(row, "\t"))
		}
		return tw.Flush()
	}
	return nil
}

// kubelets is what each kubelet serves, as kubelet-serving status sees it.
func (r *StatusReport) kubelets(w io.Writer) error {
	if r.KubeletsProblem != "" {
		fmt.Fprintf(w, "\nKUBELET SERVING CERTIFICATES: not looked at: %s\n", r.KubeletsProblem)
	}
	if r.Kubelets != nil && len(r.Kubelets.Nodes) > 0 {
		fmt.Fprintln(w, "\nKUBELET SERVING CERTIFICATES")
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NODE\tENDPOINT\tCA-SIGNED\tUNCOVERED\tMETRICS-SERVER")
		for _, k := range r.Kubelets.Nodes {
			ms := "ok"
			if k.MetricsServerFails {
				ms = "fails"
				if k.Problem != "" {
					ms += ": " + k.Problem
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%s\n", k.Node, k.Endpoint, k.CASigned, dash(strings.Join(k.Uncovered, ",")), ms)
		}
		return tw.Flush()
	}
	return nil
}

// findings lists every node's findings with its remedy.
func (r *StatusReport) findings(w io.Writer) error {
	var n int
	for _, nr := range r.Nodes {
		if !nr.Ran {
			continue
		}
		for _, c := range nr.Report.Certificates {
			for _, f := range c.Findings {
				if n == 0 {
					fmt.Fprintln(w, "\nFINDINGS")
				}
				n++
				fmt.Fprintf(w, "%-8s %s %s [%s] %s\n", strings.ToUpper(string(f.Severity)), nr.Node, c.Name, f.Code, f.Message)
				if f.Remedy != "" {
					fmt.Fprintf(w, "         fix (on %s): %s\n", nr.Node, f.Remedy)
				}
			}
		}
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// RecordEvents records an Event on each Node certctl ran on for its warning and critical
// findings (monitoring.Record); a node whose Events fail is a warning on log.
func (r *StatusReport) RecordEvents(ctx context.Context, cs kubernetes.Interface, log io.Writer) {
	for _, n := range r.Nodes {
		if !n.Ran {
			continue
		}
		if _, err := monitoring.Record(ctx, cs, monitoring.RecordOptions{Node: n.Node, Report: n.Report}); err != nil {
			fmt.Fprintf(log, "warning: events on node %s: %v\n", n.Node, err)
		}
	}
}
