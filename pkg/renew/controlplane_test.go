package renew_test

import (
	"context"
	"crypto/tls"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/live"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestRenewedTreeServesOnRealControlPlane renews a kubeadm-made tree, starts a real etcd and
// kube-apiserver on loopback with the renewed files, and checks that they serve the new
// certificates and that client-go with the renewed admin.conf lists namespaces.
func TestRenewedTreeServesOnRealControlPlane(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	tr := testenv.KubeadmTree(t, testenv.TreeOptions{})
	l := tr.Layout
	bin := testenv.Certctl(t)
	oldAPI := cert(t, filepath.Join(l.PKIDir, "apiserver.crt"))
	if out, err := exec.Command(bin, "--root", tr.Root, "renew", "all", "--days", "3650", "--san", "10.2.1.139", "--yes").CombinedOutput(); err != nil {
		t.Fatalf("renew: %v\n%s", err, out)
	}
	newAPI := cert(t, filepath.Join(l.PKIDir, "apiserver.crt"))
	if newAPI.Equal(oldAPI) {
		t.Fatal("apiserver.crt was not renewed")
	}
	cp := testenv.StartControlPlane(t, testenv.ControlPlaneOptions{PKIDir: l.PKIDir, KubeconfigDir: l.KubeconfigDir})

	// The renewed admin.conf (group kubeadm:cluster-admins) authenticates and is authorized.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	list, err := cp.Clientset(t).CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatalf("renewed admin.conf: %v", err)
	}
	var names []string
	for _, ns := range list.Items {
		names = append(names, ns.Name)
	}
	if !slices.Contains(names, "kube-system") {
		t.Fatalf("namespaces %v lack kube-system", names)
	}
	if !testenv.ServedCert(t, cp.APIServerAddr).Equal(newAPI) {
		t.Fatal("the apiserver does not serve the renewed apiserver.crt")
	}
	pk := func(f string) string { return filepath.Join(l.PKIDir, f) }
	kp, err := tls.LoadX509KeyPair(pk("etcd/healthcheck-client.crt"), pk("etcd/healthcheck-client.key"))
	if err != nil {
		t.Fatal(err)
	}
	etcdAddr := cp.EtcdClientURL[len("https://"):]
	if _, _, err := net.SplitHostPort(etcdAddr); err != nil {
		t.Fatal(err)
	}
	servedEtcd, err := live.Served(ctx, etcdAddr, "", &kp, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !servedEtcd[0].Equal(cert(t, pk("etcd/server.crt"))) {
		t.Fatal("etcd does not serve the renewed etcd/server.crt")
	}
}
