package multinode

import (
	"context"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/certctl/certctl/internal/multilab"
	"github.com/certctl/certctl/internal/testenv"
)

// TestRestartEtcdEachNode is issue 25 on the lab: `certctl restart etcd --lb-drain` on each
// control-plane node in turn, with clients asking the balancer every 50 ms for /readyz and for
// a list answered from etcd: 0 failed (the node leaves the balancer before its etcd stops, and
// comes back once its apiserver is ready with it; a leading member hands its leadership away
// first). Then, with cp3's etcd stopped, `restart etcd` on cp1 is refused, naming cp3, and
// changes nothing; so is `cluster ca-rotate etcd-ca` (no Job made, no Secret).
func TestRestartEtcdEachNode(t *testing.T) {
	nodes := requireLab(t)
	cps := controlPlanes(nodes)
	roots := x509.NewCertPool()
	if pemData, err := os.ReadFile(multilab.CACert()); err != nil {
		t.Fatal(err)
	} else {
		roots.AppendCertsFromPEM(pemData)
	}
	readyz := startPollerPath(t, multilab.LBAddr, "/readyz", roots, 50*time.Millisecond, 15*time.Minute)
	list := startPollerAs(t, multilab.LBAddr, listPath, roots, testenv.KubeconfigClientCert(t, multilab.AdminKubeconfig()), 50*time.Millisecond, 15*time.Minute)
	for _, n := range cps {
		start := time.Now()
		r := certctlOn(t, n, "restart", "etcd", "--lb-drain", "3s")
		if r.Code != 0 {
			readyz.Stop()
			list.Stop()
			t.Fatalf("restart etcd on %s: %s", n.Name, r)
		}
		t.Logf("%s: etcd restarted in %s", n.Name, time.Since(start).Round(100*time.Millisecond))
	}
	for _, p := range []struct {
		what string
		p    *poller
	}{{"/readyz", readyz}, {"list", list}} {
		ok, fail, errs := p.p.Stop()
		t.Logf("through the balancer during the etcd restarts: %s %d ok, %d failed %v; down windows %s", p.what, ok, fail, errs, windowsText(p.p.Windows()))
		if ok == 0 || fail > 0 {
			t.Errorf("%s through the balancer: %d failed (target 0), %d ok", p.what, fail, ok)
		}
	}

	// cp3's etcd away: cp1 refuses to restart its own, naming cp3.
	cp1, cp3 := cps[0], cps[len(cps)-1]
	ctx := context.Background()
	etcdAddr, back := stopEtcd(t, cp3)
	r := certctlOn(t, cp1, "restart", "etcd", "--lb-drain", "3s")
	if r.Code == 0 {
		t.Fatalf("restart etcd on %s with %s's etcd stopped: want a refusal, got %s", cp1.Name, cp3.Name, r)
	}
	if out := r.Stdout + r.Stderr; !strings.Contains(out, cp3.IP+":2379") {
		t.Errorf("the refusal does not name %s's member (%s): %s", cp3.Name, etcdAddr, r)
	}
	if mr, err := multilab.Run(multilab.Command(ctx, cp1, "test", "-f", "/etc/kubernetes/manifests/etcd.yaml")); err != nil || mr.Code != 0 {
		t.Errorf("the refused restart moved %s's etcd manifest (%v %s)", cp1.Name, err, mr)
	}
	// Issue 21's fault 3, cluster-wide: with cp3's member down, `cluster ca-rotate etcd-ca`
	// (whose every phase restarts etcd on each control-plane node) is refused before anything
	// changes, naming cp3; no Job, no rotation Secret.
	cs := clientset(t)
	if err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		return slices.Contains(etcdNotReady(ctx, cs), cp3.Name), nil
	}); err != nil {
		t.Fatalf("%s's kubelet still reports its etcd pod ready: %v", cp3.Name, err)
	}
	rr := certctlWith(t, adminCopy(t), "cluster", "ca-rotate", "etcd-ca", "--phase", "trust")
	if rr.Code == 0 || !strings.Contains(rr.Stderr+rr.Stdout, "etcd member of "+cp3.Name+" is not ready") {
		t.Errorf("cluster ca-rotate etcd-ca with %s's etcd down: want a refusal naming it, got %s", cp3.Name, rr)
	}
	if _, err := cs.CoreV1().Secrets("kube-system").Get(ctx, "certctl-ca-rotation", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the refused rotation left the Secret certctl-ca-rotation (%v)", err)
	}
	assertNoJobs(t)
	back()
	// Back in the cluster: a restart on cp1 is allowed again (it waits for cp3 to be healthy).
	if r := certctlOn(t, cp1, "restart", "etcd", "--lb-drain", "3s"); r.Code != 0 {
		t.Errorf("restart etcd on %s after %s came back: %s", cp1.Name, cp3.Name, r)
	}
}

// stopEtcd stops node's etcd member (its static pod's manifest moved out) and waits until its
// client port refuses connections; it returns that address, and back, which puts the manifest
// back and waits until the member accepts connections again (also at the test's end, without
// the wait).
func stopEtcd(t *testing.T, node multilab.Node) (addr string, back func()) {
	t.Helper()
	ctx := context.Background()
	const away = "/etc/kubernetes/etcd.yaml.away"
	mustRun(t, multilab.Command(ctx, node, "mv", "/etc/kubernetes/manifests/etcd.yaml", away))
	put := func() {
		_, _ = multilab.Run(multilab.Command(context.Background(), node, "sh", "-c", "test -f "+away+" && mv "+away+" /etc/kubernetes/manifests/etcd.yaml"))
	}
	t.Cleanup(put)
	addr = net.JoinHostPort(node.IP, "2379")
	if err := waitTCP(ctx, addr, false, 2*time.Minute); err != nil {
		t.Fatalf("%s's etcd did not stop: %v", node.Name, err)
	}
	return addr, func() {
		t.Helper()
		put()
		if err := waitTCP(ctx, addr, true, 3*time.Minute); err != nil {
			t.Fatalf("%s's etcd did not come back: %v", node.Name, err)
		}
	}
}

// waitTCP polls addr until it accepts connections (up) or refuses them (!up).
func waitTCP(ctx context.Context, addr string, up bool, timeout time.Duration) error {
	var last error
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			last = errors.New("accepts connections")
			return up, nil
		}
		last = err
		return !up && errors.Is(err, syscall.ECONNREFUSED), nil
	})
	if err != nil {
		return errors.Join(err, last)
	}
	return nil
}
