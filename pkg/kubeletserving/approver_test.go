package kubeletserving_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/kubeletserving"
	"github.com/certctl/certctl/pkg/pki"
	authv1 "k8s.io/api/authentication/v1"
	certv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"
)

// replica is one in-process approver.
type replica struct {
	id      string
	cancel  context.CancelFunc
	done    chan struct{}
	metrics *kubeletserving.Metrics
	mu      sync.Mutex
	decided map[string]kubeletserving.Decision
}

func (r *replica) decision(csr string) (kubeletserving.Decision, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	d, ok := r.decided[csr]
	return d, ok
}

// awaitDecision waits for the replica's record of its decision on csr: the approver records it
// (and counts it in its metrics) right after the API has the condition the test saw.
func (r *replica) awaitDecision(csr string) (kubeletserving.Decision, bool) {
	var d kubeletserving.Decision
	var ok bool
	_ = wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		d, ok = r.decision(csr)
		return ok, nil
	})
	return d, ok
}

func startReplica(t *testing.T, cs kubernetes.Interface, id string) *replica {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &replica{id: id, cancel: cancel, done: make(chan struct{}), metrics: kubeletserving.NewMetrics(), decided: map[string]kubeletserving.Decision{}}
	go func() {
		defer close(r.done)
		err := kubeletserving.RunApprover(ctx, kubeletserving.ApproverOptions{
			Client: cs, Identity: id, Metrics: r.metrics,
			// Generous enough that a loaded CI machine (go test runs packages side by side) does not
			// make the leader lose the Lease mid-test; the hand-over below is a release, not an expiry.
			LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: time.Second,
			Report: func(d kubeletserving.Decision) {
				r.mu.Lock()
				r.decided[d.CSR] = d
				r.mu.Unlock()
			},
			Log: func(format string, a ...any) { t.Logf(format, a...) },
		})
		if err != nil {
			t.Errorf("%s: %v", id, err)
		}
	}()
	t.Cleanup(func() { cancel(); <-r.done })
	return r
}

func leaseHolder(ctx context.Context, cs kubernetes.Interface) string {
	l, err := cs.CoordinationV1().Leases(kubeletserving.ApproverNamespace).Get(ctx, kubeletserving.ApproverName, metav1.GetOptions{})
	if err != nil || l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

// waitDecided polls the CSR until it carries an Approved or Denied condition and returns it
// with the time it took.
func waitDecided(t *testing.T, cs kubernetes.Interface, name string, within time.Duration) (certv1.CertificateSigningRequestCondition, time.Duration) {
	t.Helper()
	start := time.Now()
	var cond certv1.CertificateSigningRequestCondition
	err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, within, true, func(ctx context.Context) (bool, error) {
		csr, err := cs.CertificatesV1().CertificateSigningRequests().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, c := range csr.Status.Conditions {
			if c.Type == certv1.CertificateApproved || c.Type == certv1.CertificateDenied {
				cond = c
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("CSR %s not decided within %s: %v", name, within, err)
	}
	return cond, time.Since(start)
}

func scrape(t *testing.T, m *kubeletserving.Metrics) string {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

// TestApproverInCluster runs the in-cluster approver as its manifest deploys it, against a
// real apiserver and CSR signer: the printed manifest passes a server-side dry run and is
// applied; two replicas authenticate with the manifest's ServiceAccount (so its minimal RBAC
// is what is exercised) and elect a leader on the Lease; the leader approves a node's CSR
// within 10 s, and the signer signs it; a CSR for another node's IP is denied with its
// reason; /metrics counts both; cancelling the leader hands over to the other replica, which
// approves the next CSR.
func TestApproverInCluster(t *testing.T) {
	c := newCluster(t)
	ctx := context.Background()
	manifest, err := kubeletserving.Manifest(kubeletserving.ManifestOptions{Image: "registry.example/certctl:test"})
	if err != nil {
		t.Fatal(err)
	}
	dry, err := kubeletserving.Apply(ctx, c.admin, manifest, true)
	if err != nil {
		t.Fatalf("server-side dry run of the manifest: %v", err)
	}
	if len(dry) != 6 {
		t.Errorf("dry run applied %v, want 6 objects", dry)
	}
	if _, err := c.admin.AppsV1().Deployments(kubeletserving.ApproverNamespace).Get(ctx, kubeletserving.ApproverName, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("a dry run stored the Deployment: %v", err)
	}
	if _, err := kubeletserving.Apply(ctx, c.admin, manifest, false); err != nil {
		t.Fatalf("apply the manifest: %v", err)
	}
	// Applying again updates in place.
	if _, err := kubeletserving.Apply(ctx, c.admin, manifest, false); err != nil {
		t.Fatalf("apply the manifest again: %v", err)
	}
	sa := saClient(t, c)
	// The ServiceAccount may not approve another signer's CSRs.
	c.addNode(t, "node-a", addr(corev1.NodeInternalIP, "10.0.0.1"), addr(corev1.NodeHostName, "node-a"))
	c.addNode(t, "node-b", addr(corev1.NodeInternalIP, "10.0.0.2"), addr(corev1.NodeHostName, "node-b"))
	a, b := c.nodeClient(t, "node-a"), c.nodeClient(t, "node-b")
	nodes := []string{"system:nodes"}
	c.file(t, a, "client-signer", csrSpec{cn: "system:node:node-a", orgs: nodes, usages: []certv1.KeyUsage{certv1.UsageDigitalSignature, certv1.UsageClientAuth}, signer: certv1.KubeAPIServerClientKubeletSignerName})
	// certctl refuses to decide it (another signer), and the RBAC would refuse it anyway.
	var otherSigner *kubeletserving.OtherSignerError
	if _, err := kubeletserving.Approve(ctx, sa, kubeletserving.ApproveOptions{Names: []string{"client-signer"}}); !errors.As(err, &otherSigner) {
		t.Errorf("certctl decided a kube-apiserver-client-kubelet CSR: %v (want a refusal for another signer)", err)
	}
	cs, err := c.admin.CertificatesV1().CertificateSigningRequests().Get(ctx, "client-signer", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cs.Status.Conditions = append(cs.Status.Conditions, certv1.CertificateSigningRequestCondition{
		Type: certv1.CertificateApproved, Status: corev1.ConditionTrue, Reason: "test", Message: "the approver's ServiceAccount tries another signer",
	})
	if _, err := sa.CertificatesV1().CertificateSigningRequests().UpdateApproval(ctx, "client-signer", cs, metav1.UpdateOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("the approver's ServiceAccount approved a kube-apiserver-client-kubelet CSR through the API: %v (want forbidden)", err)
	}

	r1, r2 := startReplica(t, sa, "approver-1"), startReplica(t, sa, "approver-2")
	replicas := map[string]*replica{r1.id: r1, r2.id: r2}
	var leader string
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		leader = leaseHolder(ctx, c.admin)
		return replicas[leader] != nil, nil
	}); err != nil {
		t.Fatalf("no replica took the Lease: %v", err)
	}
	other := r1
	if leader == r1.id {
		other = r2
	}

	c.file(t, a, "serving-a", csrSpec{cn: "system:node:node-a", orgs: nodes, ips: []string{"10.0.0.1"}, dns: []string{"node-a"}})
	cond, took := waitDecided(t, c.admin, "serving-a", time.Minute)
	if cond.Type != certv1.CertificateApproved || cond.Reason != kubeletserving.ReasonApproved || cond.Message == "" {
		t.Fatalf("serving-a: %+v, want Approved by certctl with a message", cond)
	}
	t.Logf("CSR to approved: %s (leader %s)", took, leader)
	if d, ok := replicas[leader].awaitDecision("serving-a"); !ok || d.Action != kubeletserving.ActionApproved || d.Reason == "" {
		t.Errorf("the leader %s did not report approving serving-a with a reason: %+v", leader, d)
	}
	if _, ok := other.decision("serving-a"); ok {
		t.Errorf("the replica that does not lead (%s) decided serving-a", other.id)
	}
	waitSigned(t, c.admin, "serving-a")

	c.file(t, a, "spoof-b-ip", csrSpec{cn: "system:node:node-a", orgs: nodes, ips: []string{"10.0.0.1", "10.0.0.2"}})
	cond, _ = waitDecided(t, c.admin, "spoof-b-ip", time.Minute)
	if cond.Type != certv1.CertificateDenied || !strings.Contains(cond.Message, "IP SAN 10.0.0.2 is not an address of node node-a") {
		t.Errorf("spoof-b-ip: %+v, want Denied naming 10.0.0.2", cond)
	}
	if d, _ := replicas[leader].awaitDecision("spoof-b-ip"); d.Code != kubeletserving.CodeIPNotNodeAddress {
		t.Errorf("spoof-b-ip decision %+v, want code %s", d, kubeletserving.CodeIPNotNodeAddress)
	}
	wants := []string{
		"certctl_kubelet_serving_csr_approved_total 1",
		`certctl_kubelet_serving_csr_denied_total{reason="ip-not-node-address"} 1`,
		"certctl_kubelet_serving_approver_leader 1",
	}
	var metrics string
	_ = wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		metrics = scrape(t, replicas[leader].metrics)
		for _, want := range wants {
			if !strings.Contains(metrics, want) {
				return false, nil
			}
		}
		return true, nil
	})
	for _, want := range wants {
		if !strings.Contains(metrics, want) {
			t.Errorf("leader's /metrics lacks %q:\n%s", want, metrics)
		}
	}
	if m := scrape(t, other.metrics); !strings.Contains(m, "certctl_kubelet_serving_approver_leader 0") || strings.Contains(m, "approved_total 1") {
		t.Errorf("the other replica's /metrics:\n%s", m)
	}

	// Hand-over: the leader goes; the other takes the Lease and approves the next CSR.
	start := time.Now()
	replicas[leader].cancel()
	<-replicas[leader].done
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		return leaseHolder(ctx, c.admin) == other.id, nil
	}); err != nil {
		t.Fatalf("%s did not take over the Lease from %s: holder %q", other.id, leader, leaseHolder(ctx, c.admin))
	}
	t.Logf("hand-over %s -> %s: %s", leader, other.id, time.Since(start))
	c.file(t, b, "serving-b", csrSpec{cn: "system:node:node-b", orgs: nodes, ips: []string{"10.0.0.2"}})
	cond, took = waitDecided(t, c.admin, "serving-b", time.Minute)
	if cond.Type != certv1.CertificateApproved {
		t.Fatalf("serving-b after the hand-over: %+v", cond)
	}
	if _, ok := other.awaitDecision("serving-b"); !ok {
		t.Errorf("serving-b was not decided by the new leader %s", other.id)
	}
	t.Logf("CSR to approved after the hand-over: %s", took)
}

// saClient authenticates as the approver's ServiceAccount with a token from the TokenRequest
// API, as its pod would.
func saClient(t *testing.T, c *cluster) kubernetes.Interface {
	t.Helper()
	tok, err := c.admin.CoreV1().ServiceAccounts(kubeletserving.ApproverNamespace).CreateToken(context.Background(), kubeletserving.ApproverName,
		&authv1.TokenRequest{Spec: authv1.TokenRequestSpec{ExpirationSeconds: ptr(int64(3600))}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token for the approver's ServiceAccount: %v", err)
	}
	cs, err := kubernetes.NewForConfig(&rest.Config{Host: c.cp.URL, BearerToken: tok.Status.Token,
		TLSClientConfig: rest.TLSClientConfig{CAData: c.caPEM, ServerName: testenv.APIServerName}})
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func ptr[T any](v T) *T { return &v }

// errorsCause unwraps to the apiserver's status error.
func errorsCause(err error) error {
	for err != nil {
		if _, ok := err.(apierrors.APIStatus); ok {
			return err
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return err
		}
		err = u.Unwrap()
	}
	return nil
}

// TestManifest: the rendered manifest is YAML with the minimal RBAC; bad options are refused.
func TestManifest(t *testing.T) {
	out, err := kubeletserving.Manifest(kubeletserving.ManifestOptions{Image: "img:1", DNSPatterns: []string{"*.nodes.example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, doc := range bytes.Split(out, []byte("\n---\n")) {
		var obj struct {
			Kind string `json:"kind"`
		}
		if err := yaml.Unmarshal(doc, &obj); err != nil {
			t.Fatalf("not YAML: %v\n%s", err, doc)
		}
		kinds = append(kinds, obj.Kind)
	}
	if strings.Join(kinds, ",") != "ServiceAccount,ClusterRole,ClusterRoleBinding,Role,RoleBinding,Deployment" {
		t.Errorf("kinds %v", kinds)
	}
	for _, want := range []string{`resourceNames: ["kubernetes.io/kubelet-serving"]`, `verbs: ["approve"]`, "replicas: 2", "- --leader-elect", `- "--dns-pattern=*.nodes.example.com"`} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("manifest lacks %q", want)
		}
	}
	for _, bad := range []kubeletserving.ManifestOptions{{}, {Image: "i", Namespace: "Kube_System"}, {Image: "i", MetricsPort: 70000}} {
		if _, err := kubeletserving.Manifest(bad); err == nil {
			t.Errorf("%+v: no error", bad)
		}
	}
}

// TestEnableWorkerWithoutAdmin: on a worker (no admin.conf) enable does the node's part,
// names where approval happens and the node's IP instead of failing; the CSR its kubelet
// files is then approved from a control-plane node with approve --node. --cluster without
// admin credentials is refused before anything changes.
func TestEnableWorkerWithoutAdmin(t *testing.T) {
	c := newCluster(t)
	const ip = "127.0.6.1"
	c.addNode(t, "worker-1", addr(corev1.NodeInternalIP, ip), addr(corev1.NodeHostName, "worker-1"))
	worker := t.TempDir()
	l := pki.NewLayout(pki.LayoutOptions{Root: worker, Home: "/root"})
	cfg := "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n"
	if err := os.MkdirAll(l.KubeletDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(kubeletserving.ConfigPath(l), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(l.KubeletDir, "kubeadm-flags.env"), []byte(`KUBELET_KUBEADM_ARGS="--container-runtime-endpoint=unix:///run/containerd/containerd.sock --node-ip=`+ip+`"`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	if _, err := kubeletserving.Enable(ctx, kubeletserving.EnableOptions{Layout: l, NodeName: "worker-1", Cluster: true, NoRestart: true}); err == nil || !strings.Contains(err.Error(), "--cluster needs admin credentials") {
		t.Fatalf("--cluster without admin credentials: %v", err)
	}
	if got, _ := os.ReadFile(kubeletserving.ConfigPath(l)); string(got) != cfg {
		t.Fatalf("a refused --cluster changed config.yaml:\n%s", got)
	}

	k := &standInKubelet{t: t, c: c, node: "worker-1", ip: ip, servePort: testenv.FreePort(t, ip), client: c.nodeClient(t, "worker-1")}
	var out bytes.Buffer
	res, err := kubeletserving.Enable(ctx, kubeletserving.EnableOptions{Layout: l, NodeName: "worker-1", Restart: k, Out: &out})
	if err != nil {
		t.Fatalf("enable on a worker: %v\n%s", err, out.String())
	}
	if !res.ConfigChanged || !res.ApprovalElsewhere {
		t.Errorf("result %+v, want the config changed and approval elsewhere", res)
	}
	for _, want := range []string{"certctl kubelet-serving approve --node worker-1", "in-cluster approver", ip} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	// On the control plane: approve --node worker-1 approves the CSR its kubelet filed.
	var decided []kubeletserving.Decision
	if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		ds, err := kubeletserving.Approve(ctx, c.admin, kubeletserving.ApproveOptions{Requestor: "system:node:worker-1"})
		decided = append(decided, ds...)
		return len(decided) > 0, err
	}); err != nil {
		t.Fatalf("approve --node worker-1: %v", err)
	}
	if decided[0].Action != kubeletserving.ActionApproved {
		t.Errorf("worker-1's CSR: %+v", decided[0])
	}
	waitSigned(t, c.admin, decided[0].CSR)
}

// TestApproverProcess runs the approver as the Deployment's container does: the certctl
// binary with `kubelet-serving approve --watch --leader-elect --metrics-addr`, two processes
// against a real apiserver. One leads and approves a node's CSR; /metrics and /healthz
// answer; SIGTERM to the leader releases the Lease and the other process approves the next.
func TestApproverProcess(t *testing.T) {
	c := newCluster(t)
	bin := testenv.Certctl(t)
	// The process works on a root of its own, with the admin kubeconfig inside it.
	root := t.TempDir()
	data, err := os.ReadFile(c.cp.AdminKubeconfig(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "admin.conf"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	c.addNode(t, "node-a", addr(corev1.NodeInternalIP, "10.0.0.1"), addr(corev1.NodeHostName, "node-a"))
	a := c.nodeClient(t, "node-a")
	nodes := []string{"system:nodes"}
	type proc struct {
		cmd     *exec.Cmd
		metrics string
		out     *testenv.SyncBuffer
	}
	start := func(id string) *proc {
		port := testenv.FreePort(t, "127.0.0.1")
		p := &proc{metrics: fmt.Sprintf("http://127.0.0.1:%d", port), out: &testenv.SyncBuffer{}}
		p.cmd = exec.Command(bin, "--root", root, "kubelet-serving", "approve", "--watch", "--leader-elect",
			"--identity", id, "--kubeconfig", "/admin.conf", "--metrics-addr", fmt.Sprintf("127.0.0.1:%d", port))
		p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = p.cmd.Process.Kill(); _ = p.cmd.Wait() })
		return p
	}
	procs := map[string]*proc{"proc-1": start("proc-1"), "proc-2": start("proc-2")}
	ctx := context.Background()
	var leader string
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		leader = leaseHolder(ctx, c.admin)
		return procs[leader] != nil, nil
	}); err != nil {
		t.Fatalf("no process took the Lease: %v\n%s\n%s", err, procs["proc-1"].out, procs["proc-2"].out)
	}
	c.file(t, a, "proc-serving-1", csrSpec{cn: "system:node:node-a", orgs: nodes, ips: []string{"10.0.0.1"}})
	if cond, took := waitDecided(t, c.admin, "proc-serving-1", time.Minute); cond.Type != certv1.CertificateApproved {
		t.Fatalf("proc-serving-1: %+v", cond)
	} else {
		t.Logf("CSR to approved by process %s: %s", leader, took)
	}
	get := func(url string) string {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	// The counter is bumped right after the approval is written: poll for it.
	var m string
	if err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		m = get(procs[leader].metrics + "/metrics")
		return strings.Contains(m, "certctl_kubelet_serving_csr_approved_total 1") && strings.Contains(m, "certctl_kubelet_serving_approver_leader 1"), nil
	}); err != nil {
		t.Errorf("leader's /metrics:\n%s", m)
	}
	if h := get(procs[leader].metrics + "/healthz"); h != "ok" {
		t.Errorf("/healthz: %q", h)
	}
	var other string
	for id := range procs {
		if id != leader {
			other = id
		}
	}
	began := time.Now()
	if err := procs[leader].cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := procs[leader].cmd.Wait(); err != nil {
		t.Errorf("the leader did not exit cleanly on SIGTERM: %v\n%s", err, procs[leader].out)
	}
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		return leaseHolder(ctx, c.admin) == other, nil
	}); err != nil {
		t.Fatalf("%s did not take over: %v\n%s", other, err, procs[other].out)
	}
	t.Logf("hand-over after SIGTERM: %s", time.Since(began))
	c.file(t, a, "proc-serving-2", csrSpec{cn: "system:node:node-a", orgs: nodes, ips: []string{"10.0.0.1"}})
	if cond, _ := waitDecided(t, c.admin, "proc-serving-2", time.Minute); cond.Type != certv1.CertificateApproved {
		t.Fatalf("proc-serving-2: %+v", cond)
	}
	// The process prints its decision after writing it: poll its output.
	if err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		return strings.Contains(procs[other].out.String(), "proc-serving-2\tsystem:node:node-a\tapproved"), nil
	}); err != nil {
		t.Errorf("%s's output lacks its decision:\n%s", other, procs[other].out)
	}
}
