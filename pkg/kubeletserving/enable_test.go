package kubeletserving_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/kubeletserving"
	"github.com/certctl/certctl/pkg/pki"
	certv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// standInKubelet does, when "restarted", what a real kubelet with serverTLSBootstrap does:
// as its node identity it files a kubernetes.io/kubelet-serving CSR for its addresses,
// waits until the CSR is signed, and serves the signed certificate on its port. healthz is
// a plain HTTP server beside it.
type standInKubelet struct {
	t         *testing.T
	c         *cluster
	node      string
	ip        string
	servePort int
	client    *kubernetes.Clientset
}

func (k *standInKubelet) Restart(ctx context.Context) error {
	go func() {
		key, _ := pki.GenerateKey(pki.AlgECDSAP256)
		req, err := pki.CreateCSR(key, pki.Template{Subject: pkix.Name{CommonName: "system:node:" + k.node, Organization: []string{"system:nodes"}},
			IPAddresses: []net.IP{net.ParseIP(k.ip)}, DNSNames: []string{k.node}})
		if err != nil {
			return
		}
		csr, err := k.client.CertificatesV1().CertificateSigningRequests().Create(context.Background(), &certv1.CertificateSigningRequest{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "csr-"},
			Spec: certv1.CertificateSigningRequestSpec{Request: req, SignerName: certv1.KubeletServingSignerName,
				Usages: []certv1.KeyUsage{certv1.UsageDigitalSignature, certv1.UsageServerAuth}},
		}, metav1.CreateOptions{})
		if err != nil {
			return
		}
		cert := waitSigned(k.t, k.c.admin, csr.Name)
		fakeKubelet(k.t, fmt.Sprintf("%s:%d", k.ip, k.servePort), []*x509.Certificate{cert}, key)
	}()
	return nil
}

// TestEnableRealAPIServer drives `enable --approve --cluster` against a real apiserver and
// CSR signer with the stand-in kubelet.
func TestEnableRealAPIServer(t *testing.T) {
	c := newCluster(t)
	const ip = "127.0.5.1"
	c.addNode(t, "node-1", addr(corev1.NodeInternalIP, ip), addr(corev1.NodeHostName, "node-1"))
	l := pki.NewLayout(pki.LayoutOptions{Root: c.dir, Home: "/root"})
	cfg := "# kubeadm wrote this\napiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nrotateCertificates: true # keep\n"
	if err := os.MkdirAll(l.KubeletDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(kubeletserving.ConfigPath(l), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_, err := c.admin.CoreV1().ConfigMaps("kube-system").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "kubelet-config", Namespace: "kube-system"},
		Data: map[string]string{"kubelet": cfg}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	k := &standInKubelet{t: t, c: c, node: "node-1", ip: ip, servePort: testenv.FreePort(t, ip), client: c.nodeClient(t, "node-1")}
	healthLn, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) })}
	go srv.Serve(healthLn)
	defer srv.Close()

	var out bytes.Buffer
	res, err := kubeletserving.Enable(ctx, kubeletserving.EnableOptions{
		Layout: l, NodeName: "node-1", Client: c.admin, Approve: true, Cluster: true, Restart: k,
		ServingAddr: fmt.Sprintf("%s:%d", ip, k.servePort), HealthzURL: "http://" + healthLn.Addr().String() + "/healthz",
		Timeout: 60 * time.Second, Out: &out,
	})
	if err != nil {
		t.Fatalf("enable: %v\n%s", err, out.String())
	}
	t.Log(out.String())
	if !res.ConfigChanged || res.BackupID == "" || res.Decision == nil || res.Decision.Action != kubeletserving.ActionApproved || res.Served == nil {
		t.Fatalf("result %+v", res)
	}
	got, _ := os.ReadFile(kubeletserving.ConfigPath(l))
	if string(got) != cfg+"serverTLSBootstrap: true\n" {
		t.Errorf("config.yaml:\n%s", got)
	}
	cm, err := c.admin.CoreV1().ConfigMaps("kube-system").Get(ctx, "kubelet-config", metav1.GetOptions{})
	if err != nil || cm.Data["kubelet"] != cfg+"serverTLSBootstrap: true\n" {
		t.Errorf("ConfigMap: %v %q", err, cm.Data["kubelet"])
	}
	if res.Served.VerifyHostname(ip) != nil {
		t.Errorf("served certificate does not cover %s", ip)
	}
	// Idempotent: a second run changes no file.
	before, _ := os.ReadFile(kubeletserving.ConfigPath(l))
	changed, _, err := kubeletserving.SetServerTLSBootstrap(l, time.Now())
	after, _ := os.ReadFile(kubeletserving.ConfigPath(l))
	if err != nil || changed || !bytes.Equal(before, after) {
		t.Errorf("second run: changed %v err %v", changed, err)
	}
	if entries, _ := os.ReadDir(l.BackupRoot()); len(entries) != 1 {
		t.Errorf("want exactly one backup, got %d", len(entries))
	}
}
