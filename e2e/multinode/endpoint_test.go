package multinode

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/certctl/certctl/internal/apipoll"
	"github.com/certctl/certctl/internal/multilab"
	"github.com/certctl/certctl/pkg/kubeadmconfig"
	"github.com/certctl/certctl/pkg/kubeconfig"
)

// nodeWatch polls every node's Ready condition until stopped and records each NotReady seen.
type nodeWatch struct {
	stop     context.CancelFunc
	done     chan struct{}
	mu       sync.Mutex
	notReady map[string]time.Time // first time seen NotReady, per node
	polls    int
	errs     int
}

func watchNodes(cs kubernetes.Interface, max time.Duration) *nodeWatch {
	ctx, cancel := context.WithTimeout(context.Background(), max)
	w := &nodeWatch{stop: cancel, done: make(chan struct{}), notReady: map[string]time.Time{}}
	go func() {
		defer close(w.done)
		_ = wait.PollUntilContextCancel(ctx, time.Second, true, func(ctx context.Context) (bool, error) {
			nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
			w.mu.Lock()
			defer w.mu.Unlock()
			if ctx.Err() != nil {
				return true, nil
			}
			w.polls++
			if err != nil {
				w.errs++
				return false, nil
			}
			for i := range nodes.Items {
				n := &nodes.Items[i]
				if _, seen := w.notReady[n.Name]; !nodeReady(n) && !seen {
					w.notReady[n.Name] = time.Now()
				}
			}
			return false, nil
		})
	}()
	return w
}

func (w *nodeWatch) Stop() (polls, errs int, notReady map[string]time.Time) {
	w.stop()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.polls, w.errs, w.notReady
}

// serverOf is the server of the kubeconfig at path inside node n ("" when the file is absent).
func serverOf(t *testing.T, n multilab.Node, path string) string {
	t.Helper()
	r, err := multilab.Run(multilab.Command(context.Background(), n, "cat", path))
	if err != nil {
		t.Fatal(err)
	}
	if r.Code != 0 {
		return ""
	}
	cfg, err := clientcmd.Load([]byte(r.Stdout))
	if err != nil {
		t.Fatalf("[%s] %s: %v", n.Name, path, err)
	}
	return strings.Join(kubeconfig.Servers(cfg), ",")
}

// TestClusterEndpoint is issue 12's move of case B's cluster onto its load balancer: bad input
// and an endpoint that does not serve the cluster are refused with nothing changed; a dry run
// changes nothing; the move keeps the API answering through the balancer (0 failed requests)
// and every node Ready; afterwards kubeadm-config, cluster-info and every node's kubeconfigs
// name the balancer (but a control-plane node's kubelet.conf and controller-manager.conf, which
// kubeadm 1.35+ points at the node's own apiserver: ControlPlaneKubeletLocalMode), a second run
// changes nothing, and with cp1's apiserver away for 70 s every other node stays Ready and the
// API answers through the balancer (before the move, LAB.md: every node NotReady after ~40 s).
// cp1 itself may go NotReady: its kubelet uses its own apiserver, by kubeadm's design.
func TestClusterEndpoint(t *testing.T) {
	nodes := requireLab(t)
	roots := caPool(t)
	cs := clientset(t)
	ctx := context.Background()
	cp1 := nodes[0]
	local := adminCopy(t)
	here := func(args ...string) multilab.Result {
		t.Helper()
		return certctlWith(t, local, args...)
	}
	kubeletConf := func() map[string]string {
		out := map[string]string{}
		for _, n := range nodes {
			out[n.Name] = serverOf(t, n, "/etc/kubernetes/kubelet.conf")
		}
		return out
	}
	endpointNow := func() string {
		doc, _, err := kubeadmconfig.Read(ctx, cs)
		if err != nil {
			t.Fatal(err)
		}
		ep, err := kubeadmconfig.ControlPlaneEndpoint(doc)
		if err != nil {
			t.Fatal(err)
		}
		return ep
	}
	before, epBefore := kubeletConf(), endpointNow()
	if epBefore == multilab.LBAddr {
		t.Fatalf("the lab is already on %s: this test needs the cluster as case B made it (hack/lab/multi.sh down && up)", multilab.LBAddr)
	}

	// Refused: not an address; an address where nothing serves the cluster. Nothing changes.
	for _, args := range [][]string{
		{"cluster", "endpoint", "https://10.2.1.139:6443/some/path"},
		{"cluster", "endpoint", "10.2.1.250:6443"},
	} {
		if r := here(args...); r.Code == 0 || r.Stderr == "" {
			t.Errorf("%v: want a clear refusal, got %s", args, r)
		}
	}
	// The dry run: every node's plan, nothing changed.
	r := here("cluster", "endpoint", multilab.LBAddr, "--dry-run")
	if r.Code != 0 || strings.Count(r.Stdout, "would move") < len(nodes) {
		t.Fatalf("cluster endpoint --dry-run: want a plan naming every node's kubeconfigs, got %s", r)
	}
	if got := kubeletConf(); !equalMaps(got, before) || endpointNow() != epBefore {
		t.Fatalf("the dry run changed something: kubelet.conf servers %v (before %v), controlPlaneEndpoint %s", got, before, endpointNow())
	}
	assertNoJobs(t)

	// The move, with clients polling through the balancer and every node watched.
	lb := startPoller(t, multilab.LBAddr, roots, 50*time.Millisecond, 15*time.Minute)
	api := startPollerPath(t, multilab.LBAddr, "/version", roots, 50*time.Millisecond, 15*time.Minute)
	watch := watchNodes(cs, 15*time.Minute)
	start := time.Now()
	r = here("cluster", "endpoint", multilab.LBAddr)
	took := time.Since(start)
	ok, fail, errs := lb.Stop()
	apiOK, apiFail, apiErrs := api.Stop()
	polls, _, notReady := watch.Stop()
	if r.Code != 0 {
		t.Fatalf("cluster endpoint %s: %s", multilab.LBAddr, r)
	}
	t.Logf("the move took %s; through the balancer: /readyz %d ok, %d failed %v; /version %d ok, %d failed %v; %d node polls, NotReady: %v",
		took.Round(100*time.Millisecond), ok, fail, errs, apiOK, apiFail, apiErrs, polls, notReady)
	if fail != 0 || apiFail != 0 || ok == 0 || apiOK == 0 {
		t.Errorf("through the balancer during the move: %d+%d failed requests (target 0), %d+%d ok", fail, apiFail, ok, apiOK)
	}
	if len(notReady) > 0 || polls == 0 {
		t.Errorf("nodes NotReady during the move: %v (%d polls)", notReady, polls)
	}
	assertNoJobs(t)

	// After: the cluster's records and every node's kubeconfigs name the balancer.
	want := "https://" + multilab.LBAddr
	if ep := endpointNow(); ep != multilab.LBAddr {
		t.Errorf("kubeadm-config controlPlaneEndpoint is %q, want %s", ep, multilab.LBAddr)
	}
	ci, err := cs.CoreV1().ConfigMaps("kube-public").Get(ctx, "cluster-info", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg, err := clientcmd.Load([]byte(ci.Data["kubeconfig"])); err != nil || strings.Join(kubeconfig.Servers(cfg), ",") != want {
		t.Errorf("kube-public/cluster-info names %v (%v), want %s", ci.Data["kubeconfig"], err, want)
	}
	for _, n := range nodes {
		files := []string{"kubelet.conf"}
		if n.ControlPlane() {
			// kubeadm 1.35+ (ControlPlaneKubeletLocalMode, GA): a control-plane node's kubelet
			// uses its own apiserver, and keeps it.
			files = []string{"admin.conf"}
			for _, f := range []string{"controller-manager.conf", "kubelet.conf"} {
				if got := serverOf(t, n, "/etc/kubernetes/"+f); got != "https://"+n.APIServer() {
					t.Errorf("[%s] %s must keep the node's own apiserver: %s", n.Name, f, got)
				}
			}
		}
		if n.Name == cp1.Name {
			files = append(files, "super-admin.conf")
		}
		for _, f := range files {
			if got := serverOf(t, n, "/etc/kubernetes/"+f); got != want {
				t.Errorf("[%s] %s names %s, want %s", n.Name, f, got, want)
			}
		}
	}
	if cfg, err := clientcmd.LoadFromFile(local); err != nil || strings.Join(kubeconfig.Servers(cfg), ",") != want {
		t.Errorf("the command's own kubeconfig was not moved to %s: %v", want, err)
	}
	// A second run has nothing left to do: no kubelet restarted.
	r = here("cluster", "endpoint", multilab.LBAddr)
	if r.Code != 0 || strings.Contains(r.Stderr, "waiting for its kubelet") {
		t.Errorf("a second run must change nothing: %s", r)
	}

	// cp1's apiserver away for 70 s (more than the node monitor's grace period): every other
	// node stays Ready, and the API answers through the balancer with the moved kubeconfig.
	// (cp1's kubelet reports through cp1's own apiserver: ControlPlaneKubeletLocalMode.)
	lbCfg, err := clientcmd.BuildConfigFromFlags("", local)
	if err != nil {
		t.Fatal(err)
	}
	lbCS, err := kubernetes.NewForConfig(lbCfg)
	if err != nil {
		t.Fatal(err)
	}
	moved := "/etc/kubernetes/kube-apiserver.yaml.away"
	if r, err := multilab.Run(multilab.Command(ctx, cp1, "mv", "/etc/kubernetes/manifests/kube-apiserver.yaml", moved)); err != nil || r.Code != 0 {
		t.Fatalf("take cp1's apiserver away: %v %s", err, r)
	}
	t.Cleanup(func() {
		_, _ = multilab.Run(multilab.Command(context.Background(), cp1, "sh", "-c", "test -f "+moved+" && mv "+moved+" /etc/kubernetes/manifests/kube-apiserver.yaml"))
	})
	if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		c, err := net.DialTimeout("tcp", cp1.APIServer(), time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil, nil
	}); err != nil {
		t.Fatalf("cp1's apiserver still listens 2 min after its manifest left")
	}
	away := time.Now()
	watch = watchNodes(cs, 5*time.Minute)
	var apiCalls, apiErrors int
	_ = wait.PollUntilContextTimeout(ctx, 2*time.Second, 70*time.Second, true, func(ctx context.Context) (bool, error) {
		apiCalls++
		callCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // not the poll's: it ends with the 70 s
		defer cancel()
		if _, err := lbCS.CoreV1().Nodes().List(callCtx, metav1.ListOptions{}); err != nil {
			apiErrors++
			t.Logf("kubectl get nodes through the balancer: %v", err)
		}
		return false, nil // the whole 70 s
	})
	polls, _, notReady = watch.Stop()
	t.Logf("cp1's apiserver away %s: %d node polls, NotReady %v; %d of %d API calls through the balancer failed",
		time.Since(away).Round(time.Second), polls, notReady, apiErrors, apiCalls)
	delete(notReady, cp1.Name)
	if len(notReady) > 0 || polls < 30 {
		t.Errorf("with cp1's apiserver away, nodes went NotReady: %v (%d polls)", notReady, polls)
	}
	if apiErrors > 0 {
		t.Errorf("%d of %d API calls through the balancer failed with cp1 away", apiErrors, apiCalls)
	}
	if r, err := multilab.Run(multilab.Command(ctx, cp1, "mv", moved, "/etc/kubernetes/manifests/kube-apiserver.yaml")); err != nil || r.Code != 0 {
		t.Fatalf("put cp1's apiserver back: %v %s", err, r)
	}
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	var last error
	if err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		last = apipoll.Get(ctx, client, "https://"+cp1.APIServer()+"/readyz")
		return last == nil, nil
	}); err != nil {
		t.Fatalf("cp1's apiserver not ready again: %v", last)
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
