package kubeletclient_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	certv1 "k8s.io/api/certificates/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/client-go/util/certificate/csr"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/kubeletclient"
	"github.com/certctl/certctl/pkg/pki"
)

const testToken = "abcdef.0123456789abcdef"

// tokenCluster is a real control plane on which the real `kubeadm init phase bootstrap-token`
// created cluster-info, the bootstrap token testToken and the RBAC for node joins; the real
// controller-manager signs cluster-info for the token (bootstrapsigner), approves node client
// CSRs filed with it (csrapproving) and signs them (csrsigning).
type tokenCluster struct {
	tr     *testenv.Tree
	cp     *testenv.ControlPlane
	admin  *kubernetes.Clientset
	caHash string
	ca     *x509.Certificate
}

func newTokenCluster(t *testing.T) *tokenCluster {
	t.Helper()
	if testing.Short() {
		t.Skip("runs kubeadm, etcd, kube-apiserver and kube-controller-manager")
	}
	tr := testenv.KubeadmTree(t, testenv.TreeOptions{NodeName: "master-1"})
	cp := testenv.StartControlPlane(t, testenv.ControlPlaneOptions{PKIDir: tr.Layout.PKIDir, KubeconfigDir: tr.Layout.KubeconfigDir,
		CSRSigner: true, Controllers: []string{"bootstrapsigner", "csrapproving"}})
	// kubeadm runs chrooted into the tree: give it the admin kubeconfig there, and the token
	// in its config.
	adminData, err := os.ReadFile(cp.AdminKubeconfig(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tr.Root, "admin-test.conf"), adminData, 0o600); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(tr.Root, "kubeadm.yaml")
	cfg, _ := os.ReadFile(cfgPath)
	withToken := bytes.Replace(cfg, []byte("kind: InitConfiguration\n"), []byte("kind: InitConfiguration\nbootstrapTokens:\n- token: "+testToken+"\n  ttl: 1h\n"), 1)
	if err := os.WriteFile(cfgPath, withToken, 0o600); err != nil {
		t.Fatal(err)
	}
	tr.Kubeadm(t, "init", "phase", "bootstrap-token", "--kubeconfig", "/admin-test.conf")
	// Later kubeadm token commands must not try to create this token again.
	if err := os.WriteFile(cfgPath, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	ca := pki.Load(tr.Layout, pki.Default()).Get("ca").Cert()
	return &tokenCluster{tr: tr, cp: cp, admin: cp.Clientset(t), ca: ca, caHash: kubeletclient.CAHash(ca)}
}

// TestDiscover: kubeadm join's discovery against the real apiserver: the right token and hash
// are trusted; a wrong hash, a wrong token secret, an unknown token id, and a cluster-info
// altered on the way (a real TLS server in the middle) are refused.
func TestDiscover(t *testing.T) {
	c := newTokenCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	good := kubeletclient.DiscoveryOptions{Server: c.cp.APIServerAddr, Token: testToken, CACertHashes: []string{c.caHash}, TLSServerName: testenv.APIServerName, Timeout: 30 * time.Second, Poll: 200 * time.Millisecond}
	info, err := kubeletclient.Discover(ctx, good)
	if err != nil {
		t.Fatalf("discovery with the right token and hash: %v", err)
	}
	if len(info.CA) != 1 || !info.CA[0].Equal(c.ca) || info.Server != c.cp.URL {
		t.Errorf("discovered %+v, want the cluster CA and server %s", info, c.cp.URL)
	}
	// The hash kubeadm itself prints for this CA is the one computed here, and the token
	// kubeadm token create makes now is accepted too.
	out := c.tr.Kubeadm(t, "token", "create", "--print-join-command", "--kubeconfig", "/admin-test.conf")
	fields := strings.Fields(out)
	second := good
	for i, f := range fields {
		if f == "--token" && i+1 < len(fields) {
			second.Token = fields[i+1]
		}
	}
	if !strings.Contains(out, c.caHash) || second.Token == testToken || second.Token == "" {
		t.Fatalf("kubeadm's join command %q: want a new token and hash %s", out, c.caHash)
	}
	if _, err := kubeletclient.Discover(ctx, second); err != nil {
		t.Errorf("discovery with the token from %q: %v", out, err)
	}

	// A cluster-info altered in the middle: a real TLS server answers with the real
	// ConfigMap whose kubeconfig now names another server.
	cm, err := c.admin.CoreV1().ConfigMaps("kube-public").Get(ctx, "cluster-info", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tampered := cm.DeepCopy()
	tampered.APIVersion, tampered.Kind = "v1", "ConfigMap"
	tampered.Data["kubeconfig"] = strings.Replace(tampered.Data["kubeconfig"], "server: ", "server: https://10.66.0.1:6443 #", 1)
	mitm := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(tampered)
	}))
	mitm.StartTLS()
	defer mitm.Close()

	wrongHash := "sha256:" + strings.Repeat("0", 64)
	tests := []struct {
		name string
		mod  func(o *kubeletclient.DiscoveryOptions)
		want string
	}{
		{name: "wrong hash", mod: func(o *kubeletclient.DiscoveryOptions) { o.CACertHashes = []string{wrongHash} }, want: "has public key hash " + c.caHash + ", which is not the --discovery-token-ca-cert-hash given"},
		{name: "wrong token secret", mod: func(o *kubeletclient.DiscoveryOptions) { o.Token = "abcdef.0000000000000000" }, want: "does not verify with this token"},
		{name: "unknown token id", mod: func(o *kubeletclient.DiscoveryOptions) {
			o.Token = "zzzzzz.0123456789abcdef"
			o.Timeout = 2 * time.Second
		}, want: `token id "zzzzzz" is not valid for this cluster`},
		{name: "cluster-info altered in the middle", mod: func(o *kubeletclient.DiscoveryOptions) { o.Server = mitm.URL }, want: "someone altered cluster-info"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := good
			tt.mod(&o)
			_, err := kubeletclient.Discover(ctx, o)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// TestRenewBootstrap: the worker flow on a node without ca.key whose client certificate has
// expired. renew verifies the cluster, writes bootstrap-kubelet.conf and sets the old
// credentials aside; the "restarted kubelet" (here: client-go's certificate/csr, the code the
// kubelet's TLS bootstrap uses) files a node client CSR with the token, which the real
// apiserver authenticates as the bootstrap token and the real controller-manager approves
// and signs; then renew sees the new credentials, removes the token file, and the node is
// Ready, checked with its own new credentials.
func TestRenewBootstrap(t *testing.T) {
	c := newTokenCluster(t)
	now := time.Now()
	worker := workerOf(t, c.tr, "worker-1", now.Add(-400*24*time.Hour), now.Add(-35*24*time.Hour))
	before := snapshot(t, worker.Root, kubeletFiles)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out bytes.Buffer
	var csrUser string
	res, err := kubeletclient.Renew(ctx, kubeletclient.RenewOptions{
		Layout: worker.Layout, Out: &out, Timeout: time.Minute,
		Discovery: kubeletclient.DiscoveryOptions{Server: c.cp.APIServerAddr, Token: testToken, CACertHashes: []string{c.caHash}, TLSServerName: testenv.APIServerName, Timeout: 30 * time.Second},
		Server:    c.cp.URL, TLSServerName: testenv.APIServerName,
		Restart: restartFunc(func(ctx context.Context) error {
			// The kubelet finds no kubelet.conf and bootstraps with bootstrap-kubelet.conf.
			if _, err := os.Stat(kubeletclient.KubeletConfPath(worker.Layout)); !os.IsNotExist(err) {
				t.Errorf("kubelet.conf was not set aside: %v", err)
			}
			boot, err := clientcmd.BuildConfigFromFlags(c.cp.URL, kubeletclient.BootstrapConfPath(worker.Layout))
			if err != nil {
				return err
			}
			boot.ServerName = testenv.APIServerName
			bcs, err := kubernetes.NewForConfig(boot)
			if err != nil {
				return err
			}
			go func() {
				user, err := kubeletBootstrap(ctx, bcs, worker, "worker-1", c.cp.URL)
				csrUser = user
				if err != nil {
					t.Errorf("kubelet bootstrap: %v", err)
				}
			}()
			return nil
		}),
	})
	if err != nil {
		t.Fatalf("renew: %v\n%s", err, out.String())
	}
	if res.Mode != kubeletclient.ModeBootstrap || !res.Ready || res.Node != "worker-1" {
		t.Errorf("result %+v, want mode bootstrap, worker-1 Ready", res)
	}
	if csrUser != "system:bootstrap:abcdef" {
		t.Errorf("the CSR was filed as %q, want the bootstrap token's user system:bootstrap:abcdef", csrUser)
	}
	checkNodeCert(t, c.tr, res.Cert, "worker-1")
	if _, err := os.Stat(kubeletclient.BootstrapConfPath(worker.Layout)); !os.IsNotExist(err) {
		t.Errorf("bootstrap-kubelet.conf (the token) is still there: %v", err)
	}
	cs, err := kubeletclient.NodeClient(worker.Layout, c.cp.URL, testenv.APIServerName)
	if err != nil {
		t.Fatal(err)
	}
	if ui, err := whoAmI(ctx, cs); err != nil || ui.Username != "system:node:worker-1" {
		t.Errorf("the new kubelet.conf authenticates as %q (%v), want system:node:worker-1", ui.Username, err)
	}
	sameSnapshots(t, before, snapshot(t, worker.Root, kubeletFiles))
	t.Logf("renew (bootstrap) to Ready: %s\n%s", res.Elapsed, out.String())
}

// kubeletBootstrap does what the kubelet's TLS bootstrap does with bootstrap-kubelet.conf
// (k8s.io/kubernetes/pkg/kubelet/certificate/bootstrap): a node client CSR through
// client-go's certificate/csr, wait until it is signed, write kubelet-client-<time>.pem and
// the current link and kubelet.conf pointing at it, then report Ready with the new identity.
// It returns the user the apiserver recorded on the CSR.
func kubeletBootstrap(ctx context.Context, bcs kubernetes.Interface, tr *testenv.Tree, node, server string) (string, error) {
	key, _ := pki.GenerateKey(pki.AlgECDSAP256)
	csrPEM, err := pki.CreateCSR(key, pki.Template{Subject: pkix.Name{CommonName: "system:node:" + node, Organization: []string{"system:nodes"}}})
	if err != nil {
		return "", err
	}
	name, uid, err := csr.RequestCertificate(bcs, csrPEM, "", certv1.KubeAPIServerClientKubeletSignerName,
		nil, []certv1.KeyUsage{certv1.UsageDigitalSignature, certv1.UsageClientAuth}, key)
	if err != nil {
		return "", err
	}
	got, err := bcs.CertificatesV1().CertificateSigningRequests().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	user := got.Spec.Username
	certPEM, err := csr.WaitForCertificate(ctx, bcs, name, uid)
	if err != nil {
		return user, err
	}
	keyPEM, _ := pki.EncodePrivateKey(key)
	l := tr.Layout
	file := "kubelet-client-" + time.Now().UTC().Format("2006-01-02-15-04-05") + ".pem"
	if err := os.WriteFile(filepath.Join(kubeletclient.PKIDir(l), file), append(certPEM, keyPEM...), 0o600); err != nil {
		return user, err
	}
	if err := os.Symlink("/var/lib/kubelet/pki/"+file, kubeletclient.CurrentPath(l)); err != nil {
		return user, err
	}
	bootCfg, err := clientcmd.LoadFromFile(kubeletclient.BootstrapConfPath(l))
	if err != nil {
		return user, err
	}
	cfg := clientcmdapi.NewConfig()
	for n, cl := range bootCfg.Clusters {
		cfg.Clusters[n] = cl
		cfg.Contexts["default-context"] = &clientcmdapi.Context{Cluster: n, AuthInfo: "default-auth"}
	}
	cfg.AuthInfos["default-auth"] = &clientcmdapi.AuthInfo{ClientCertificate: "/var/lib/kubelet/pki/kubelet-client-current.pem", ClientKey: "/var/lib/kubelet/pki/kubelet-client-current.pem"}
	cfg.CurrentContext = "default-context"
	if err := clientcmd.WriteToFile(*cfg, kubeletclient.KubeletConfPath(l)); err != nil {
		return user, err
	}
	ncs, err := kubeletclient.NodeClient(l, server, testenv.APIServerName)
	if err != nil {
		return user, err
	}
	return user, reportReady(ctx, ncs, node)
}

// TestIssueInstall: issue on a control-plane tree writes one file; install on a worker tree
// of the same cluster verifies it and swings the link; a file for another node, or from
// another CA, is refused with nothing changed.
func TestIssueInstall(t *testing.T) {
	if testing.Short() {
		t.Skip("runs kubeadm, etcd and kube-apiserver")
	}
	cpTree := testenv.KubeadmTree(t, testenv.TreeOptions{NodeName: "master-1"})
	now := time.Now()
	worker := workerOf(t, cpTree, "worker-1", now.Add(-400*24*time.Hour), now.Add(-35*24*time.Hour))
	cp := testenv.StartControlPlane(t, testenv.ControlPlaneOptions{PKIDir: cpTree.Layout.PKIDir, KubeconfigDir: cpTree.Layout.KubeconfigDir})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	issue := func(tr *testenv.Tree, node string) string {
		t.Helper()
		is, err := kubeletclient.Issue(kubeletclient.IssueOptions{Layout: tr.Layout, Node: node})
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(t.TempDir(), node+".pem")
		if err := os.WriteFile(p, is.PEM, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	other := testenv.KubeadmTree(t, testenv.TreeOptions{NodeName: "stranger"})
	refusals := []struct {
		name, file, want string
	}{
		{name: "another node's certificate", file: issue(cpTree, "worker-2"), want: `is for "system:node:worker-2", not this node's "system:node:worker-1"`},
		{name: "another cluster's CA", file: issue(other, "worker-1"), want: "does not verify against the cluster CA"},
		{name: "a certificate without its key", file: func() string {
			data, _ := os.ReadFile(issue(cpTree, "worker-1"))
			p := filepath.Join(t.TempDir(), "nokey.pem")
			_ = os.WriteFile(p, data[:bytes.Index(data, []byte("-----BEGIN EC PRIVATE KEY"))], 0o600)
			return p
		}(), want: "give the file 'certctl kubelet-client issue NODE -o FILE' wrote"},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			before := snapshot(t, worker.Root, func(string) bool { return false })
			_, err := kubeletclient.InstallFile(ctx, kubeletclient.RenewOptions{Layout: worker.Layout, NoRestart: true, NoWait: true}, tt.file)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
			sameSnapshots(t, before, snapshot(t, worker.Root, func(string) bool { return false }))
		})
	}

	file := issue(cpTree, "worker-1")
	var out bytes.Buffer
	res, err := kubeletclient.InstallFile(ctx, kubeletclient.RenewOptions{Layout: worker.Layout, Out: &out, Timeout: 30 * time.Second,
		Server: cp.URL, TLSServerName: testenv.APIServerName,
		Restart: restartFunc(func(ctx context.Context) error {
			cs, err := kubeletclient.NodeClient(worker.Layout, cp.URL, testenv.APIServerName)
			if err != nil {
				return err
			}
			return reportReady(ctx, cs, "worker-1")
		})}, file)
	if err != nil {
		t.Fatalf("install: %v\n%s", err, out.String())
	}
	if res.Mode != kubeletclient.ModeInstall || !res.Ready {
		t.Errorf("result %+v, want mode install and Ready", res)
	}
	data, _ := os.ReadFile(file)
	pair, _ := kubeletclient.ParsePair(file, data)
	target, err := os.Readlink(kubeletclient.CurrentPath(worker.Layout))
	if err != nil || !strings.HasPrefix(target, "/var/lib/kubelet/pki/kubelet-client-") {
		t.Fatalf("current link %q (%v)", target, err)
	}
	installed, _ := os.ReadFile(filepath.Join(worker.Root, target))
	if !bytes.Equal(installed, data) || !pair.Cert.Equal(pki.Load(worker.Layout, pki.Default()).Get("kubelet-client").Cert()) {
		t.Errorf("the installed file is not the issued one")
	}
	cs, err := kubeletclient.NodeClient(worker.Layout, cp.URL, testenv.APIServerName)
	if err != nil {
		t.Fatal(err)
	}
	if ui, err := whoAmI(ctx, cs); err != nil || ui.Username != "system:node:worker-1" {
		t.Errorf("the installed certificate authenticates as %q (%v), want system:node:worker-1", ui.Username, err)
	}
}

// workerOf is a worker of the cluster of cp as kubeadm join leaves it: a kubelet.conf trusting
// the cluster CA and pointing at a kubelet client certificate from that CA valid from
// notBefore to notAfter, and of the PKI only ca.crt (no key).
func workerOf(t *testing.T, cp *testenv.Tree, name string, notBefore, notAfter time.Time) *testenv.Tree {
	t.Helper()
	worker := testenv.KubeadmTree(t, testenv.TreeOptions{NodeName: name})
	caPEM, _ := os.ReadFile(filepath.Join(cp.Layout.PKIDir, "ca.crt"))
	for _, f := range []string{"ca.crt", "ca.key"} {
		data, _ := os.ReadFile(filepath.Join(cp.Layout.PKIDir, f))
		if err := os.WriteFile(filepath.Join(worker.Layout.PKIDir, f), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	joinedNode(t, worker, name, notBefore, notAfter)
	conf, _ := clientcmd.LoadFromFile(kubeletclient.KubeletConfPath(worker.Layout))
	for _, cl := range conf.Clusters {
		cl.CertificateAuthorityData = caPEM
	}
	if err := clientcmd.WriteToFile(*conf, kubeletclient.KubeletConfPath(worker.Layout)); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(worker.Layout.PKIDir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(worker.Layout.PKIDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(worker.Layout.PKIDir, "ca.crt"), caPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return worker
}
