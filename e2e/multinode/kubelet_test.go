package multinode

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/certctl/certctl/internal/multilab"
	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/pki"
)

func workers(nodes []multilab.Node) []multilab.Node {
	var out []multilab.Node
	for _, n := range nodes {
		if !n.ControlPlane() {
			out = append(out, n)
		}
	}
	return out
}

// TestKubeletClientRenewOnWorker is the runbook's last step without `kubeadm reset`: a
// worker whose kubelet client certificate is gone gets a new one through a bootstrap token
// (what `kubeadm token create --print-join-command` prints), on the real kubelet, and the
// containers running on the node are the same ones before and after.
func TestKubeletClientRenewOnWorker(t *testing.T) {
	nodes := requireLab(t)
	ws := workers(nodes)
	if len(ws) == 0 {
		t.Fatal("the lab has no worker")
	}
	w, cp := ws[0], controlPlanes(nodes)[0]
	cs := clientset(t)
	ctx := context.Background()

	runPause(t, cs, w.Name)
	before := tasks(t, w)
	if len(before) == 0 {
		t.Fatalf("no container runs on %s", w.Name)
	}

	// The join values, as the operator gets them on a control-plane node.
	r, err := multilab.Run(multilab.Command(ctx, cp, testenv.Binary(t, "kubeadm"), "token", "create", "--print-join-command", "--kubeconfig", "/etc/kubernetes/admin.conf"))
	if err != nil || r.Code != 0 {
		t.Fatalf("kubeadm token create: %v %s", err, r)
	}
	m := regexp.MustCompile(`--token (\S+) --discovery-token-ca-cert-hash (\S+)`).FindStringSubmatch(r.Stdout)
	if m == nil {
		t.Fatalf("no token in %q", r.Stdout)
	}

	// The failure: the kubelet's client certificate is gone (expired and cleaned away).
	pkiDir := filepath.Join(w.Dir(), "var-lib-kubelet", "pki")
	old, _ := filepath.Glob(filepath.Join(pkiDir, "kubelet-client-*"))
	for _, f := range old {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	rep, _ := inspectJSON(t, w)
	if c := findCert(rep, "kubelet-client"); c == nil || len(c.Findings) == 0 || !strings.Contains(c.Findings[0].Remedy, "kubelet-client renew") {
		t.Fatalf("inspect on %s: want a finding whose remedy is certctl kubelet-client renew, got %+v", w.Name, c)
	}

	start := time.Now()
	r = certctlOn(t, w, "kubelet-client", "renew", "--server", multilab.LBAddr, "--token", m[1],
		"--discovery-token-ca-cert-hash", m[2], "--no-restart", "--no-wait")
	if r.Code != 0 {
		t.Fatalf("kubelet-client renew: %s", r)
	}
	// No systemd here: the lab restarts the kubelet, as `systemctl restart kubelet` would.
	logFrom := kubeletLogSize(w)
	lab(t, "kubelet", w.Name, "restart")
	// The old kubelet is gone: a renewal of the node's Lease from now on is the new one's, on
	// its new certificate (leaseRenewedSince).
	restarted := time.Now()

	roots := caPool(t)
	var last string
	var certAt time.Duration
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		// The kubelet's link is absolute, in the node's own file system: follow it there.
		target, err := os.Readlink(filepath.Join(pkiDir, "kubelet-client-current.pem"))
		if err != nil {
			last = err.Error()
			return false, nil
		}
		data, err := os.ReadFile(filepath.Join(pkiDir, filepath.Base(target)))
		if err != nil {
			last = err.Error()
			return false, nil
		}
		certs, err := pki.ParseCertificates("kubelet-client-current.pem", data)
		if err != nil {
			last = err.Error()
			return false, nil
		}
		if _, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil || certs[0].Subject.CommonName != "system:node:"+w.Name {
			last = "certificate " + certs[0].Subject.String() + " does not verify as the node's"
			return false, nil
		}
		if certAt == 0 {
			certAt = time.Since(start)
		}
		if last = leaseRenewedSince(ctx, cs, w.Name, restarted); last != "" {
			last += " (the kubelet restarted then)"
			return false, nil
		}
		gctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		n, err := cs.CoreV1().Nodes().Get(gctx, w.Name, metav1.GetOptions{})
		if err != nil {
			last = "get node: " + err.Error()
			return false, nil
		}
		if !nodeReady(n) {
			last = "the node's Lease renewed, the node not Ready"
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		if certAt > 0 {
			last += fmt.Sprintf("; the new client certificate was there %s after the command", certAt.Round(100*time.Millisecond))
		}
		t.Fatalf("%s after kubelet-client renew: %s\neach apiserver, asked for the Node: %s\nthe kubelet's log since its restart (last 60 lines):\n%s", w.Name, last, nodeViaEach(nodes, w.Name), kubeletLogSince(w, logFrom, 60))
	}
	t.Logf("%s: from the command to a new client certificate and the Node Ready: %s (target < 30 s)", w.Name, time.Since(start).Round(100*time.Millisecond))
	after := tasks(t, w)
	for _, id := range before {
		if !slices.Contains(after, id) {
			t.Errorf("container %s on %s is gone after the renewal: before %v, after %v", id, w.Name, before, after)
		}
	}
	rep, _ = inspectJSON(t, w)
	if c := findCert(rep, "kubelet-client"); c == nil || c.Status != "ok" {
		t.Errorf("inspect on %s after the renewal: kubelet-client %+v", w.Name, c)
	}
}

// runPause runs a pod of the pause image on node and waits until it runs.
func runPause(t *testing.T, cs kubernetes.Interface, node string) {
	t.Helper()
	ctx := context.Background()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "certctl-e2e-", Namespace: "default"},
		Spec: corev1.PodSpec{
			NodeName:                      node,
			TerminationGracePeriodSeconds: ptr.To(int64(0)),
			Tolerations:                   []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
			Containers:                    []corev1.Container{{Name: "pause", Image: multilab.PauseImage(), ImagePullPolicy: corev1.PullNever}},
		},
	}
	p, err := cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cs.CoreV1().Pods("default").Delete(context.Background(), p.Name, metav1.DeleteOptions{}) })
	err = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		got, err := cs.CoreV1().Pods("default").Get(ctx, p.Name, metav1.GetOptions{})
		return err == nil && got.Status.Phase == corev1.PodRunning, nil
	})
	if err != nil {
		t.Fatalf("pod %s on %s not running", p.Name, node)
	}
}

// tasks are the IDs of the containers running in node's containerd.
func tasks(t *testing.T, n multilab.Node) []string {
	t.Helper()
	r, err := multilab.Run(multilab.Command(context.Background(), n, "ctr", "-n", "k8s.io", "tasks", "ls", "-q"))
	if err != nil || r.Code != 0 {
		t.Fatalf("ctr tasks ls on %s: %v %s", n.Name, err, r)
	}
	ids := strings.Fields(r.Stdout)
	slices.Sort(ids)
	return ids
}

// TestKubeletServingEnableOnWorker is case A on a real worker, the secure way: enable on the
// worker itself (no admin credentials there: the node's part only), the kubelet restarted, its
// CSR approved from a control-plane node, and then a strict TLS client that verifies against the
// cluster CA, as metrics-server does without --kubelet-insecure-tls, reaches the kubelet.
func TestKubeletServingEnableOnWorker(t *testing.T) {
	nodes := requireLab(t)
	w, cp := workers(nodes)[0], controlPlanes(nodes)[0]
	roots := caPool(t)
	addr := w.IP + ":10250"
	if _, err := servedCert(t, addr).Verify(x509.VerifyOptions{Roots: roots, DNSName: w.IP}); err == nil {
		t.Fatalf("%s already serves a CA-signed certificate for %s: recreate the lab", w.Name, w.IP)
	}
	r := certctlOn(t, w, "kubelet-serving", "enable", "--no-restart")
	if r.Code != 0 || !strings.Contains(r.Stdout+r.Stderr, "approve") {
		t.Fatalf("enable on a worker without admin credentials: want the node's part done and where approval happens, got %s", r)
	}
	start := time.Now()
	lab(t, "kubelet", w.Name, "restart")

	cs := clientset(t)
	ctx := context.Background()
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		csrs, err := cs.CertificatesV1().CertificateSigningRequests().List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		for _, c := range csrs.Items {
			if c.Spec.SignerName == "kubernetes.io/kubelet-serving" && c.Spec.Username == "system:node:"+w.Name && c.CreationTimestamp.After(start.Add(-time.Second)) {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("%s's kubelet filed no kubelet-serving CSR after its restart", w.Name)
	}
	if r := certctlOn(t, cp, "kubelet-serving", "approve", "--node", w.Name); r.Code != 0 {
		t.Fatalf("approve --node %s on %s: %s", w.Name, cp.Name, r)
	}
	var last string
	err = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		c, err := tlsDialVerified(ctx, addr, roots, w.IP)
		if err != nil {
			last = err.Error()
			return false, nil
		}
		return c.Subject.CommonName == "system:node:"+w.Name, nil
	})
	if err != nil {
		t.Fatalf("a verifying client cannot reach %s's kubelet: %s", w.Name, last)
	}
	t.Logf("%s: kubelet restart to a CA-signed serving certificate a strict client accepts: %s", w.Name, time.Since(start).Round(100*time.Millisecond))
}

// tlsDialVerified dials addr verifying against roots for name, and returns the leaf.
func tlsDialVerified(ctx context.Context, addr string, roots *x509.CertPool, name string) (*x509.Certificate, error) {
	d := tls.Dialer{Config: &tls.Config{RootCAs: roots, ServerName: name}}
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	conn, err := d.DialContext(cctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.(*tls.Conn).ConnectionState().PeerCertificates[0], nil
}

// kubeletLogSize is where the lab's log of n's kubelet ends now (0 if there is none yet).
func kubeletLogSize(n multilab.Node) int64 {
	fi, err := os.Stat(filepath.Join(n.Dir(), "kubelet.log"))
	if err != nil {
		return 0
	}
	return fi.Size()
}

// kubeletLogSince is the last lines of n's kubelet log written after offset from, for a
// failure's message.
func kubeletLogSince(n multilab.Node, from int64, lines int) string {
	data, err := os.ReadFile(filepath.Join(n.Dir(), "kubelet.log"))
	if err != nil {
		return err.Error()
	}
	if from > int64(len(data)) {
		from = 0
	}
	ls := strings.Split(strings.TrimRight(string(data[from:]), "\n"), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}

// nodeViaEach asks each control-plane node's apiserver directly (not through the balancer) for
// the Node name, for a failure's message: an apiserver that hangs or fails shows here.
func nodeViaEach(nodes []multilab.Node, name string) string {
	cfg, err := clientcmd.BuildConfigFromFlags("", multilab.AdminKubeconfig())
	if err != nil {
		return err.Error()
	}
	var out []string
	for _, n := range controlPlanes(nodes) {
		c := rest.CopyConfig(cfg)
		c.Host = "https://" + n.APIServer()
		c.Timeout = 5 * time.Second
		cs, err := kubernetes.NewForConfig(c)
		if err != nil {
			return err.Error()
		}
		start := time.Now()
		node, err := cs.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
		took := time.Since(start).Round(time.Millisecond)
		switch {
		case err != nil:
			out = append(out, fmt.Sprintf("%s: %v after %s", n.Name, err, took))
		default:
			ready := "no Ready condition"
			for _, c := range node.Status.Conditions {
				if c.Type == corev1.NodeReady {
					ready = fmt.Sprintf("Ready=%s, heartbeat %s", c.Status, c.LastHeartbeatTime.UTC().Format(time.RFC3339))
				}
			}
			out = append(out, fmt.Sprintf("%s: %s in %s", n.Name, ready, took))
		}
	}
	return strings.Join(out, "; ")
}
