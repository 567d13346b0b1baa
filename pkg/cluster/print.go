package cluster

import (
	"fmt"
	"io"
	"strings"
)

// Print writes the rollout for people: each node's state, time, served certificate and
// problem; a plan's or a failure's output indented under its node.
func (r *RenewReport) Print(w io.Writer) {
	if r.KubeadmConfig != nil {
		fmt.Fprintln(w, r.KubeadmConfig)
	}
	printNodes(w, r.Nodes)
}

func printNodes(w io.Writer, nodes []NodeOutcome) {
	for _, n := range nodes {
		line := fmt.Sprintf("%-20s %-10s", n.Node, n.State)
		if n.Took != "" {
			line += " " + n.Took
		}
		if n.Served != "" {
			line += "  apiserver " + n.Served
		}
		if n.Problem != "" {
			line += "  " + n.Problem
		}
		fmt.Fprintln(w, line)
		if n.State == "planned" || (n.State == "failed" && n.Output != "") {
			for _, l := range strings.Split(n.Output, "\n") {
				fmt.Fprintln(w, "    "+l)
			}
		}
	}
}

// Print writes the move for people.
func (r *EndpointReport) Print(w io.Writer) {
	fmt.Fprintf(w, "endpoint: %s -> %s\n", r.From, r.To)
	if len(r.SANNodes) > 0 {
		fmt.Fprintf(w, "SAN added on: %s\n", strings.Join(r.SANNodes, ", "))
		if r.SAN != nil {
			r.SAN.Print(w)
		}
	}
	fmt.Fprintf(w, "kube-system/kubeadm-config: %s\n", r.KubeadmConfig)
	fmt.Fprintf(w, "kube-public/cluster-info: %s\n", r.ClusterInfo)
	if r.KubeProxy != "" {
		fmt.Fprintf(w, "kube-system/kube-proxy: %s\n", r.KubeProxy)
	}
	printNodes(w, r.Nodes)
	printLines(w, r.Local)
}

// Print writes the phase for people.
func (r *CARotateReport) Print(w io.Writer) {
	fmt.Fprintf(w, "phase %s of %s\n", r.Phase, strings.Join(r.CAs, ", "))
	if len(r.Etcd) > 0 {
		fmt.Fprintf(w, "etcd members before: %s\n", memberList(r.Etcd))
	}
	for _, ca := range r.CAs {
		if sum := r.NewCA[ca]; sum != "" {
			fmt.Fprintf(w, "new %s sha256:%s\n", ca, sum)
		}
	}
	printNodes(w, r.Nodes)
	for _, l := range r.AuthConfigMap {
		fmt.Fprintf(w, "kube-system/%s: %s\n", AuthConfigMap, l)
	}
	if r.ClusterInfo != "" {
		fmt.Fprintf(w, "kube-public/cluster-info: %s\n%s\n", r.ClusterInfo, r.RootCA)
	}
	if r.TrustBundle != "" {
		fmt.Fprintf(w, "ClusterTrustBundle %s: %s\n", TrustBundleName, r.TrustBundle)
	}
	printLines(w, r.Local)
}

func printLines(w io.Writer, lines []string) {
	for _, l := range lines {
		fmt.Fprintln(w, l)
	}
}
