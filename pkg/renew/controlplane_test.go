package renew_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certctl/certctl/pkg/live"
	"github.com/certctl/certctl/pkg/pki"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// freePort returns a free TCP port on ip.
func freePort(t *testing.T, ip string) int {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startProc starts a long-running binary, logging to a file, killed at cleanup.
func startProc(t *testing.T, logPath, bin string, args ...string) {
	t.Helper()
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		logf.Close()
	})
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

// TestRenewedTreeServesOnRealControlPlane renews a kubeadm-made tree, starts a real etcd and
// kube-apiserver on loopback with the renewed files, and checks that they serve the new
// certificates and that client-go with the renewed admin.conf lists namespaces.
// TODO: use internal/testenv.StartControlPlane once branch testenv lands (it had not when
// this was written); this starts the two binaries with the minimum flags.
func TestRenewedTreeServesOnRealControlPlane(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	kubeadm := k8sBinary(t, "kubeadm")
	etcdBin := k8sBinary(t, "etcd")
	apiBin := k8sBinary(t, "kube-apiserver")
	bin := certctlBin(t)
	root := t.TempDir()
	kubeadmTree(t, kubeadm, root)
	l := pki.NewLayout(pki.LayoutOptions{Root: root, Home: "/root"})
	oldAPI := cert(t, filepath.Join(l.PKIDir, "apiserver.crt"))
	if out, err := exec.Command(bin, "--root", root, "renew", "--days", "3650", "--san", "10.2.1.139", "--yes").CombinedOutput(); err != nil {
		t.Fatalf("renew: %v\n%s", err, out)
	}
	newAPI := cert(t, filepath.Join(l.PKIDir, "apiserver.crt"))
	if newAPI.Equal(oldAPI) {
		t.Fatal("apiserver.crt was not renewed")
	}
	pk := func(f string) string { return filepath.Join(l.PKIDir, f) }
	logs := t.TempDir()

	const ip = "127.0.0.1" // the etcd certificates kubeadm made cover 127.0.0.1
	etcdClient, etcdPeer, apiPort := freePort(t, ip), freePort(t, ip), freePort(t, ip)
	etcdURL := fmt.Sprintf("https://%s:%d", ip, etcdClient)
	peerURL := fmt.Sprintf("https://%s:%d", ip, etcdPeer)
	startProc(t, filepath.Join(logs, "etcd.log"), etcdBin,
		"--name", "master-1", "--data-dir", filepath.Join(t.TempDir(), "etcd"),
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "master-1="+peerURL, "--listen-metrics-urls", fmt.Sprintf("http://%s:%d", ip, freePort(t, ip)),
		"--cert-file", pk("etcd/server.crt"), "--key-file", pk("etcd/server.key"),
		"--trusted-ca-file", pk("etcd/ca.crt"), "--client-cert-auth",
		"--peer-cert-file", pk("etcd/peer.crt"), "--peer-key-file", pk("etcd/peer.key"),
		"--peer-trusted-ca-file", pk("etcd/ca.crt"), "--peer-client-cert-auth")
	apiAddr := fmt.Sprintf("%s:%d", ip, apiPort)
	startProc(t, filepath.Join(logs, "apiserver.log"), apiBin,
		"--bind-address", ip, "--secure-port", fmt.Sprint(apiPort), "--advertise-address", "10.2.1.151",
		"--etcd-servers", etcdURL, "--etcd-cafile", pk("etcd/ca.crt"),
		"--etcd-certfile", pk("apiserver-etcd-client.crt"), "--etcd-keyfile", pk("apiserver-etcd-client.key"),
		"--tls-cert-file", pk("apiserver.crt"), "--tls-private-key-file", pk("apiserver.key"),
		"--client-ca-file", pk("ca.crt"),
		"--kubelet-client-certificate", pk("apiserver-kubelet-client.crt"), "--kubelet-client-key", pk("apiserver-kubelet-client.key"),
		"--proxy-client-cert-file", pk("front-proxy-client.crt"), "--proxy-client-key-file", pk("front-proxy-client.key"),
		"--requestheader-client-ca-file", pk("front-proxy-ca.crt"), "--requestheader-allowed-names", "front-proxy-client",
		"--requestheader-username-headers", "X-Remote-User", "--requestheader-group-headers", "X-Remote-Group",
		"--requestheader-extra-headers-prefix", "X-Remote-Extra-",
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file", pk("sa.pub"), "--service-account-signing-key-file", pk("sa.key"),
		"--service-cluster-ip-range", "10.96.0.0/12", "--authorization-mode", "Node,RBAC",
		"--enable-priority-and-fairness=false", "--cert-dir", t.TempDir())

	// client-go with the renewed kubeconfigs, pointed at the loopback apiserver; the server
	// certificate is verified against the CA in the kubeconfig under the name "kubernetes".
	client := func(name string) *kubernetes.Clientset {
		cfg, err := clientcmd.BuildConfigFromFlags("https://"+apiAddr, filepath.Join(l.KubeconfigDir, name))
		if err != nil {
			t.Fatal(err)
		}
		cfg.TLSClientConfig.ServerName = "kubernetes"
		cfg.Timeout = 5 * time.Second
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return cs
	}
	listNamespaces := func(cs *kubernetes.Clientset, who string) []string {
		deadline := time.Now().Add(90 * time.Second)
		for {
			list, err := cs.CoreV1().Namespaces().List(context.Background(), metav1.ListOptions{})
			if err == nil {
				var names []string
				for _, ns := range list.Items {
					names = append(names, ns.Name)
				}
				if strings.Contains(strings.Join(names, ","), "kube-system") {
					return names
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: no namespaces from the apiserver within 90s (last error %v)\napiserver log:\n%s\netcd log:\n%s", who, err, tail(filepath.Join(logs, "apiserver.log")), tail(filepath.Join(logs, "etcd.log")))
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	// super-admin.conf (group system:masters) works without RBAC objects; with it, create
	// the binding `kubeadm init` creates for admin.conf's group kubeadm:cluster-admins.
	superAdmin := client("super-admin.conf")
	t.Logf("renewed super-admin.conf lists namespaces: %v", listNamespaces(superAdmin, "super-admin.conf"))
	_, err := superAdmin.RbacV1().ClusterRoleBindings().Create(context.Background(), &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "kubeadm:cluster-admins"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects:   []rbacv1.Subject{{Kind: "Group", APIGroup: "rbac.authorization.k8s.io", Name: "kubeadm:cluster-admins"}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("renewed admin.conf lists namespaces: %v", listNamespaces(client("admin.conf"), "admin.conf"))

	served, err := live.Served(context.Background(), apiAddr, "kubernetes", nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !served[0].Equal(newAPI) {
		t.Fatalf("apiserver serves serial %s, the renewed apiserver.crt is %s", served[0].SerialNumber, newAPI.SerialNumber)
	}
	kp, err := tls.LoadX509KeyPair(pk("etcd/healthcheck-client.crt"), pk("etcd/healthcheck-client.key"))
	if err != nil {
		t.Fatal(err)
	}
	servedEtcd, err := live.Served(context.Background(), fmt.Sprintf("%s:%d", ip, etcdClient), "", &kp, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !servedEtcd[0].Equal(cert(t, pk("etcd/server.crt"))) {
		t.Fatal("etcd does not serve the renewed etcd/server.crt")
	}
}
