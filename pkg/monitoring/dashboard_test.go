package monitoring_test

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/kubeletserving"
	"github.com/certctl/certctl/pkg/monitoring"
	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/sandbox"
	certv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"
)

// TestDashboardQueriesReturnData runs a real Prometheus (Debian's 2.42) that scrapes, over
// loopback, what certctl exports: two sandbox nodes' `inspect -o prometheus` (as node_exporter's
// textfile collector serves it; one with the field faults, a schedule and its run, one in the
// middle of a CA rotation) and the /metrics of the kubelet serving CSR approver after it decided
// real CSRs on a real kube-apiserver. Every query of every panel (and of the Node variable)
// must return data; and the alert rules, loaded by the same Prometheus, must evaluate.
func TestDashboardQueriesReturnData(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd, kube-apiserver and Prometheus")
	}
	promBin := requireTool(t, "prometheus")
	now := time.Now()

	// master-1: the field faults, a daily schedule and the run it made.
	faulty := newTree(t, sandbox.Options{Faults: sandbox.AllFaults})
	installSchedule(t, faulty, now.Add(-time.Hour))
	if err := renewAt(faulty, now, []string{"all"}, 30*24*time.Hour, time.Second); err != nil {
		t.Fatalf("scheduled renew: %v", err)
	}
	// master-2: healthy, its cluster CA's rotation after phase trust.
	rotating := newTree(t, sandbox.Options{NodeName: "master-2", NodeIP: net.ParseIP("10.2.1.152")})
	rotateTrust(t, rotating, now)
	nodes := []node{inspectNode(t, "master-1", faulty, now, false), inspectNode(t, "master-2", rotating, now, false)}

	approver := approverMetrics(t)

	dir := t.TempDir()
	var targets strings.Builder
	for _, n := range nodes {
		srv := serveText(t, n.prom)
		fmt.Fprintf(&targets, "  - targets: [%q]\n    labels: {instance: %q, cluster: sandbox}\n", srv, n.instance)
	}
	rules, err := monitoring.RulesFile()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "rules.yaml"), rules, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [%q]
scrape_configs:
- job_name: node-exporter
  static_configs:
%s- job_name: certctl-approver
  static_configs:
  - targets: [%q]
    labels: {cluster: sandbox}
`, filepath.Join(dir, "rules.yaml"), targets.String(), approver)
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t, "127.0.0.1"))
	logPath := filepath.Join(dir, "prometheus.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(promBin, "--config.file="+cfgPath, "--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	failf := func(format string, args ...any) {
		t.Helper()
		log, _ := os.ReadFile(logPath)
		t.Fatalf(format+"\nprometheus log:\n%s", append(args, tail(string(log), 3000))...)
	}
	version, _ := exec.Command(promBin, "--version").CombinedOutput()
	t.Logf("%s", strings.SplitN(string(version), "\n", 2)[0])

	queries, err := monitoring.Queries()
	if err != nil {
		t.Fatal(err)
	}
	// Grafana's variables, as Grafana substitutes them for one node set to All.
	vars := strings.NewReplacer(`$instance`, `.*`, `$__rate_interval`, `30s`, `$__range`, `5m`, `$__interval`, `5s`)
	labelValues := regexp.MustCompile(`^label_values\((\w+),\s*(\w+)\)$`)
	type check struct {
		what, expr, label string
	}
	var checks []check
	for _, q := range queries {
		c := check{what: q.Panel + " " + q.RefID, expr: vars.Replace(q.Expr)}
		if m := labelValues.FindStringSubmatch(q.Expr); m != nil {
			c.expr, c.label = m[1], m[2]
		}
		if strings.Contains(c.expr, "$") {
			t.Fatalf("%s: a variable the test does not substitute: %s", c.what, q.Expr)
		}
		checks = append(checks, c)
	}
	// The rules load and evaluate in the real Prometheus: the field cases are pending alerts.
	for _, a := range []string{"CertctlAPIServerSANMissing", "CertctlKubeletServingCertificateWithoutNodeIP", "CertctlKubeconfigStale"} {
		checks = append(checks, check{what: "alert " + a, expr: fmt.Sprintf(`ALERTS{alertname=%q, instance="master-1"}`, a)})
	}
	start := time.Now()
	deadline := start.Add(90 * time.Second)
	pending := checks
	for len(pending) > 0 {
		var still []check
		for _, c := range pending {
			n, err := query(addr, c.expr, c.label)
			if err != nil || n == 0 {
				still = append(still, c)
			}
		}
		pending = still
		if len(pending) == 0 {
			break
		}
		if time.Now().After(deadline) {
			var lines []string
			for _, c := range pending {
				n, err := query(addr, c.expr, c.label)
				lines = append(lines, fmt.Sprintf("  %s: %s -> %d series, %v", c.what, c.expr, n, err))
			}
			failf("%d of %d dashboard queries return no data after 90s:\n%s", len(pending), len(checks), strings.Join(lines, "\n"))
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("all %d queries (%d of the dashboard) returned data after %s", len(checks), len(queries), time.Since(start).Round(100*time.Millisecond))
}

// query runs an instant query and returns how many series came back (with label set, when
// label is given: a label_values variable).
func query(addr, expr, label string) (int, error) {
	resp, err := http.Get("http://" + addr + "/api/v1/query?query=" + url.QueryEscape(expr))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return 0, err
	}
	if r.Status != "success" {
		return 0, fmt.Errorf("query %s: %s", expr, r.Error)
	}
	n := 0
	for _, s := range r.Data.Result {
		if label == "" || s.Metric[label] != "" {
			n++
		}
	}
	return n, nil
}

// serveText serves an exposition on loopback, as node_exporter serves its textfile
// collector's files, and returns host:port.
func serveText(t *testing.T, text string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		_, _ = w.Write([]byte(text))
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// approverMetrics has the kubelet serving CSR approver decide real CSRs on a real apiserver
// (one valid, one for an address that is not the node's, one more of those left pending with
// --no-deny), counts its decisions as the in-cluster approver does, and serves its /metrics
// on loopback; it returns host:port.
func approverMetrics(t *testing.T) string {
	t.Helper()
	tree := newTree(t, sandbox.Options{})
	cp := testenv.StartControlPlane(t, testenv.ControlPlaneOptions{PKIDir: tree.PKIDir, KubeconfigDir: tree.KubeconfigDir})
	admin := cp.Clientset(t)
	ctx := context.Background()
	const worker, ip = "worker-1", "10.2.1.160"
	n, err := admin.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: worker}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}, {Type: corev1.NodeHostName, Address: worker}}
	if _, err := admin.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	kubelet := nodeClient(t, cp, tree, worker)
	fileCSR(t, kubelet, "good", worker, ip)
	fileCSR(t, kubelet, "foreign-ip", worker, "10.9.9.9")
	m := kubeletserving.NewMetrics()
	m.SetLeader(true)
	decide := func(o kubeletserving.ApproveOptions) {
		ds, err := kubeletserving.Approve(ctx, admin, o)
		if err != nil {
			t.Fatalf("approve: %v", err)
		}
		for _, d := range ds {
			m.Observe(d)
		}
	}
	decide(kubeletserving.ApproveOptions{All: true})
	fileCSR(t, kubelet, "foreign-ip-2", worker, "10.9.9.10")
	decide(kubeletserving.ApproveOptions{All: true, NoDeny: true})
	srv := httptest.NewServer(m.Handler())
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// nodeClient authenticates as the kubelet of node name (system:node:<name>, system:nodes).
func nodeClient(t *testing.T, cp *testenv.ControlPlane, l pki.Layout, name string) kubernetes.Interface {
	t.Helper()
	ca := pki.Load(l, pki.Default()).Get("ca")
	key, err := pki.GenerateKey(pki.AlgECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	cert, err := pki.Sign(ca.Cert(), ca.Key, key, pki.Template{
		Subject:  pkix.Name{CommonName: "system:node:" + name, Organization: []string{"system:nodes"}},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := pki.EncodePrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(l.PKIDir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(&rest.Config{Host: cp.URL, TLSClientConfig: rest.TLSClientConfig{
		CertData: pki.EncodeCertificates(cert), KeyData: keyPEM, CAData: caPEM, ServerName: testenv.APIServerName}})
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// fileCSR files a kubelet serving CSR as the kubelet does.
func fileCSR(t *testing.T, cs kubernetes.Interface, name, node, ip string) {
	t.Helper()
	key, err := pki.GenerateKey(pki.AlgECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	req, err := pki.CreateCSR(key, pki.Template{
		Subject:  pkix.Name{CommonName: "system:node:" + node, Organization: []string{"system:nodes"}},
		DNSNames: []string{node}, IPAddresses: []net.IP{net.ParseIP(ip)},
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = cs.CertificatesV1().CertificateSigningRequests().Create(context.Background(), &certv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: certv1.CertificateSigningRequestSpec{Request: req, SignerName: certv1.KubeletServingSignerName,
			Usages: []certv1.KeyUsage{certv1.UsageDigitalSignature, certv1.UsageServerAuth}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("file CSR %s: %v", name, err)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// The dashboard file is what Grafana provisions: valid JSON with a uid, every panel with a
// datasource and at least one query; the provisioning file and the ConfigMap carry it.
func TestDashboardFiles(t *testing.T) {
	d, err := monitoring.Dashboard()
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID    string `json:"uid"`
		Panels []struct {
			Title      string          `json:"title"`
			Datasource json.RawMessage `json:"datasource"`
			Targets    []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(d, &dash); err != nil || dash.UID == "" || len(dash.Panels) == 0 {
		t.Fatalf("dashboard: %v, uid %q, %d panels", err, dash.UID, len(dash.Panels))
	}
	for _, p := range dash.Panels {
		if len(p.Datasource) == 0 || len(p.Targets) == 0 {
			t.Errorf("panel %q: datasource %s, %d targets", p.Title, p.Datasource, len(p.Targets))
		}
	}
	cm, err := monitoring.DashboardConfigMap("monitoring")
	if err != nil {
		t.Fatal(err)
	}
	var obj corev1.ConfigMap
	if err := yaml.UnmarshalStrict(cm, &obj); err != nil {
		t.Fatalf("the ConfigMap does not decode: %v", err)
	}
	if obj.Labels["grafana_dashboard"] != "1" || obj.Data[monitoring.DashboardFile] != string(d) {
		t.Errorf("the ConfigMap: labels %v, carries the dashboard: %v", obj.Labels, obj.Data[monitoring.DashboardFile] == string(d))
	}
	prov, err := monitoring.DashboardProvider("/dash")
	if err != nil {
		t.Fatal(err)
	}
	var p struct {
		APIVersion int `json:"apiVersion"`
		Providers  []struct {
			Type    string            `json:"type"`
			Options map[string]any    `json:"options"`
			Extra   map[string]string `json:"-"`
		} `json:"providers"`
	}
	if err := yaml.Unmarshal(prov, &p); err != nil || p.APIVersion != 1 || len(p.Providers) != 1 || p.Providers[0].Type != "file" || p.Providers[0].Options["path"] != "/dash" {
		t.Errorf("provisioning file: %v %+v\n%s", err, p, prov)
	}
}
