//go:build upgradelab

package upgrade

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/version"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/certctl/certctl/internal/apipoll"
	"github.com/certctl/certctl/internal/multilab"
	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/cluster"
	"github.com/certctl/certctl/pkg/inspect"
	"github.com/certctl/certctl/pkg/pki"
)

// defaultTo is the release the lab is upgraded to unless CERTCTL_UPGRADE_TO says otherwise.
const defaultTo = "v1.37.2"

// TestMain fails (never skips) when the lab is not up or was made with a release that is not
// older than the one to upgrade to; it then re-runs the tests in the lab's client namespace, an
// operator's workstation on the nodes' network.
func TestMain(m *testing.M) {
	if err := checkLab(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e/upgrade:", err)
		os.Exit(1)
	}
	if !multilab.InClient() {
		if err := multilab.ReexecInClient(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	code := m.Run()
	testenv.RemoveCertctl()
	os.Exit(code)
}

func checkLab() error {
	if !multilab.Up() {
		return errors.New("the multi-node lab is not up: run `make e2e-upgrade` (or K8S_VERSION=v1.36.3 hack/lab/multi.sh up), as root")
	}
	from, to := multilab.Version(), upgradeTo()
	f, err := version.ParseSemantic(from)
	if err != nil {
		return fmt.Errorf("the lab recorded no usable Kubernetes release (%s/k8s-version %q): recreate it with K8S_VERSION=v1.36.3 hack/lab/multi.sh up: %w", multilab.Dir, from, err)
	}
	tv, err := version.ParseSemantic(to)
	if err != nil {
		return fmt.Errorf("CERTCTL_UPGRADE_TO=%q: %w", to, err)
	}
	if !f.LessThan(tv) {
		return fmt.Errorf("the lab runs %s, which is not older than %s: bring it up with an older K8S_VERSION (make e2e-upgrade uses v1.36.3)", from, to)
	}
	return nil
}

func upgradeTo() string {
	if v := os.Getenv("CERTCTL_UPGRADE_TO"); v != "" {
		return v
	}
	return defaultTo
}

func labNodes(t *testing.T) (all, cps []multilab.Node, workers []multilab.Node) {
	t.Helper()
	nodes, err := multilab.Nodes()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if n.ControlPlane() {
			cps = append(cps, n)
		} else {
			workers = append(workers, n)
		}
	}
	if len(cps) < 2 || len(workers) == 0 {
		t.Fatalf("the lab has %d control-plane nodes and %d workers; the upgrade test needs several control-plane nodes and a worker", len(cps), len(workers))
	}
	return nodes, cps, workers
}

// binary is a cached Kubernetes binary of release v (hack/build-k8s.sh); missing fails the test.
func binary(t *testing.T, v, name string) string {
	t.Helper()
	p := filepath.Join(testenv.BinDirFor(v), name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s %s is not built (%v): run hack/lab/multi.sh bins %s (make e2e-upgrade does)", name, v, err, v)
	}
	return p
}

// certctlHere runs certctl in the client namespace with kubeconfig (which commands that move the
// endpoint or rotate the CA update) and the lab's image.
func certctlHere(t *testing.T, kubeconfig string, args ...string) multilab.Result {
	t.Helper()
	full := append(slices.Clone(args), "--kubeconfig", kubeconfig, "--image", multilab.Image)
	r, err := multilab.Run(exec.Command(testenv.Certctl(t), full...))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("certctl %s: %s", strings.Join(args, " "), r)
	return r
}

// certctlOn runs certctl inside node n, as an operator logged into that node would.
func certctlOn(t *testing.T, n multilab.Node, args ...string) multilab.Result {
	t.Helper()
	r, err := multilab.Run(multilab.Command(context.Background(), n, append([]string{testenv.Certctl(t)}, args...)...))
	if err != nil {
		t.Fatalf("run certctl on %s: %v", n.Name, err)
	}
	return r
}

// lab runs hack/lab/multi.sh and fails the test when it fails.
func lab(t *testing.T, args ...string) multilab.Result {
	t.Helper()
	r, err := multilab.Lab(context.Background(), args...)
	if err != nil || r.Code != 0 {
		t.Fatalf("multi.sh %s: %v %s", strings.Join(args, " "), err, r)
	}
	return r
}

// kubeadmOn runs release v's kubeadm inside node n and appends what it printed to the node's
// kubeadm-upgrade.log (hack/lab/multi-logs.sh shows it when the run fails).
func kubeadmOn(t *testing.T, n multilab.Node, v string, args ...string) multilab.Result {
	t.Helper()
	r, err := multilab.Run(multilab.Command(context.Background(), n, append([]string{binary(t, v, "kubeadm")}, args...)...))
	if err != nil {
		t.Fatalf("run kubeadm on %s: %v", n.Name, err)
	}
	logf, ferr := os.OpenFile(filepath.Join(n.Dir(), "kubeadm-upgrade.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if ferr == nil {
		fmt.Fprintf(logf, "===== kubeadm %s (%s)\n%s%s", strings.Join(args, " "), r.Took.Round(time.Millisecond), r.Stdout, r.Stderr)
		logf.Close()
	}
	if r.Code != 0 {
		t.Fatalf("[%s] kubeadm %s: %s", n.Name, strings.Join(args, " "), r)
	}
	return r
}

// nodeFile reads path inside node n's mount namespace (links resolve as the node sees them).
func nodeFile(t *testing.T, n multilab.Node, path string) []byte {
	t.Helper()
	r, err := multilab.Run(multilab.Command(context.Background(), n, "cat", path))
	if err != nil || r.Code != 0 {
		t.Fatalf("[%s] read %s: %v %s", n.Name, path, err, r)
	}
	return []byte(r.Stdout)
}

func nodeHas(t *testing.T, n multilab.Node, path string) bool {
	t.Helper()
	r, err := multilab.Run(multilab.Command(context.Background(), n, "test", "-e", path))
	if err != nil {
		t.Fatal(err)
	}
	return r.Code == 0
}

// adminCopy is a copy of the lab's admin kubeconfig, for the commands that update the
// kubeconfig they use.
func adminCopy(t *testing.T) string {
	t.Helper()
	local, err := multilab.CopyAdmin(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return local
}

// followLab makes the lab's CA file and admin kubeconfig those of the kubeconfig at local (what
// multi.sh's status and the other helpers read), as the multinode tests do.
func followLab(t *testing.T, local string) {
	t.Helper()
	if err := multilab.Follow(local); err != nil {
		t.Fatal(err)
	}
}

func clientsetFor(t *testing.T, kubeconfig string) kubernetes.Interface {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Timeout = 15 * time.Second
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func poolOf(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

// handshake is a real TLS handshake with addr that verifies the chain against roots and the
// certificate against serverName (an IP or a DNS name), as kubeadm join or kubectl would.
func handshake(addr, serverName string, roots *x509.CertPool) (tls.ConnectionState, error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{RootCAs: roots, ServerName: serverName})
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer conn.Close()
	return conn.ConnectionState(), nil
}

// gitVersion is the release the apiserver at addr reports (/version, readable anonymously),
// verified against roots.
func gitVersion(addr string, roots *x509.CertPool) (string, error) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	resp, err := c.Get("https://" + addr + "/version")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var v struct {
		GitVersion string `json:"gitVersion"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return "", fmt.Errorf("%s/version: %w", addr, err)
	}
	return v.GitVersion, nil
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// waitKubelet polls the Node until it is Ready and its kubelet reports release v.
func waitKubelet(t *testing.T, cs kubernetes.Interface, name, v string, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	last := "never read"
	err := wait.PollUntilContextTimeout(context.Background(), 500*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			last = err.Error()
			return false, nil
		}
		last = fmt.Sprintf("kubelet %s, Ready %v", n.Status.NodeInfo.KubeletVersion, nodeReady(n))
		return nodeReady(n) && n.Status.NodeInfo.KubeletVersion == v, nil
	})
	if err != nil {
		t.Fatalf("node %s: not Ready with kubelet %s after %s (last: %s)", name, v, timeout, last)
	}
	return time.Since(start)
}

// poller asks addr's path every 50 ms until stopped, verifying the chain against roots (not
// the name), and records the outages a client saw (internal/apipoll).
type poller = apipoll.Poller

type window = apipoll.Window

func startPoller(addr, path string, roots *x509.CertPool, max time.Duration) *poller {
	return apipoll.Start(apipoll.Options{Addr: addr, Path: path, Roots: roots, Max: max})
}

func windowsText(ws []window) string { return apipoll.Text(ws) }

// kubeletCaseA are the findings a kubeadm node legitimately has: its kubelet serves the
// self-signed certificate kubeadm leaves by default (case A), which covers no IP address.
var kubeletCaseA = []string{inspect.CodeKubeletNoIPSANs, inspect.CodeKubeletIPMissing, inspect.CodeKubeletSelfSigned}

// inspectClean runs certctl inspect on every node (control-plane nodes with --live, --api and
// --check-san for the balancer, the worker with --live) and fails on any finding above info but
// the kubelet's case A, and on a node whose report lacks what its role has.
func inspectClean(t *testing.T, nodes []multilab.Node, when string) {
	t.Helper()
	for _, n := range nodes {
		args := []string{"inspect", "-o", "json", "--live"}
		if n.ControlPlane() {
			args = append(args, "--api", "--check-san", multilab.LBIP)
		}
		r := certctlOn(t, n, args...)
		var rep inspect.Report
		if err := json.Unmarshal([]byte(r.Stdout), &rep); err != nil || r.Code == 3 {
			t.Errorf("[%s] %s: certctl %s: %v %s", n.Name, when, strings.Join(args, " "), err, r)
			continue
		}
		if rep.ControlPlane != n.ControlPlane() {
			t.Errorf("[%s] %s: inspect says controlPlane=%v, the node's role is %s", n.Name, when, rep.ControlPlane, n.Role)
		}
		seen := map[string]bool{}
		var notes []string
		for _, c := range rep.Certificates {
			seen[c.Name] = c.Status != "absent"
			for _, f := range c.Findings {
				switch {
				case strings.HasPrefix(c.Name, "kubelet") && slices.Contains(kubeletCaseA, f.Code), f.Severity == inspect.SevInfo:
					notes = append(notes, c.Name+":"+f.Code)
				default:
					t.Errorf("[%s] %s: inspect: %s has a %s finding %s: %s", n.Name, when, c.Name, f.Severity, f.Code, f.Message)
				}
			}
		}
		want := []string{"kubelet.conf", "kubelet-client"}
		if n.ControlPlane() {
			want = append(want, "ca", "apiserver", "apiserver-kubelet-client", "etcd-ca", "etcd-server", "front-proxy-client", "admin.conf", "controller-manager.conf", "scheduler.conf")
		}
		for _, name := range want {
			if !seen[name] {
				t.Errorf("[%s] %s: inspect did not check %s", n.Name, when, name)
			}
		}
		t.Logf("[%s] %s: inspect exit %d, %d certificates, expected notes %v", n.Name, when, r.Code, len(rep.Certificates), notes)
	}
}

// assertNoJobs: no certctl Job is left that is not finished or being deleted.
func assertNoJobs(t *testing.T, cs kubernetes.Interface) {
	t.Helper()
	jobs, err := cs.BatchV1().Jobs("kube-system").List(context.Background(), metav1.ListOptions{LabelSelector: cluster.LabelName + "=certctl"})
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range jobs.Items {
		if j.DeletionTimestamp == nil && j.Status.Succeeded+j.Status.Failed == 0 {
			t.Errorf("job %s left behind", j.Name)
		}
	}
}

// onlyCA is the one certificate of a CA bundle; more than one fails the test.
func onlyCA(t *testing.T, what string, data []byte) *x509.Certificate {
	t.Helper()
	certs := pki.CertificatesIn(data)
	if len(certs) != 1 {
		t.Fatalf("%s holds %d certificates, want one CA", what, len(certs))
	}
	return certs[0]
}

// equalPEM reports whether data holds exactly the certificate want.
func equalPEM(data []byte, want *x509.Certificate) bool {
	certs := pki.CertificatesIn(data)
	return len(certs) == 1 && bytes.Equal(certs[0].Raw, want.Raw)
}
