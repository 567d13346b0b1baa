package testenv

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// ControlPlaneOptions say which tree to run on.
type ControlPlaneOptions struct {
	PKIDir        string // the tree's pki directory (kubeadm layout)
	KubeconfigDir string // where admin.conf, super-admin.conf, controller-manager.conf are
	// CSRSigner also starts a real kube-controller-manager running only the CSR signing
	// controller with the tree's ca.crt/ca.key, so approved CSRs really get signed.
	CSRSigner bool
	// Controllers are more kube-controller-manager controllers to run beside csrsigning
	// (bootstrapsigner signs cluster-info for bootstrap tokens; csrapproving approves node
	// client CSRs as in a kubeadm cluster). They need CSRSigner.
	Controllers []string
	// APIServerFlags override kube-apiserver flags by name (without dashes), or add them:
	// a test runs the apiserver on the values a rewritten static-pod manifest carries
	// (paths resolved under the tree's root).
	APIServerFlags map[string]string
}

// APIServerName is the name clients verify the apiserver as: kubeadm's apiserver certificate
// covers "kubernetes", the service IP and the advertise address, not 127.0.0.1.
const APIServerName = "kubernetes"

// ControlPlane is a running etcd + kube-apiserver (+ controller-manager) on loopback.
type ControlPlane struct {
	URL           string // https://127.0.0.1:port
	APIServerAddr string // 127.0.0.1:port
	EtcdClientURL string
	Dir           string // logs and data

	opts      ControlPlaneOptions
	apiArgs   []string
	apiserver *process
	etcd      *process
	kcm       *process
	roots     *x509.CertPool
}

// StartControlPlane starts etcd and kube-apiserver on the tree, waits until the API is ready,
// and grants admin.conf's group (kubeadm:cluster-admins) cluster-admin as kubeadm init does,
// so admin.conf really authenticates and is authorized.
func StartControlPlane(t testing.TB, o ControlPlaneOptions) *ControlPlane {
	t.Helper()
	etcdBin := Binary(t, "etcd")
	apiBin := Binary(t, "kube-apiserver")
	var kcmBin string
	if o.CSRSigner {
		kcmBin = Binary(t, "kube-controller-manager")
	}
	dir := t.TempDir()
	p := func(name string) string { return filepath.Join(o.PKIDir, name) }
	cp := &ControlPlane{Dir: dir, opts: o}
	caPEM, err := os.ReadFile(p("ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	cp.roots = x509.NewCertPool()
	cp.roots.AppendCertsFromPEM(caPEM)

	clientPort, peerPort := FreePort(t, "127.0.0.1"), FreePort(t, "127.0.0.1")
	cp.EtcdClientURL = fmt.Sprintf("https://127.0.0.1:%d", clientPort)
	peerURL := fmt.Sprintf("https://127.0.0.1:%d", peerPort)
	cp.etcd = start(t, dir, "etcd", etcdBin, etcdArgs(p, filepath.Join(dir, "etcd-data"), cp.EtcdClientURL, peerURL, "")...)
	etcdRoots := x509.NewCertPool()
	if pemData, err := os.ReadFile(p("etcd/ca.crt")); err == nil {
		etcdRoots.AppendCertsFromPEM(pemData)
	}
	hc, err := tls.LoadX509KeyPair(p("etcd/healthcheck-client.crt"), p("etcd/healthcheck-client.key"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := waitHTTPS(ctx, cp.etcd, cp.EtcdClientURL+"/health", "", etcdRoots, &hc, 60*time.Second); err != nil {
		t.Fatalf("etcd: %v\n%s", err, cp.etcd.tail())
	}

	apiPort := FreePort(t, "127.0.0.1")
	cp.APIServerAddr = fmt.Sprintf("127.0.0.1:%d", apiPort)
	cp.URL = "https://" + cp.APIServerAddr
	cp.apiArgs = apiserverArgs(p, apiPort, cp.EtcdClientURL, filepath.Join(dir, "apiserver-certs"))
	for name, v := range o.APIServerFlags {
		cp.SetAPIServerFlag(name, v)
	}
	cp.startAPIServer(t, apiBin)
	cp.grantClusterAdmins(t)
	if o.CSRSigner {
		cp.startCSRSigner(t, kcmBin)
	}
	return cp
}

func (cp *ControlPlane) startAPIServer(t testing.TB, bin string) {
	t.Helper()
	cp.apiserver = start(t, cp.Dir, "kube-apiserver", bin, cp.apiArgs...)
	if err := waitHTTPS(context.Background(), cp.apiserver, cp.URL+"/readyz", APIServerName, cp.roots, nil, 120*time.Second); err != nil {
		t.Fatalf("kube-apiserver: %v\n%s", err, cp.apiserver.tail())
	}
}

// APIServerPID is the process id of the running apiserver: a test tells a restart by it.
func (cp *ControlPlane) APIServerPID() int { return cp.apiserver.cmd.Process.Pid }

// SetAPIServerFlag sets --name=value for the next (re)start of the apiserver.
func (cp *ControlPlane) SetAPIServerFlag(name, value string) {
	for i, a := range cp.apiArgs {
		if strings.HasPrefix(a, "--"+name+"=") {
			cp.apiArgs[i] = "--" + name + "=" + value
			return
		}
	}
	cp.apiArgs = append(cp.apiArgs, "--"+name+"="+value)
}

// RestartAPIServer stops the apiserver and starts it again on its flags and the files as they
// are now, as a static-pod restart would; it returns when /readyz answers. The tree's ca.crt
// is read again, so a serving certificate from a new cluster CA verifies.
func (cp *ControlPlane) RestartAPIServer(t testing.TB) {
	t.Helper()
	if caPEM, err := os.ReadFile(filepath.Join(cp.opts.PKIDir, "ca.crt")); err == nil {
		cp.roots.AppendCertsFromPEM(caPEM)
	}
	cp.apiserver.stop()
	cp.startAPIServer(t, cp.apiserver.cmd.Path)
}

// Kubeconfig writes a copy of the tree's kubeconfig name (admin.conf, super-admin.conf,
// controller-manager.conf, ...) whose server is this control plane, and returns its path.
func (cp *ControlPlane) Kubeconfig(t testing.TB, name string) string {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(filepath.Join(cp.opts.KubeconfigDir, name))
	if err != nil {
		t.Fatalf("load %s: %v", name, err)
	}
	for _, c := range cfg.Clusters {
		c.Server = cp.URL
		c.TLSServerName = APIServerName
	}
	out := filepath.Join(cp.Dir, name)
	if err := clientcmd.WriteToFile(*cfg, out); err != nil {
		t.Fatal(err)
	}
	return out
}

// KubeconfigClientCert is the client certificate and key of a kubeconfig's current user, as a
// checked pair (its Leaf parsed).
func KubeconfigClientCert(t testing.TB, kubeconfig string) *tls.Certificate {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	c, err := tls.X509KeyPair(cfg.CertData, cfg.KeyData)
	if err != nil {
		t.Fatalf("the client certificate of %s: %v", kubeconfig, err)
	}
	return &c
}

// AdminKubeconfig is Kubeconfig(t, "admin.conf").
func (cp *ControlPlane) AdminKubeconfig(t testing.TB) string { return cp.Kubeconfig(t, "admin.conf") }

// RESTConfigFor is the client configuration of the kubeconfig at path, with the server
// pointed at this control plane.
func (cp *ControlPlane) RESTConfigFor(t testing.TB, path string) *rest.Config {
	t.Helper()
	rc, err := clientcmd.BuildConfigFromFlags(cp.URL, path)
	if err != nil {
		t.Fatalf("client config from %s: %v", path, err)
	}
	rc.TLSClientConfig.ServerName = APIServerName
	rc.QPS, rc.Burst = 500, 1000 // tests create objects in bulk
	return rc
}

// RESTConfig is RESTConfigFor the tree's admin.conf.
func (cp *ControlPlane) RESTConfig(t testing.TB) *rest.Config {
	return cp.RESTConfigFor(t, cp.AdminKubeconfig(t))
}

// ClientsetFor returns a clientset authenticated by the kubeconfig at path, with the server
// pointed at this control plane.
func (cp *ControlPlane) ClientsetFor(t testing.TB, path string) *kubernetes.Clientset {
	t.Helper()
	cs, err := kubernetes.NewForConfig(cp.RESTConfigFor(t, path))
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// Clientset returns a clientset authenticated by the tree's admin.conf.
func (cp *ControlPlane) Clientset(t testing.TB) *kubernetes.Clientset {
	return cp.ClientsetFor(t, cp.AdminKubeconfig(t))
}

// grantClusterAdmins creates the binding kubeadm init makes for admin.conf's group.
func (cp *ControlPlane) grantClusterAdmins(t testing.TB) {
	t.Helper()
	cs := cp.ClientsetFor(t, cp.Kubeconfig(t, "super-admin.conf"))
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "kubeadm:cluster-admins"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects:   []rbacv1.Subject{{Kind: "Group", APIGroup: "rbac.authorization.k8s.io", Name: "kubeadm:cluster-admins"}},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("create ClusterRoleBinding kubeadm:cluster-admins: %v", err)
	}
}

func (cp *ControlPlane) startCSRSigner(t testing.TB, bin string) {
	t.Helper()
	kc := cp.Kubeconfig(t, "controller-manager.conf")
	port := FreePort(t, "127.0.0.1")
	cp.kcm = start(t, cp.Dir, "kube-controller-manager", bin, kcmArgs(func(f string) string { return filepath.Join(cp.opts.PKIDir, f) }, kc, port, filepath.Join(cp.Dir, "kcm-certs"), cp.opts.Controllers)...)
	// Its /healthz is served with an in-memory self-signed certificate: skip verification
	// there; it is only a readiness signal.
	client := httpClient(&tls.Config{InsecureSkipVerify: true}, 2*time.Second) //nolint:gosec // readiness only
	deadline := time.Now().Add(60 * time.Second)
	for {
		req, _ := newRequest(context.Background(), fmt.Sprintf("https://127.0.0.1:%d/healthz", port))
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) || cp.kcm.exited() {
			t.Fatalf("kube-controller-manager not healthy after 60s: %v\n%s", err, cp.kcm.tail())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Logs returns the tail of a component's log (etcd, kube-apiserver, kube-controller-manager).
func (cp *ControlPlane) Logs(name string) string {
	for _, p := range []*process{cp.etcd, cp.apiserver, cp.kcm} {
		if p != nil && p.name == name {
			return p.tail()
		}
	}
	return ""
}

// etcdArgs are the flags kubeadm's etcd manifest has, on the given URLs; p maps a PKI file
// name to its path.
func etcdArgs(p func(string) string, dataDir, clientURL, peerURL, metricsURL string) []string {
	args := []string{
		"--name=master-1", "--data-dir=" + dataDir,
		"--listen-client-urls=" + clientURL, "--advertise-client-urls=" + clientURL,
		"--listen-peer-urls=" + peerURL, "--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=master-1=" + peerURL,
		"--cert-file=" + p("etcd/server.crt"), "--key-file=" + p("etcd/server.key"),
		"--client-cert-auth=true", "--trusted-ca-file=" + p("etcd/ca.crt"),
		"--peer-cert-file=" + p("etcd/peer.crt"), "--peer-key-file=" + p("etcd/peer.key"),
		"--peer-client-cert-auth=true", "--peer-trusted-ca-file=" + p("etcd/ca.crt"),
		"--snapshot-count=10000", "--log-level=warn",
	}
	if metricsURL != "" {
		args = append(args, "--listen-metrics-urls="+metricsURL)
	}
	return args
}

// apiserverArgs are the flags kubeadm's static-pod manifest gives the apiserver, on loopback.
func apiserverArgs(p func(string) string, port int, etcdURL, certDir string) []string {
	return []string{
		"--advertise-address=10.2.1.151", "--bind-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", port),
		"--allow-privileged=true", "--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction",
		"--enable-bootstrap-token-auth=true", "--client-ca-file=" + p("ca.crt"),
		"--etcd-servers=" + etcdURL, "--etcd-cafile=" + p("etcd/ca.crt"),
		"--etcd-certfile=" + p("apiserver-etcd-client.crt"), "--etcd-keyfile=" + p("apiserver-etcd-client.key"),
		"--kubelet-client-certificate=" + p("apiserver-kubelet-client.crt"), "--kubelet-client-key=" + p("apiserver-kubelet-client.key"),
		"--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname",
		"--proxy-client-cert-file=" + p("front-proxy-client.crt"), "--proxy-client-key-file=" + p("front-proxy-client.key"),
		"--requestheader-allowed-names=front-proxy-client", "--requestheader-client-ca-file=" + p("front-proxy-ca.crt"),
		"--requestheader-extra-headers-prefix=X-Remote-Extra-", "--requestheader-group-headers=X-Remote-Group",
		"--requestheader-username-headers=X-Remote-User",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + p("sa.pub"), "--service-account-signing-key-file=" + p("sa.key"),
		"--service-cluster-ip-range=10.96.0.0/12",
		"--tls-cert-file=" + p("apiserver.crt"), "--tls-private-key-file=" + p("apiserver.key"),
		"--cert-dir=" + certDir,
	}
}

// kcmArgs run the controller-manager with only the CSR signing controller (and extra), as
// kubeadm's manifest would with its service-account credentials.
func kcmArgs(p func(string) string, kubeconfig string, port int, certDir string, extra []string) []string {
	return []string{
		"--kubeconfig=" + kubeconfig, "--authentication-kubeconfig=" + kubeconfig, "--authorization-kubeconfig=" + kubeconfig,
		"--controllers=" + strings.Join(append([]string{"csrsigning"}, extra...), ","), "--leader-elect=false", "--use-service-account-credentials=true",
		"--cluster-signing-cert-file=" + p("ca.crt"), "--cluster-signing-key-file=" + p("ca.key"),
		"--bind-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", port), "--cert-dir=" + certDir,
	}
}
