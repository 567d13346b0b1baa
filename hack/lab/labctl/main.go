// Command labctl is the multi-node lab's client (hack/lab/multi.sh): the lab builds no kubectl.
//
//	labctl wait-ready --kubeconfig F --nodes cp1,cp2 [--lb 10.2.1.139:6443] [--timeout 5m]
//	labctl nodes --kubeconfig F
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: labctl wait-ready|nodes --kubeconfig F ...")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	kubeconfig := fs.String("kubeconfig", "", "admin kubeconfig")
	nodes := fs.String("nodes", "", "comma-separated node names (wait-ready)")
	lb := fs.String("lb", "", "load balancer HOST:PORT whose /readyz must answer 200 (wait-ready)")
	timeout := fs.Duration("timeout", 5*time.Minute, "how long to wait (wait-ready)")
	_ = fs.Parse(os.Args[2:])
	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		fail(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		fail(err)
	}
	ctx := context.Background()
	switch os.Args[1] {
	case "wait-ready":
		err = waitReady(ctx, cs, cfg, strings.Split(*nodes, ","), *lb, *timeout)
	case "nodes":
		err = printNodes(ctx, cs)
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "labctl:", err)
	os.Exit(1)
}

func ready(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func waitReady(ctx context.Context, cs kubernetes.Interface, cfg *rest.Config, want []string, lb string, timeout time.Duration) error {
	var last string
	err := wait.PollUntilContextTimeout(ctx, time.Second, timeout, true, func(ctx context.Context) (bool, error) {
		var notReady []string
		for _, name := range want {
			n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if err != nil || !ready(n) {
				notReady = append(notReady, name)
			}
		}
		if len(notReady) > 0 {
			last = "not Ready: " + strings.Join(notReady, ", ")
			return false, nil
		}
		if lb != "" {
			if err := readyz(ctx, cfg, lb); err != nil {
				last = err.Error()
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("waiting %s for nodes %s: %s: %w", timeout, strings.Join(want, ","), last, err)
	}
	fmt.Fprintf(os.Stderr, "labctl: nodes %s Ready\n", strings.Join(want, ","))
	return nil
}

// readyz asks the load balancer's /readyz, trusting the cluster CA but not checking the name:
// the apiserver certificates of a cluster made as case B found it lack the balancer's address.
func readyz(ctx context.Context, cfg *rest.Config, hostport string) error {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(cfg.CAData) {
		return errors.New("no CA data in the kubeconfig")
	}
	c := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		InsecureSkipVerify: true, // verified below against the CA, without the name
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			cert, err := x509.ParseCertificate(raw[0])
			if err != nil {
				return err
			}
			_, err = cert.Verify(x509.VerifyOptions{Roots: pool})
			return err
		},
	}}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+hostport+"/readyz", nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("load balancer %s: %w", hostport, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("load balancer %s/readyz: %s", hostport, resp.Status)
	}
	return nil
}

func printNodes(ctx context.Context, cs kubernetes.Interface) error {
	list, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tREADY\tADDRESS\tROLES")
	for i := range list.Items {
		n := &list.Items[i]
		addr := ""
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP {
				addr = a.Address
			}
		}
		role := "worker"
		if _, ok := n.Labels["node-role.kubernetes.io/control-plane"]; ok {
			role = "control-plane"
		}
		fmt.Fprintf(w, "%s\t%v\t%s\t%s\n", n.Name, ready(n), addr, role)
	}
	return w.Flush()
}
