package multinode

import (
	"context"
	"crypto/x509"
	"net"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/certctl/certctl/internal/multilab"
	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/inspect"
)

// A fresh machine that joins the cluster in this test (case B's "kubeadm join 10.2.1.139:6443").
const (
	freshNode = "worker2"
	freshIP   = "10.2.1.155"
)

// TestCaseBLoadBalancerSAN is case B of ../shared/CASES.md on a real cluster: three
// control-plane nodes made with controlPlaneEndpoint on cp1, haproxy at 10.2.1.139 added
// afterwards. Before: a join through the balancer fails on TLS verification, certctl probe and
// inspect --check-san say why. Fix: certctl renew apiserver --san 10.2.1.139 --restart on each
// control-plane node in turn. After: every apiserver serves the SAN with all its old ones, the
// API stayed reachable through the balancer throughout (0 failed requests), and a fresh node
// joins through the balancer and becomes Ready.
func TestCaseBLoadBalancerSAN(t *testing.T) {
	nodes := requireLab(t)
	cps := controlPlanes(nodes)
	if len(cps) < 2 {
		t.Fatalf("the lab has %d control-plane nodes; case B needs several behind the balancer", len(cps))
	}
	roots := caPool(t)
	lbIP := net.ParseIP(multilab.LBIP)

	// As the field made it: no apiserver certificate covers the balancer.
	before := map[string][]string{}
	for _, n := range cps {
		c := servedCert(t, n.APIServer())
		if c.VerifyHostname(multilab.LBIP) == nil {
			t.Fatalf("%s already serves a certificate for %s: the lab is not as case B found it; recreate it (hack/lab/multi.sh down && hack/lab/multi.sh up)", n.Name, multilab.LBIP)
		}
		before[n.Name] = sans(c)
	}

	// Before, 1: a strict client through the balancer (what kubeadm join does) fails, and
	// certctl probe names the missing SAN.
	probe, err := multilab.Run(execCertctl(t, "probe", multilab.LBAddr, "--ca", multilab.CACert()))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("certctl probe %s (before): %s", multilab.LBAddr, probe)
	if probe.Code != 2 || !strings.Contains(probe.Stdout+probe.Stderr, multilab.LBIP) {
		t.Fatalf("probe through the balancer before the fix: want exit 2 naming %s, got %s", multilab.LBIP, probe)
	}

	// Before, 2: inspect --check-san reports it on every control-plane node.
	for _, n := range cps {
		rep, r := inspectJSON(t, n, "--check-san", multilab.LBIP)
		if c := findCert(rep, "apiserver"); !hasCode(c, inspect.CodeSANMissing) || r.Code != 2 {
			t.Fatalf("[%s] inspect --check-san %s: want a %s finding on apiserver and exit 2, got exit %d, %+v", n.Name, multilab.LBIP, inspect.CodeSANMissing, r.Code, c)
		}
	}

	// Before, 3: a fresh node joining through the balancer fails on TLS verification.
	lab(t, "add-node", freshNode, freshIP)
	t.Cleanup(func() { removeFresh(t) })
	r, err := multilab.Lab(context.Background(), "join", freshNode, multilab.LBAddr, "--discovery-timeout", "15s")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("join through the balancer (before): %s", r)
	if r.Code == 0 {
		t.Fatalf("%s joined through %s before the SAN was added", freshNode, multilab.LBAddr)
	}
	if !strings.Contains(r.Stderr+r.Stdout, "x509") && !strings.Contains(r.Stderr+r.Stdout, "certificate") {
		t.Fatalf("the join failed, but not on TLS verification: %s", r)
	}
	lab(t, "remove-node", freshNode)

	// The fix, one control-plane node at a time, with a client polling through the balancer.
	poll := startPoller(t, multilab.LBAddr, roots, 50*time.Millisecond, 10*time.Minute)
	for _, n := range cps {
		start := time.Now()
		r := certctlOn(t, n, "renew", "apiserver", "--san", multilab.LBIP, "--restart", "--yes")
		if r.Code != 0 {
			poll.Stop()
			t.Fatalf("[%s] renew apiserver --san %s --restart: %s", n.Name, multilab.LBIP, r)
		}
		c := servedCert(t, n.APIServer())
		if !slices.ContainsFunc(c.IPAddresses, lbIP.Equal) {
			t.Fatalf("[%s] after renew, %s serves SANs %v without %s", n.Name, n.APIServer(), sans(c), multilab.LBIP)
		}
		for _, old := range before[n.Name] {
			if !slices.Contains(sans(c), old) {
				t.Errorf("[%s] SAN %s of the old certificate is gone: %v", n.Name, old, sans(c))
			}
		}
		if _, err := c.Verify(x509.VerifyOptions{Roots: roots, DNSName: multilab.LBIP}); err != nil {
			t.Errorf("[%s] the served certificate does not verify for %s: %v", n.Name, multilab.LBIP, err)
		}
		t.Logf("[%s] renewed and served in %s", n.Name, time.Since(start).Round(time.Millisecond))
	}
	ok, fail, errs := poll.Stop()
	t.Logf("requests through the balancer during the fix: %d ok, %d failed %v", ok, fail, errs)
	if fail != 0 || ok == 0 {
		t.Errorf("the API through the balancer: %d failed requests (target 0), %d ok: %v", fail, ok, errs)
	}

	// After: a strict client through the balancer passes; inspect is clean for the SAN.
	probe, err = multilab.Run(execCertctl(t, "probe", multilab.LBAddr, "--ca", multilab.CACert()))
	if err != nil {
		t.Fatal(err)
	}
	if probe.Code != 0 {
		t.Fatalf("probe through the balancer after the fix: %s", probe)
	}
	for _, n := range cps {
		rep, _ := inspectJSON(t, n, "--check-san", multilab.LBIP)
		if c := findCert(rep, "apiserver"); c == nil || hasCode(c, inspect.CodeSANMissing) {
			t.Errorf("[%s] inspect --check-san %s after the fix: %+v", n.Name, multilab.LBIP, c)
		}
	}

	// After: the SAN outlives the certificate: kubeadm-config's ClusterConfiguration has it, so
	// the next control-plane join (or kubeadm init phase certs apiserver) keeps it.
	cm, err := clientset(t).CoreV1().ConfigMaps("kube-system").Get(context.Background(), "kubeadm-config", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var cc struct {
		APIServer struct {
			CertSANs []string `json:"certSANs"`
		} `json:"apiServer"`
	}
	if err := yaml.Unmarshal([]byte(cm.Data["ClusterConfiguration"]), &cc); err != nil {
		t.Fatalf("kubeadm-config: %v", err)
	}
	if !slices.Contains(cc.APIServer.CertSANs, multilab.LBIP) {
		t.Errorf("kube-system/kubeadm-config apiServer.certSANs %v lacks %s", cc.APIServer.CertSANs, multilab.LBIP)
	}

	// After: a fresh node joins through the balancer and becomes Ready.
	lab(t, "add-node", freshNode, freshIP)
	start := time.Now()
	lab(t, "join", freshNode, multilab.LBAddr, "--discovery-timeout", "2m")
	ready := waitNodeReady(t, clientset(t), freshNode, 3*time.Minute)
	t.Logf("%s joined through %s and was Ready %s after the join started (%s after the join returned)",
		freshNode, multilab.LBAddr, time.Since(start).Round(time.Millisecond), ready.Round(time.Millisecond))
}

// removeFresh takes the fresh node away again: its machine and its Node object.
func removeFresh(t *testing.T) {
	if r, err := multilab.Lab(context.Background(), "remove-node", freshNode); err != nil || r.Code != 0 {
		t.Errorf("remove-node %s: %v %s", freshNode, err, r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = clientset(t).CoreV1().Nodes().Delete(ctx, freshNode, metav1.DeleteOptions{})
}

// execCertctl is certctl run here, in the client namespace (an operator's workstation).
func execCertctl(t *testing.T, args ...string) *exec.Cmd {
	return exec.Command(testenv.Certctl(t), args...)
}
