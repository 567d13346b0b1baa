package renew_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/kubeadmconfig"
	"github.com/certctl/certctl/pkg/renew"
	"gopkg.in/yaml.v3"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// kubeadmCluster is a kubeadm tree (apiServer.certSANs [10.2.0.100]) with a real etcd and
// kube-apiserver on it and kubeadm-config uploaded by the real kubeadm; the tree's
// admin.conf points at that apiserver, so certctl run on the tree reaches it.
func kubeadmCluster(t *testing.T) (*testenv.Tree, kubernetes.Interface) {
	t.Helper()
	tr := testenv.KubeadmTree(t, testenv.TreeOptions{CertSANs: []string{"10.2.0.100"}})
	cp := testenv.StartControlPlane(t, testenv.ControlPlaneOptions{PKIDir: tr.Layout.PKIDir, KubeconfigDir: tr.Layout.KubeconfigDir})
	tr.UploadConfig(t, cp)
	mustWrite(t, filepath.Join(tr.Layout.KubeconfigDir, "admin.conf"), mustRead(t, cp.AdminKubeconfig(t)))
	return tr, cp.Clientset(t)
}

func configMap(t *testing.T, cs kubernetes.Interface) (certSANs []string, doc, rv string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	doc, rv, err := kubeadmconfig.Read(ctx, cs)
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		APIServer struct {
			CertSANs []string `yaml:"certSANs"`
		} `yaml:"apiServer"`
	}
	if err := yaml.Unmarshal([]byte(doc), &cfg); err != nil {
		t.Fatal(err)
	}
	return cfg.APIServer.CertSANs, doc, rv
}

func hasIP(ips []net.IP, s string) bool {
	return slices.ContainsFunc(ips, func(ip net.IP) bool { return ip.Equal(net.ParseIP(s)) })
}

// TestRenewSANRecordsInKubeadmConfig runs `certctl renew apiserver --san 10.2.1.139` against a
// real apiserver: the dry run shows the ConfigMap step and changes nothing (same
// resourceVersion), the real run adds the SAN to apiServer.certSANs, and the real kubeadm,
// making the apiserver certificate from that ClusterConfiguration, keeps 10.2.1.139 and every
// old SAN.
func TestRenewSANRecordsInKubeadmConfig(t *testing.T) {
	tr, cs := kubeadmCluster(t)
	bin := testenv.Certctl(t)
	apiPath := filepath.Join(tr.Layout.PKIDir, "apiserver.crt")
	old := cert(t, apiPath)
	_, _, rv0 := configMap(t, cs)

	out, err := exec.Command(bin, "--root", tr.Root, "renew", "apiserver", "--san", "10.2.1.139", "--dry-run").CombinedOutput()
	if err != nil {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "kube-system/kubeadm-config: add 10.2.1.139 to ClusterConfiguration.apiServer.certSANs") {
		t.Errorf("the plan does not show the kubeadm-config step:\n%s", out)
	}
	if sans, _, rv := configMap(t, cs); rv != rv0 || slices.Contains(sans, "10.2.1.139") {
		t.Fatalf("dry run changed kubeadm-config: resourceVersion %s -> %s, certSANs %v", rv0, rv, sans)
	}
	if !cert(t, apiPath).Equal(old) {
		t.Fatal("dry run changed apiserver.crt")
	}

	out, err = exec.Command(bin, "--root", tr.Root, "renew", "apiserver", "--san", "10.2.1.139", "--yes").CombinedOutput()
	if err != nil {
		t.Fatalf("renew: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "kube-system/kubeadm-config: added 10.2.1.139 to ClusterConfiguration.apiServer.certSANs") {
		t.Errorf("renew does not report the kubeadm-config update:\n%s", out)
	}
	sans, doc, rv := configMap(t, cs)
	if strings.Join(sans, ",") != "10.2.0.100,10.2.1.139" || rv == rv0 {
		t.Fatalf("kubeadm-config certSANs %v (resourceVersion %s -> %s), want [10.2.0.100 10.2.1.139]", sans, rv0, rv)
	}
	if !hasIP(cert(t, apiPath).IPAddresses, "10.2.1.139") {
		t.Fatal("apiserver.crt lacks 10.2.1.139")
	}
	made := cert(t, filepath.Join(tr.CertsFromConfig(t, doc, "apiserver"), "apiserver.crt"))
	for _, ip := range append(slices.Clone(old.IPAddresses), net.ParseIP("10.2.1.139")) {
		if !hasIP(made.IPAddresses, ip.String()) {
			t.Errorf("kubeadm's apiserver.crt from kubeadm-config lacks IP %s: %v", ip, made.IPAddresses)
		}
	}
	for _, d := range old.DNSNames {
		if !slices.Contains(made.DNSNames, d) {
			t.Errorf("kubeadm's apiserver.crt from kubeadm-config lacks DNS %s: %v", d, made.DNSNames)
		}
	}

	// Run again: the certificate is renewed again, the ConfigMap already has the SAN.
	out, err = exec.Command(bin, "--root", tr.Root, "renew", "apiserver", "--san", "10.2.1.139", "--yes").CombinedOutput()
	if err != nil {
		t.Fatalf("second renew: %v\n%s", err, out)
	}
	if _, _, rv2 := configMap(t, cs); rv2 != rv {
		t.Errorf("second renew rewrote kubeadm-config (resourceVersion %s -> %s) though it had the SAN", rv, rv2)
	}
}

// TestRenewSANAPIUnreachable: with the API server unreachable the certificate is still
// renewed (the API may be down because of it), the plan and the result warn with the exact
// command to run later, and kubeadm-config is not touched.
func TestRenewSANAPIUnreachable(t *testing.T) {
	tr, cs := kubeadmCluster(t)
	_, _, rv0 := configMap(t, cs)
	// admin.conf's credentials, but a port where nothing listens.
	cfg, err := clientcmd.LoadFromFile(filepath.Join(tr.Layout.KubeconfigDir, "admin.conf"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cfg.Clusters {
		c.Server = fmt.Sprintf("https://127.0.0.1:%d", testenv.FreePort(t, "127.0.0.1"))
	}
	down := filepath.Join(t.TempDir(), "down.conf")
	if err := clientcmd.WriteToFile(*cfg, down); err != nil {
		t.Fatal(err)
	}
	client, err := kubeadmconfig.NewClientset(down, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := renew.NewPlan(tr.Layout, renew.Options{Names: []string{"apiserver"}, SANs: []string{"10.2.1.139"}, Days: 365,
		KubeadmConfig: &renew.KubeadmConfigOptions{Client: client, Timeout: 5 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := plan.Render(&buf); err != nil {
		t.Fatal(err)
	}
	later := "certctl kubeadm-config add-san 10.2.1.139"
	if !strings.Contains(buf.String(), "warning: kube-system/kubeadm-config will not be updated") || !strings.Contains(buf.String(), "run: "+later) {
		t.Errorf("plan does not warn with %q:\n%s", later, buf.String())
	}
	res, err := renew.Apply(plan, renew.ApplyOptions{LockTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if !hasIP(cert(t, filepath.Join(tr.Layout.PKIDir, "apiserver.crt")).IPAddresses, "10.2.1.139") {
		t.Error("apiserver.crt was not renewed with 10.2.1.139")
	}
	if res.KubeadmConfig == nil || res.KubeadmConfig.Err == nil || res.KubeadmConfig.Later != later {
		t.Fatalf("result %+v: want an error and %q", res.KubeadmConfig, later)
	}
	buf.Reset()
	res.KubeadmConfig.Render(&buf)
	if !strings.Contains(buf.String(), "warning: kube-system/kubeadm-config was not updated") || !strings.Contains(buf.String(), later) {
		t.Errorf("result does not warn with %q:\n%s", later, buf.String())
	}
	if sans, _, rv := configMap(t, cs); rv != rv0 || slices.Contains(sans, "10.2.1.139") {
		t.Errorf("kubeadm-config changed (resourceVersion %s -> %s, certSANs %v) though certctl could not reach the API", rv0, rv, sans)
	}
	// The command the warning names, run once the API is reachable, finishes the job.
	out, err := exec.Command(testenv.Certctl(t), "--root", tr.Root, "kubeadm-config", "add-san", "10.2.1.139").CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", later, err, out)
	}
	sans, _, rv1 := configMap(t, cs)
	if strings.Join(sans, ",") != "10.2.0.100,10.2.1.139" {
		t.Errorf("after %q certSANs %v", later, sans)
	}
	out, err = exec.Command(testenv.Certctl(t), "--root", tr.Root, "kubeadm-config", "add-san", "10.9.9.9", "--dry-run").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "would add 10.9.9.9 to apiServer.certSANs; dry run: nothing changed") {
		t.Errorf("add-san --dry-run: %v\n%s", err, out)
	}
	if _, _, rv := configMap(t, cs); rv != rv1 {
		t.Errorf("add-san --dry-run changed kubeadm-config (resourceVersion %s -> %s)", rv1, rv)
	}
	out, err = exec.Command(testenv.Certctl(t), "--root", tr.Root, "kubeadm-config", "add-san", "10.9.9.9", "--cert", "front-proxy-client").CombinedOutput()
	if err == nil || !strings.Contains(string(out), `--cert "front-proxy-client": want apiserver, etcd-server or etcd-peer`) {
		t.Errorf("add-san --cert front-proxy-client: %v\n%s", err, out)
	}
}
