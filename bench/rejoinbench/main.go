// Command rejoinbench measures, on the multi-node lab (hack/lab/multi.sh up), issue 13's
// comparison on one worker whose kubelet client certificate is gone:
//
//   - certctl kubelet-client renew --server --token --discovery-token-ca-cert-hash (the kubelet
//     restarted by certctl; target: command to Node Ready under 30 s), and
//   - the renewal runbook's last step: kubeadm reset -f, kubectl delete node, kubeadm join with a
//     new token,
//
// each from its first command to the Node Ready again, with the containers running on the node
// before (a pause pod pinned to it, plus whatever else runs there) and whether they survived.
//
//	go run ./bench/rejoinbench [-node worker1] [-certctl bin/certctl]      (as root, lab up)
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/certctl/certctl/internal/multilab"
)

func main() {
	nodeName := flag.String("node", "", "the worker (default: the lab's first)")
	certctl := flag.String("certctl", "bin/certctl", "certctl binary (built from this checkout)")
	kubeadm := flag.String("kubeadm", filepath.Join(os.Getenv("HOME"), ".cache/certctl/k8s-v1.32.4/bin/kubeadm"), "kubeadm binary")
	flag.Parse()
	bin, err := multilab.BenchStart(*certctl)
	if err != nil {
		fail(err)
	}
	nodes, err := multilab.Nodes()
	if err != nil {
		fail(err)
	}
	var w, cp *multilab.Node
	for i := range nodes {
		n := &nodes[i]
		if n.ControlPlane() && cp == nil {
			cp = n
		}
		if !n.ControlPlane() && w == nil && (*nodeName == "" || n.Name == *nodeName) {
			w = n
		}
	}
	if w == nil || cp == nil {
		fail(fmt.Errorf("no worker %q or no control-plane node in the lab", *nodeName))
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", multilab.AdminKubeconfig())
	if err != nil {
		fail(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		fail(err)
	}
	ctx := context.Background()
	pod := runPause(ctx, cs, w.Name)
	defer func() { _ = cs.CoreV1().Pods("default").Delete(context.Background(), pod, metav1.DeleteOptions{}) }()

	// The join values, as the operator gets them on a control-plane node.
	r := must(multilab.Run(multilab.Command(ctx, *cp, *kubeadm, "token", "create", "--print-join-command", "--kubeconfig", "/etc/kubernetes/admin.conf")))
	m := regexp.MustCompile(`join (\S+) --token (\S+) --discovery-token-ca-cert-hash (\S+)`).FindStringSubmatch(r.Stdout)
	if m == nil {
		fail(fmt.Errorf("no join command in %q", r.Stdout))
	}
	endpoint, token, hash := m[1], m[2], m[3]

	// 1. certctl kubelet-client renew.
	removeClientCert(*w)
	before := tasks(*w)
	start := time.Now()
	r = must(multilab.Run(multilab.Command(ctx, *w, bin, "kubelet-client", "renew", "--server", endpoint, "--token", token, "--discovery-token-ca-cert-hash", hash)))
	if r.Code != 0 {
		fail(fmt.Errorf("kubelet-client renew: %s", r))
	}
	renewTook := waitReady(ctx, cs, w.Name, start)
	after := tasks(*w)
	fmt.Printf("certctl kubelet-client renew on %s: command to Node Ready %s (target < 30 s: %s); containers before %d, still running after %d, new %d\n",
		w.Name, renewTook.Round(100*time.Millisecond), verdict(renewTook < 30*time.Second), len(before), len(common(before, after)), len(after)-len(common(before, after)))

	// 2. The runbook: kubeadm reset -f, kubectl delete node, then kubeadm join with a new token.
	removeClientCert(*w)
	before = tasks(*w)
	start = time.Now()
	r = must(multilab.Run(multilab.Command(ctx, *w, *kubeadm, "reset", "-f")))
	if r.Code != 0 {
		fail(fmt.Errorf("kubeadm reset -f: %s", r))
	}
	// kubeadm reset stops the kubelet through systemd; the lab's kubelet is supervised instead.
	if r = must(multilab.Lab(ctx, "kubelet", w.Name, "stop")); r.Code != 0 {
		fail(fmt.Errorf("stop the kubelet: %s", r))
	}
	// The runbook deletes the Node: kubeadm join refuses a name whose Node exists and is Ready.
	if err := cs.CoreV1().Nodes().Delete(ctx, w.Name, metav1.DeleteOptions{}); err != nil {
		fail(err)
	}
	r = must(multilab.Run(multilab.Command(ctx, *cp, *kubeadm, "token", "create", "--kubeconfig", "/etc/kubernetes/admin.conf")))
	if r.Code != 0 {
		fail(fmt.Errorf("kubeadm token create: %s", r))
	}
	r = must(multilab.Lab(ctx, "join", w.Name, endpoint))
	if r.Code != 0 {
		fail(fmt.Errorf("join: %s", r))
	}
	rejoinTook := waitReady(ctx, cs, w.Name, start)
	// The pause pod's container comes back under a new ID once the kubelet re-creates it.
	_ = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		p, err := cs.CoreV1().Pods("default").Get(ctx, pod, metav1.GetOptions{})
		return err == nil && p.Status.Phase == corev1.PodRunning && ready(p), nil
	})
	after = tasks(*w)
	fmt.Printf("runbook kubeadm reset -f + delete node + kubeadm join on %s: first command to Node Ready %s; containers before %d, still running after %d (the others were removed by the reset and re-created: %d new)\n",
		w.Name, rejoinTook.Round(100*time.Millisecond), len(before), len(common(before, after)), len(after)-len(common(before, after)))
	fmt.Printf("ratio: the runbook took %.1fx certctl's time\n", float64(rejoinTook)/float64(renewTook))
}

func must(r multilab.Result, err error) multilab.Result {
	if err != nil {
		fail(err)
	}
	return r
}

// removeClientCert is the failure: the kubelet's client certificate is gone (expired and
// cleaned away).
func removeClientCert(n multilab.Node) {
	old, _ := filepath.Glob(filepath.Join(n.Dir(), "var-lib-kubelet", "pki", "kubelet-client-*"))
	for _, f := range old {
		if err := os.Remove(f); err != nil {
			fail(err)
		}
	}
}

func runPause(ctx context.Context, cs kubernetes.Interface, node string) string {
	p, err := cs.CoreV1().Pods("default").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "certctl-bench-", Namespace: "default"},
		Spec: corev1.PodSpec{
			NodeName:                      node,
			TerminationGracePeriodSeconds: ptr.To(int64(0)),
			Tolerations:                   []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
			Containers:                    []corev1.Container{{Name: "pause", Image: "registry.k8s.io/pause:3.10", ImagePullPolicy: corev1.PullNever}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		fail(err)
	}
	if err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		got, err := cs.CoreV1().Pods("default").Get(ctx, p.Name, metav1.GetOptions{})
		return err == nil && got.Status.Phase == corev1.PodRunning, nil
	}); err != nil {
		fail(fmt.Errorf("pod %s on %s not running", p.Name, node))
	}
	return p.Name
}

func ready(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// waitReady waits until the Node is Ready with a heartbeat (its Lease) after start.
func waitReady(ctx context.Context, cs kubernetes.Interface, node string, start time.Time) time.Duration {
	var took time.Duration
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
		l, err := cs.CoordinationV1().Leases("kube-node-lease").Get(ctx, node, metav1.GetOptions{})
		if err != nil || l.Spec.RenewTime == nil || !l.Spec.RenewTime.After(start) {
			return false, nil
		}
		n, err := cs.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				took = time.Since(start)
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		fail(fmt.Errorf("%s not Ready with a fresh heartbeat within 5 min", node))
	}
	return took
}

func tasks(n multilab.Node) []string {
	r := must(multilab.Run(multilab.Command(context.Background(), n, "ctr", "-n", "k8s.io", "tasks", "ls", "-q")))
	ids := strings.Fields(r.Stdout)
	slices.Sort(ids)
	return ids
}

func common(a, b []string) []string {
	var out []string
	for _, x := range a {
		if slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "rejoinbench:", err)
	os.Exit(1)
}
