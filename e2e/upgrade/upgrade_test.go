//go:build upgradelab

package upgrade

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/certctl/certctl/internal/apipoll"
	"github.com/certctl/certctl/internal/multilab"
	"github.com/certctl/certctl/pkg/cluster"
	"github.com/certctl/certctl/pkg/kubeadmconfig"
	"github.com/certctl/certctl/pkg/lease"
	"github.com/certctl/certctl/pkg/pki"
)

// TestUpgradeInTheMiddle is issue 19's upgrade in the middle. On the multi-node lab made with
// an older release (v1.36.3 in make e2e-upgrade), as case B found it:
//
//  1. `certctl cluster endpoint 10.2.1.139:6443` adds the balancer's SAN to every apiserver
//     certificate (recorded in kubeadm-config's certSANs) and moves the cluster onto it;
//  2. `certctl cluster ca-rotate ca` trust, issue, drop replaces the cluster CA;
//  3. the newer release's images go into every node's containerd; its kubeadm runs `upgrade
//     apply` on cp1 and `upgrade node` on the other control-plane nodes and the worker, each
//     node's kubelet binary swapped for the new one and restarted after its kubeadm, as an
//     operator does;
//
// and proves: every node's kubelet and apiserver run the new release; every apiserver (and the
// balancer) completes a real TLS handshake that verifies the balancer's address against the
// rotated CA alone; kubeadm-config still names the balancer and its SAN; every node's ca.crt,
// kubeconfigs, cluster-info and kube-root-ca.crt hold the rotated CA alone, and every
// certificate the cluster CA signs there (files and what is served) chains to it, none to the
// old; `certctl inspect --live` is clean on every node; `certctl cluster renew all` then works
// as on a fresh cluster (the API through the balancer never down a second, no two apiservers
// down at once, every node serving its renewed certificate, SAN kept), and inspect is clean
// again.
func TestUpgradeInTheMiddle(t *testing.T) {
	nodes, cps, _ := labNodes(t)
	cp1 := cps[0]
	from, to := multilab.Version(), upgradeTo()
	local := adminCopy(t)
	cs := clientsetFor(t, local)
	binary(t, to, "kubeadm") // the new release's binaries, before anything changes
	binary(t, to, "kubelet")
	timings := map[string]time.Duration{}
	var order []string
	timed := func(name string, f func()) {
		t.Helper()
		start := time.Now()
		f()
		timings[name] = time.Since(start)
		order = append(order, name)
		t.Logf("STEP %s: %s", name, timings[name].Round(100*time.Millisecond))
	}
	defer func() {
		var out []string
		for _, name := range order {
			out = append(out, name+" "+timings[name].Round(100*time.Millisecond).String())
		}
		t.Logf("step times: %s", strings.Join(out, "; "))
	}()

	// 0. The lab as made: every node on `from`, no apiserver certificate covering the balancer.
	for _, n := range nodes {
		waitKubelet(t, cs, n.Name, from, time.Minute)
	}
	for _, n := range cps {
		if c := servedLeaf(t, n.APIServer()); c.VerifyHostname(multilab.LBIP) == nil {
			t.Fatalf("%s already serves a certificate for %s: this test needs the lab as case B made it (hack/lab/multi.sh down, then make e2e-upgrade)", n.Name, multilab.LBIP)
		}
	}
	oldCA := onlyCA(t, cp1.Name+" ca.crt", nodeFile(t, cp1, "/etc/kubernetes/pki/ca.crt"))

	// 1. The balancer's SAN and the endpoint.
	timed("certctl cluster endpoint", func() {
		if r := certctlHere(t, local, "cluster", "endpoint", multilab.LBAddr); r.Code != 0 {
			t.Fatalf("cluster endpoint %s: %s", multilab.LBAddr, r)
		}
	})
	followLab(t, local)
	cs = clientsetFor(t, local)
	for _, n := range cps {
		if _, err := handshake(n.APIServer(), multilab.LBIP, poolOf(oldCA)); err != nil {
			t.Fatalf("[%s] after cluster endpoint, a handshake for %s: %v", n.Name, multilab.LBIP, err)
		}
	}
	assertKubeadmConfig(t, cs, from, "after cluster endpoint")

	// 2. The cluster CA rotated: trust, issue, drop.
	for _, phase := range []string{"trust", "issue", "drop"} {
		timed("certctl cluster ca-rotate ca --phase "+phase, func() {
			if r := certctlHere(t, local, "cluster", "ca-rotate", "ca", "--phase", phase); r.Code != 0 {
				t.Fatalf("cluster ca-rotate ca --phase %s: %s", phase, r)
			}
		})
		followLab(t, local)
		cs = clientsetFor(t, local)
		assertNoJobs(t, cs)
	}
	newCA := onlyCA(t, cp1.Name+" ca.crt after drop", nodeFile(t, cp1, "/etc/kubernetes/pki/ca.crt"))
	if newCA.Equal(oldCA) {
		t.Fatalf("after ca-rotate drop %s still holds the old CA", cp1.Name)
	}
	assertOnlyCA(t, cs, nodes, newCA, oldCA, "after the rotation")
	before := map[string]*x509.Certificate{}
	for _, n := range cps {
		before[n.Name] = servedLeaf(t, n.APIServer())
		t.Logf("[%s] before the upgrade: apiserver.crt holds %d certificate(s); serves serial %s, not before %s",
			n.Name, len(pkiCerts(t, n, "apiserver.crt")), before[n.Name].SerialNumber, before[n.Name].NotBefore.Format(time.RFC3339))
	}

	// 3. The upgrade, with a client polling the API through the balancer throughout.
	timed("images of "+to+" into every node", func() { lab(t, "images", to) })
	lb := startPoller(multilab.LBAddr, "/version", poolOf(newCA), 60*time.Minute)
	for _, n := range nodes {
		// SystemVerification fails on this machine's cgroup v1 (hack/lab/README.md); the lab has
		// no CoreDNS (skipped at init), whose migration check apply cannot run on nothing.
		args := []string{"upgrade", "node", "--ignore-preflight-errors=SystemVerification"}
		if n.Name == cp1.Name {
			args = []string{"upgrade", "apply", to, "--yes", "--ignore-preflight-errors=SystemVerification,CoreDNSUnsupportedPlugins,CoreDNSMigration"}
		}
		timed(n.Name+": kubeadm "+strings.Join(args[:2], " "), func() {
			r := kubeadmOn(t, n, to, args...)
			t.Logf("[%s] kubeadm %s %s: %s", n.Name, args[0], args[1], tail(r.Stdout, 25))
		})
		timed(n.Name+": kubelet "+to+" Ready", func() {
			swapped := time.Now()
			lab(t, "kubelet", n.Name, "upgrade", to)
			waitKubelet(t, cs, n.Name, to, 5*time.Minute)
			if n.ControlPlane() {
				// The new kubelet recreates every static pod (seen 1.36.3 -> 1.37.2: their
				// mirror pods "didn't match the static Pod"), the apiserver with them.
				waitStaticPods(t, cs, n, swapped, to, poolOf(newCA), 5*time.Minute)
			}
		})
	}
	ok, fail, errs := lb.Stop()
	windows := lb.Windows()
	t.Logf("through the balancer during the upgrade (kubeadm's restarts, no drain): /version %d ok, %d failed %v; outages: %s", ok, fail, errs, windowsText(windows))
	if ok == 0 {
		t.Errorf("no request through the balancer succeeded during the upgrade")
	}

	// 4. What survived. The release: every kubelet and apiserver, and kubeadm-config.
	for _, n := range cps {
		if v, err := gitVersion(n.APIServer(), poolOf(newCA)); err != nil || v != to {
			t.Errorf("[%s] the apiserver reports %q (%v), want %s", n.Name, v, err, to)
		}
	}
	assertKubeadmConfig(t, cs, to, "after the upgrade")
	// The SAN: a real handshake for the balancer's address, verified against the rotated CA
	// alone, with every apiserver and through the balancer (one connection per backend at least).
	for _, n := range cps {
		st, err := handshake(n.APIServer(), multilab.LBIP, poolOf(newCA))
		if err != nil {
			t.Errorf("[%s] after the upgrade, a handshake for %s verified against the rotated CA: %v", n.Name, multilab.LBIP, err)
			continue
		}
		leaf := st.PeerCertificates[0]
		if leaf.CheckSignatureFrom(newCA) != nil {
			t.Errorf("[%s] the apiserver certificate is not signed by the rotated CA itself (issuer %s)", n.Name, leaf.Issuer)
		}
		t.Logf("[%s] after the upgrade: serves serial %s (before %s: renewed by kubeadm %v), not before %s, chain of %d, SANs %v; apiserver.crt holds %d certificate(s)",
			n.Name, leaf.SerialNumber, before[n.Name].SerialNumber, leaf.SerialNumber.Cmp(before[n.Name].SerialNumber) != 0,
			leaf.NotBefore.Format(time.RFC3339), len(st.PeerCertificates), sanList(leaf), len(pkiCerts(t, n, "apiserver.crt")))
	}
	for i := 0; i < 2*len(cps); i++ {
		if _, err := handshake(multilab.LBAddr, multilab.LBIP, poolOf(newCA)); err != nil {
			t.Errorf("through the balancer after the upgrade, handshake %d for %s: %v", i, multilab.LBIP, err)
		}
	}
	// The CA: the rotated one alone, everywhere.
	assertOnlyCA(t, cs, nodes, newCA, oldCA, "after the upgrade")
	// inspect, on every node.
	timed("certctl inspect on every node", func() { inspectClean(t, nodes, "after the upgrade") })
	if t.Failed() {
		t.FailNow()
	}

	// 5. certctl cluster renew all on the upgraded cluster.
	timed("certctl cluster renew all", func() { clusterRenew(t, local, cs, cps, newCA) })
	assertOnlyCA(t, cs, nodes, newCA, oldCA, "after cluster renew")
	inspectClean(t, nodes, "after cluster renew")
}

// waitStaticPods polls until the new kubelet of control-plane node n has recreated its
// apiserver's pod (its mirror pod made after swapped), its four static pods are Ready, and its apiserver
// answers /version with release v over TLS verified against roots.
func waitStaticPods(t *testing.T, cs kubernetes.Interface, n multilab.Node, swapped time.Time, v string, roots *x509.CertPool, timeout time.Duration) {
	t.Helper()
	start := time.Now()
	last := "never read"
	since := metav1.NewTime(swapped.Truncate(time.Second)) // creationTimestamp has 1 s resolution
	err := wait.PollUntilContextTimeout(context.Background(), 500*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		for _, c := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"} {
			p, err := cs.CoreV1().Pods("kube-system").Get(ctx, c+"-"+n.Name, metav1.GetOptions{})
			if err != nil {
				last = err.Error()
				return false, nil
			}
			if (c == "kube-apiserver" && p.CreationTimestamp.Before(&since)) || !podReady(p) {
				last = fmt.Sprintf("%s: made %s (kubelet swapped %s), Ready %v", p.Name, p.CreationTimestamp.Format(time.RFC3339), swapped.Format(time.RFC3339), podReady(p))
				return false, nil
			}
		}
		got, err := gitVersion(n.APIServer(), roots)
		if err != nil || got != v {
			last = fmt.Sprintf("apiserver %q %v", got, err)
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("[%s] the static pods under the new kubelet: not ready after %s (last: %s)", n.Name, timeout, last)
	}
	t.Logf("[%s] static pods recreated by the %s kubelet and ready %s after the swap", n.Name, v, time.Since(start).Round(100*time.Millisecond))
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// clusterRenew is TestClusterRenew's run on the upgraded cluster: the API through the balancer
// never down a second, no two apiservers down at once, each node serving its renewed
// certificate with the balancer's SAN, signed by the rotated CA; no Job or progress record left.
func clusterRenew(t *testing.T, local string, cs kubernetes.Interface, cps []multilab.Node, ca *x509.Certificate) {
	t.Helper()
	roots := poolOf(ca)
	before := map[string]string{}
	for _, n := range cps {
		before[n.Name] = servedLeaf(t, n.APIServer()).SerialNumber.String()
	}
	lb := startPoller(multilab.LBAddr, "/readyz", roots, 20*time.Minute)
	api := startPoller(multilab.LBAddr, "/version", roots, 20*time.Minute)
	own := map[string]*poller{}
	for _, n := range cps {
		own[n.Name] = startPoller(n.APIServer(), "/readyz", roots, 20*time.Minute)
	}
	r := certctlHere(t, local, "cluster", "renew", "all", "--days", "3650")
	var all []window
	for _, n := range cps {
		own[n.Name].Stop()
		ws := own[n.Name].Windows()
		t.Logf("%s: its own apiserver was down %d times: %s", n.Name, len(ws), windowsText(ws))
		for _, w := range ws {
			w.Node = n.Name
			all = append(all, w)
		}
	}
	for name, p := range map[string]*poller{"/readyz": lb, "/version": api} {
		ok, fail, errs := p.Stop()
		ws := p.Windows()
		t.Logf("through the balancer during cluster renew all: %s %d ok, %d failed %v; outages %s", name, ok, fail, errs, windowsText(ws))
		if ok == 0 {
			t.Errorf("no %s request through the balancer succeeded during cluster renew all", name)
		}
		if l := apipoll.Longest(ws); l >= time.Second {
			t.Errorf("the API (%s) through the balancer was down %s during cluster renew all", name, l.Round(time.Millisecond))
		}
	}
	if r.Code != 0 {
		t.Fatalf("cluster renew all after the upgrade: %s", r)
	}
	for _, o := range apipoll.Overlaps(all) {
		t.Errorf("the apiservers of %s and %s were down at the same time: %s and %s", o[0].Node, o[1].Node, windowsText(o[:1]), windowsText(o[1:]))
	}
	for _, n := range cps {
		st, err := handshake(n.APIServer(), multilab.LBIP, roots)
		if err != nil {
			t.Errorf("[%s] after cluster renew, a handshake for %s verified against the rotated CA: %v", n.Name, multilab.LBIP, err)
			continue
		}
		if got := st.PeerCertificates[0].SerialNumber.String(); got == before[n.Name] {
			t.Errorf("[%s] still serves the apiserver certificate it had before cluster renew (serial %s)", n.Name, got)
		}
	}
	assertNoJobs(t, cs)
	if _, err := cs.CoreV1().ConfigMaps(lease.Namespace).Get(context.Background(), cluster.ProgressName, metav1.GetOptions{}); err == nil {
		t.Errorf("the progress record %s is left after a complete run", cluster.ProgressName)
	}
}

// assertKubeadmConfig: kubeadm-config's ClusterConfiguration names the balancer as
// controlPlaneEndpoint and in apiServer.certSANs (what certctl recorded, and what kubeadm uses
// when it makes an apiserver certificate), and the release v.
func assertKubeadmConfig(t *testing.T, cs kubernetes.Interface, v, when string) {
	t.Helper()
	doc, _, err := kubeadmconfig.Read(context.Background(), cs)
	if err != nil {
		t.Fatal(err)
	}
	if ep, err := kubeadmconfig.ControlPlaneEndpoint(doc); err != nil || ep != multilab.LBAddr {
		t.Errorf("%s: kubeadm-config controlPlaneEndpoint %q (%v), want %s", when, ep, err, multilab.LBAddr)
	}
	var cc struct {
		KubernetesVersion string `json:"kubernetesVersion"`
		APIServer         struct {
			CertSANs []string `json:"certSANs"`
		} `json:"apiServer"`
	}
	if err := yaml.Unmarshal([]byte(doc), &cc); err != nil {
		t.Fatalf("kubeadm-config: %v", err)
	}
	if !slices.Contains(cc.APIServer.CertSANs, multilab.LBIP) {
		t.Errorf("%s: kubeadm-config apiServer.certSANs %v lacks %s", when, cc.APIServer.CertSANs, multilab.LBIP)
	}
	if cc.KubernetesVersion != v {
		t.Errorf("%s: kubeadm-config kubernetesVersion %s, want %s", when, cc.KubernetesVersion, v)
	}
}

// assertOnlyCA: the rotated CA is the only cluster CA: every node's ca.crt and kubeconfigs hold
// it alone, the certificates it signs there (the apiserver's, its kubelet client's, every
// kubeconfig's client certificate) chain to it directly, what the apiservers and kubelets serve
// never to the old one; kube-public/cluster-info and kube-root-ca.crt hold it alone.
func assertOnlyCA(t *testing.T, cs kubernetes.Interface, nodes []multilab.Node, ca, old *x509.Certificate, when string) {
	t.Helper()
	ctx := context.Background()
	roots := poolOf(ca)
	signed := func(n multilab.Node, what string, pemData []byte, usage x509.ExtKeyUsage) {
		t.Helper()
		certs := pki.CertificatesIn(pemData)
		if len(certs) == 0 {
			t.Errorf("[%s] %s: %s holds no certificate", n.Name, when, what)
			return
		}
		if _, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
			t.Errorf("[%s] %s: %s does not chain to the rotated CA: %v", n.Name, when, what, err)
		}
	}
	for _, n := range nodes {
		if data := nodeFile(t, n, "/etc/kubernetes/pki/ca.crt"); !equalPEM(data, ca) {
			t.Errorf("[%s] %s: ca.crt holds %d certificate(s), want the rotated CA alone", n.Name, when, len(pki.CertificatesIn(data)))
		}
		files := []string{"kubelet.conf"}
		if n.ControlPlane() {
			files = append(files, "admin.conf", "controller-manager.conf", "scheduler.conf")
			if nodeHas(t, n, "/etc/kubernetes/super-admin.conf") {
				files = append(files, "super-admin.conf")
			}
			signed(n, "apiserver.crt", nodeFile(t, n, "/etc/kubernetes/pki/apiserver.crt"), x509.ExtKeyUsageServerAuth)
			signed(n, "apiserver-kubelet-client.crt", nodeFile(t, n, "/etc/kubernetes/pki/apiserver-kubelet-client.crt"), x509.ExtKeyUsageClientAuth)
		}
		for _, f := range files {
			path := "/etc/kubernetes/" + f
			kc, err := clientcmd.Load(nodeFile(t, n, path))
			if err != nil {
				t.Errorf("[%s] %s: %v", n.Name, path, err)
				continue
			}
			for name, c := range kc.Clusters {
				if !equalPEM(c.CertificateAuthorityData, ca) {
					t.Errorf("[%s] %s: %s cluster %s trusts %d certificate(s), want the rotated CA alone", n.Name, when, f, name, len(pki.CertificatesIn(c.CertificateAuthorityData)))
				}
			}
			for name, a := range kc.AuthInfos {
				data := a.ClientCertificateData
				if len(data) == 0 && a.ClientCertificate != "" {
					data = nodeFile(t, n, a.ClientCertificate)
				}
				signed(n, f+" user "+name, data, x509.ExtKeyUsageClientAuth)
			}
		}
		// Served: the kubelet's certificate (self-signed by the kubelet by default: case A) is
		// never one of the old CA; one that claims the cluster CA as issuer chains to the new.
		leaf, chain := served(t, n.IP+":10250")
		if leaf.CheckSignatureFrom(old) == nil {
			t.Errorf("[%s] %s: the kubelet serves a certificate of the old CA", n.Name, when)
		}
		if leaf.Issuer.String() == ca.Subject.String() {
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: chain}); err != nil {
				t.Errorf("[%s] %s: the kubelet's serving certificate, issued by %s, does not chain to the rotated CA: %v", n.Name, when, leaf.Issuer, err)
			}
		}
		if n.ControlPlane() {
			leaf, _ := served(t, n.APIServer())
			if leaf.CheckSignatureFrom(ca) != nil {
				t.Errorf("[%s] %s: the apiserver serves a certificate the rotated CA did not sign (issuer %s)", n.Name, when, leaf.Issuer)
			}
		}
	}
	ci, err := cs.CoreV1().ConfigMaps("kube-public").Get(ctx, "cluster-info", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if kc, err := clientcmd.Load([]byte(ci.Data["kubeconfig"])); err != nil {
		t.Errorf("kube-public/cluster-info: %v", err)
	} else {
		for _, c := range kc.Clusters {
			if !equalPEM(c.CertificateAuthorityData, ca) || c.Server != "https://"+multilab.LBAddr {
				t.Errorf("%s: kube-public/cluster-info names %s and %d CA certificate(s), want the balancer and the rotated CA alone", when, c.Server, len(pki.CertificatesIn(c.CertificateAuthorityData)))
			}
		}
	}
	for _, ns := range []string{"default", "kube-system"} {
		cm, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, "kube-root-ca.crt", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !equalPEM([]byte(cm.Data["ca.crt"]), ca) {
			t.Errorf("%s: %s/kube-root-ca.crt holds %d certificate(s), want the rotated CA alone", when, ns, len(pki.CertificatesIn([]byte(cm.Data["ca.crt"]))))
		}
	}
}

func pkiCerts(t *testing.T, n multilab.Node, name string) []*x509.Certificate {
	t.Helper()
	return pki.CertificatesIn(nodeFile(t, n, "/etc/kubernetes/pki/"+name))
}

// served is what addr presents: its leaf and the rest of its chain (read, not verified).
func served(t *testing.T, addr string) (*x509.Certificate, *x509.CertPool) {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // reading what is served
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer conn.Close()
	peers := conn.ConnectionState().PeerCertificates
	rest := x509.NewCertPool()
	for _, c := range peers[1:] {
		rest.AddCert(c)
	}
	return peers[0], rest
}

func servedLeaf(t *testing.T, addr string) *x509.Certificate {
	t.Helper()
	leaf, _ := served(t, addr)
	return leaf
}

func sanList(c *x509.Certificate) []string {
	out := slices.Clone(c.DNSNames)
	for _, ip := range c.IPAddresses {
		out = append(out, ip.String())
	}
	return out
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
