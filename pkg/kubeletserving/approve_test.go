package kubeletserving_test

import (
	"context"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/csrwait"
	"github.com/certctl/certctl/pkg/kubeletserving"
	"github.com/certctl/certctl/pkg/pki"
	certv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// cluster is a real control plane with Node objects and node identities.
type cluster struct {
	cp    *testenv.ControlPlane
	admin *kubernetes.Clientset
	ca    *pki.Item
	caPEM []byte
	dir   string
}

func newCluster(t testing.TB) *cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("starts etcd, kube-apiserver and kube-controller-manager")
	}
	tr := testenv.KubeadmTree(t, testenv.TreeOptions{})
	cp := testenv.StartControlPlane(t, testenv.ControlPlaneOptions{PKIDir: tr.Layout.PKIDir, KubeconfigDir: tr.Layout.KubeconfigDir, CSRSigner: true})
	inv := pki.Load(tr.Layout, pki.Default())
	caPEM, err := os.ReadFile(filepath.Join(tr.Layout.PKIDir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	return &cluster{cp: cp, admin: cp.Clientset(t), ca: inv.Get("ca"), caPEM: caPEM, dir: tr.Root}
}

// addNode creates a Node and sets its status addresses, as the kubelet would.
func (c *cluster) addNode(t testing.TB, name string, addrs ...corev1.NodeAddress) {
	t.Helper()
	ctx := context.Background()
	n, err := c.admin.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create node %s: %v", name, err)
	}
	n.Status.Addresses = addrs
	if _, err := c.admin.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("node %s status: %v", name, err)
	}
}

// nodeClient authenticates as the kubelet of node name: a client certificate CN
// system:node:<name>, O system:nodes, signed by the cluster CA.
func (c *cluster) nodeClient(t testing.TB, name string) *kubernetes.Clientset {
	t.Helper()
	key, _ := pki.GenerateKey(pki.AlgECDSAP256)
	now := time.Now()
	cert, err := pki.Sign(c.ca.Cert(), c.ca.Key, key, pki.Template{
		Subject:  pkix.Name{CommonName: "system:node:" + name, Organization: []string{"system:nodes"}},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, _ := pki.EncodePrivateKey(key)
	cs, err := kubernetes.NewForConfig(&rest.Config{Host: c.cp.URL, TLSClientConfig: rest.TLSClientConfig{
		CertData: pki.EncodeCertificates(cert), KeyData: keyPEM, CAData: c.caPEM, ServerName: testenv.APIServerName}})
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

type csrSpec struct {
	cn     string
	orgs   []string
	ips    []string
	dns    []string
	emails []string
	usages []certv1.KeyUsage
	alg    string
	signer string
}

func (c *cluster) file(t testing.TB, cs kubernetes.Interface, name string, s csrSpec) {
	t.Helper()
	if err := c.tryFile(cs, name, s); err != nil {
		t.Fatalf("file CSR %s: %v", name, err)
	}
}

func (c *cluster) tryFile(cs kubernetes.Interface, name string, s csrSpec) error {
	alg := s.alg
	if alg == "" {
		alg = pki.AlgECDSAP256
	}
	var key crypto.Signer
	key, _ = pki.GenerateKey(alg)
	tmpl := pki.Template{Subject: pkix.Name{CommonName: s.cn, Organization: s.orgs}, DNSNames: s.dns, EmailAddresses: s.emails}
	for _, ip := range s.ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(ip))
	}
	req, err := pki.CreateCSR(key, tmpl)
	if err != nil {
		return err
	}
	usages := s.usages
	if usages == nil {
		usages = []certv1.KeyUsage{certv1.UsageDigitalSignature, certv1.UsageServerAuth}
	}
	signer := s.signer
	if signer == "" {
		signer = certv1.KubeletServingSignerName
	}
	_, err = cs.CertificatesV1().CertificateSigningRequests().Create(context.Background(), &certv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       certv1.CertificateSigningRequestSpec{Request: req, SignerName: signer, Usages: usages},
	}, metav1.CreateOptions{})
	return err
}

func addr(typ corev1.NodeAddressType, a string) corev1.NodeAddress {
	return corev1.NodeAddress{Type: typ, Address: a}
}

// TestApproveRealNodes files legitimate and spoofed kubelet-serving CSRs from real node
// identities against a real apiserver; certctl approves every legitimate one and none of
// the spoofed ones, and the real controller-manager signs the approved ones.
func TestApproveRealNodes(t *testing.T) {
	c := newCluster(t)
	c.addNode(t, "node-a", addr(corev1.NodeInternalIP, "10.0.0.1"), addr(corev1.NodeHostName, "node-a"), addr(corev1.NodeInternalDNS, "node-a.internal"))
	c.addNode(t, "node-b", addr(corev1.NodeInternalIP, "10.0.0.2"), addr(corev1.NodeExternalIP, "203.0.113.2"), addr(corev1.NodeHostName, "node-b"))
	a, b, ghost := c.nodeClient(t, "node-a"), c.nodeClient(t, "node-b"), c.nodeClient(t, "node-c")
	nodes := []string{"system:nodes"}
	ds, sa, ke, ca := certv1.UsageDigitalSignature, certv1.UsageServerAuth, certv1.UsageKeyEncipherment, certv1.UsageClientAuth

	tests := []struct {
		name   string
		by     kubernetes.Interface
		spec   csrSpec
		want   string
		reason string
	}{
		{"legit-a", a, csrSpec{cn: "system:node:node-a", orgs: nodes, ips: []string{"10.0.0.1"}, dns: []string{"node-a"}}, kubeletserving.ActionApproved, ""},
		{"legit-a-internal-dns", a, csrSpec{cn: "system:node:node-a", orgs: nodes, ips: []string{"10.0.0.1"}, dns: []string{"node-a.internal"}}, kubeletserving.ActionApproved, ""},
		{"legit-b-rsa-with-key-encipherment", b, csrSpec{cn: "system:node:node-b", orgs: nodes, ips: []string{"10.0.0.2", "203.0.113.2"}, dns: []string{"node-b"}, alg: pki.AlgRSA2048, usages: []certv1.KeyUsage{ds, ke, sa}}, kubeletserving.ActionApproved, ""},
		{"spoof-another-nodes-ip", a, csrSpec{cn: "system:node:node-a", orgs: nodes, ips: []string{"10.0.0.1", "10.0.0.2"}}, kubeletserving.ActionDenied, "IP SAN 10.0.0.2 is not an address of node node-a"},
		{"spoof-foreign-dns", a, csrSpec{cn: "system:node:node-a", orgs: nodes, ips: []string{"10.0.0.1"}, dns: []string{"api.example.com"}}, kubeletserving.ActionDenied, `DNS SAN "api.example.com"`},
		{"spoof-extra-usage-client-auth", a, csrSpec{cn: "system:node:node-a", orgs: nodes, ips: []string{"10.0.0.1"}, usages: []certv1.KeyUsage{ds, sa, ca}}, kubeletserving.ActionDenied, "usages"},
		{"spoof-key-encipherment-on-ecdsa", a, csrSpec{cn: "system:node:node-a", orgs: nodes, ips: []string{"10.0.0.1"}, usages: []certv1.KeyUsage{ds, ke, sa}}, kubeletserving.ActionDenied, "usages"},
		{"spoof-email-san", a, csrSpec{cn: "system:node:node-a", orgs: nodes, ips: []string{"10.0.0.1"}, emails: []string{"root@node-a"}}, kubeletserving.ActionDenied, "email or URI SANs"},
		{"spoof-wrong-org", a, csrSpec{cn: "system:node:node-a", orgs: []string{"system:masters"}, ips: []string{"10.0.0.1"}}, kubeletserving.ActionDenied, "subject O"},
		{"spoof-not-a-node", c.admin, csrSpec{cn: "kubernetes-admin", orgs: nodes, ips: []string{"10.0.0.1"}}, kubeletserving.ActionDenied, "not a node identity"},
		{"spoof-node-that-does-not-exist", ghost, csrSpec{cn: "system:node:node-c", orgs: nodes, ips: []string{"10.0.0.3"}}, kubeletserving.ActionDenied, `node "node-c" does not exist`},
	}
	for _, tc := range tests {
		c.file(t, tc.by, tc.name, tc.spec)
	}
	// A CSR whose CN is not the requestor's node never gets this far on a kubeadm cluster:
	// the NodeRestriction admission plugin refuses it at creation. certctl's own check for
	// it (clusters without the plugin) is in TestValidate.
	for _, spoof := range []struct {
		name string
		by   kubernetes.Interface
		cn   string
	}{{"spoof-for-node-a-filed-by-node-b", b, "system:node:node-a"}, {"spoof-cn-differs", a, "system:node:node-a2"}} {
		err := c.tryFile(spoof.by, spoof.name, csrSpec{cn: spoof.cn, orgs: nodes, ips: []string{"10.0.0.1"}})
		if err == nil || !contains(err.Error(), "can only create a node CSR with CN=system:node:") {
			t.Errorf("%s: the apiserver accepted it (err %v); NodeRestriction should refuse it", spoof.name, err)
		}
	}
	// Another signer's CSR is none of certctl's business with --all.
	c.file(t, a, "client-csr-other-signer", csrSpec{cn: "system:node:node-a", orgs: nodes, usages: []certv1.KeyUsage{ds, ca}, signer: certv1.KubeAPIServerClientKubeletSignerName})

	ctx := context.Background()
	// A dry run decides and changes nothing.
	dry, err := kubeletserving.Approve(ctx, c.admin, kubeletserving.ApproveOptions{All: true, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(dry) != len(tests) {
		t.Fatalf("dry run decided %d CSRs, want %d: %+v", len(dry), len(tests), dry)
	}
	decisions, err := kubeletserving.Approve(ctx, c.admin, kubeletserving.ApproveOptions{All: true})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]kubeletserving.Decision{}
	for _, d := range decisions {
		got[d.CSR] = d
	}
	for _, d := range dry {
		wantDry := map[string]string{kubeletserving.ActionApproved: kubeletserving.ActionWouldApprove, kubeletserving.ActionDenied: kubeletserving.ActionWouldDeny}[got[d.CSR].Action]
		if d.Action != wantDry {
			t.Errorf("%s: dry run said %s, the real run %s", d.CSR, d.Action, got[d.CSR].Action)
		}
	}
	if _, ok := got["client-csr-other-signer"]; ok {
		t.Errorf("a CSR of another signer was decided")
	}
	for _, tc := range tests {
		d := got[tc.name]
		if d.Action != tc.want || (tc.reason != "" && !contains(d.Reason, tc.reason)) {
			t.Errorf("%s: %s (%s), want %s (%q)", tc.name, d.Action, d.Reason, tc.want, tc.reason)
		}
		// The decision is written into the CSR's condition, with the reason.
		csr, err := c.admin.CertificatesV1().CertificateSigningRequests().Get(ctx, tc.name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		wantType := map[string]certv1.RequestConditionType{kubeletserving.ActionApproved: certv1.CertificateApproved, kubeletserving.ActionDenied: certv1.CertificateDenied}[tc.want]
		if !hasCondition(csr, wantType, tc.reason) {
			t.Errorf("%s: conditions %+v, want %s with %q", tc.name, csr.Status.Conditions, wantType, tc.reason)
		}
	}
	// The real controller-manager signs what certctl approved, with the cluster CA.
	roots := x509.NewCertPool()
	roots.AddCert(c.ca.Cert())
	for _, tc := range tests {
		if tc.want != kubeletserving.ActionApproved {
			continue
		}
		cert := waitSigned(t, c.admin, tc.name)
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, DNSName: tc.spec.ips[0]}); err != nil {
			t.Errorf("%s: signed certificate does not verify for %s: %v", tc.name, tc.spec.ips[0], err)
		}
	}
}

// TestNoDenyAndWatch: --no-deny leaves an invalid CSR pending; --watch approves a CSR that
// arrives after it started.
func TestNoDenyAndWatch(t *testing.T) {
	c := newCluster(t)
	c.addNode(t, "node-a", addr(corev1.NodeInternalIP, "10.0.0.1"), addr(corev1.NodeHostName, "node-a"))
	a := c.nodeClient(t, "node-a")
	nodes := []string{"system:nodes"}
	c.file(t, a, "bad", csrSpec{cn: "system:node:node-a", orgs: nodes, ips: []string{"10.9.9.9"}})
	ds, err := kubeletserving.Approve(context.Background(), c.admin, kubeletserving.ApproveOptions{All: true, NoDeny: true})
	if err != nil || len(ds) != 1 || ds[0].Action != kubeletserving.ActionLeftPending {
		t.Fatalf("no-deny: %+v %v", ds, err)
	}
	csr, _ := c.admin.CertificatesV1().CertificateSigningRequests().Get(context.Background(), "bad", metav1.GetOptions{})
	if !csrwait.Pending(csr) {
		t.Fatalf("--no-deny changed the CSR: %+v", csr.Status)
	}

	ctx, cancel := context.WithCancel(context.Background())
	decided := make(chan kubeletserving.Decision, 10)
	done := make(chan error, 1)
	go func() {
		done <- kubeletserving.Watch(ctx, c.admin, kubeletserving.ApproveOptions{NoDeny: true}, func(d kubeletserving.Decision) { decided <- d })
	}()
	c.file(t, a, "arrives-later", csrSpec{cn: "system:node:node-a", orgs: nodes, ips: []string{"10.0.0.1"}, dns: []string{"node-a"}})
	deadline := time.After(30 * time.Second)
	for approved := false; !approved; {
		select {
		case d := <-decided:
			approved = d.CSR == "arrives-later" && d.Action == kubeletserving.ActionApproved
		case <-deadline:
			t.Fatal("--watch did not approve a CSR filed after it started")
		}
	}
	waitSigned(t, c.admin, "arrives-later")
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("watch: %v", err)
	}
}

func rootsOf(c *cluster) *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c.ca.Cert())
	return p
}

func waitSigned(t *testing.T, cs kubernetes.Interface, name string) *x509.Certificate {
	t.Helper()
	var data []byte
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		csr, err := cs.CertificatesV1().CertificateSigningRequests().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		data = csr.Status.Certificate
		return len(data) > 0, nil
	})
	if err != nil {
		t.Fatalf("%s not signed: %v", name, err)
	}
	certs, err := pki.ParseCertificates(name, data)
	if err != nil {
		t.Fatal(err)
	}
	return certs[0]
}

func hasCondition(csr *certv1.CertificateSigningRequest, typ certv1.RequestConditionType, msg string) bool {
	for _, c := range csr.Status.Conditions {
		if c.Type == typ && c.Status == corev1.ConditionTrue && contains(c.Message, msg) {
			return true
		}
	}
	return false
}

func contains(s, sub string) bool { return len(sub) == 0 || len(s) >= len(sub) && indexOf(s, sub) >= 0 }

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

// raceTransport, before certctl's approval of a CSR reaches the apiserver, has another
// approver (or, with deny, an operator denying it) decide that CSR first: the request then
// carries a stale resourceVersion, as when the in-cluster approver wins the race.
type raceTransport struct {
	rt    http.RoundTripper
	other kubernetes.Interface
	deny  bool
	raced int
}

func (r *raceTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodPut && strings.HasSuffix(req.URL.Path, "/approval") && r.raced == 0 {
		r.raced++
		name := path.Base(path.Dir(req.URL.Path))
		csrs := r.other.CertificatesV1().CertificateSigningRequests()
		c, err := csrs.Get(req.Context(), name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		typ := certv1.CertificateApproved
		if r.deny {
			typ = certv1.CertificateDenied
		}
		c.Status.Conditions = append(c.Status.Conditions, certv1.CertificateSigningRequestCondition{Type: typ, Status: corev1.ConditionTrue, Reason: "OtherApprover"})
		if _, err := csrs.UpdateApproval(req.Context(), name, c, metav1.UpdateOptions{}); err != nil {
			return nil, err
		}
	}
	return r.rt.RoundTrip(req)
}

// TestApproveLosesTheRace: on a real apiserver, another approver decides the CSR between
// certctl's read of it and its approval (CI's run of TestKubeletServingApproverInCluster
// failed on the apiserver's 409 Conflict, the in-cluster approver having approved first). The
// decision is then "skipped: decided meanwhile by another approver", no error, and the CSR
// keeps the other approver's decision alone; enable reads that decision (approved: it waits for
// the certificate; denied: it fails naming the CSR).
func TestApproveLosesTheRace(t *testing.T) {
	c := newCluster(t)
	c.addNode(t, "node-a", addr(corev1.NodeInternalIP, "10.0.0.1"), addr(corev1.NodeHostName, "node-a"))
	a := c.nodeClient(t, "node-a")
	for _, deny := range []bool{false, true} {
		name := fmt.Sprintf("race-deny-%v", deny)
		c.file(t, a, name, csrSpec{cn: "system:node:node-a", orgs: []string{"system:nodes"}, ips: []string{"10.0.0.1"}})
		cfg := rest.CopyConfig(c.cp.RESTConfig(t))
		race := &raceTransport{other: c.admin, deny: deny}
		cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { race.rt = rt; return race }
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		ds, err := kubeletserving.Approve(context.Background(), cs, kubeletserving.ApproveOptions{Names: []string{name}})
		if err != nil {
			t.Fatalf("%s: Approve after losing the race: %v", name, err)
		}
		if race.raced != 1 || len(ds) != 1 || ds[0].Action != kubeletserving.ActionSkipped {
			t.Fatalf("%s: raced %d, decisions %+v; want one, skipped", name, race.raced, ds)
		}
		now, err := c.admin.CertificatesV1().CertificateSigningRequests().Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if n := len(now.Status.Conditions); n != 1 || now.Status.Conditions[0].Reason != "OtherApprover" {
			t.Errorf("%s: conditions %+v, want the other approver's alone", name, now.Status.Conditions)
		}
	}
}
