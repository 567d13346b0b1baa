package multinode

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/certctl/certctl/internal/multilab"
	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/cluster"
	"github.com/certctl/certctl/pkg/inspect"
	"github.com/certctl/certctl/pkg/kubeconfig"
	"github.com/certctl/certctl/pkg/lease"
)

// TestFaultOrchestratorKilled is issue 21's first fault on the lab: `certctl cluster renew
// all` killed with SIGKILL (the operator's terminal gone) at random instants after it took the
// Lease, several times, then run again to the end. Each run after a kill takes the Lease at
// once (its holder's process is provably gone from this machine), adopts the Job the killed
// run left on a node instead of running that node's work twice, and the last one finishes:
// every control-plane node serves a renewed certificate, inspect is clean on each, no two
// apiservers were ever down at once, and nothing is left (no Job, no progress record, the
// Lease free).
func TestFaultOrchestratorKilled(t *testing.T) {
	nodes := requireLab(t)
	cps := controlPlanes(nodes)
	roots := caPool(t)
	cs := clientset(t)
	ctx := context.Background()
	before := freshRenew(t, cs, cps)
	args := []string{"cluster", "renew", "all", "--days", "3650", "--kubeconfig", multilab.AdminKubeconfig(), "--image", multilab.Image}

	lb := startPoller(t, multilab.LBAddr, roots, 50*time.Millisecond, 20*time.Minute)
	own := map[string]*poller{}
	for _, n := range cps {
		own[n.Name] = startPoller(t, n.APIServer(), roots, 50*time.Millisecond, 20*time.Minute)
	}

	const kills = 2
	report, _ := killRuns(t, cs, args, kills, killAt{Window: 60 * time.Second}, func() string {
		var done []string // the nodes the progress record has done
		if cm, err := cs.CoreV1().ConfigMaps(lease.Namespace).Get(ctx, cluster.ProgressName, metav1.GetOptions{}); err == nil {
			for k := range cm.Data {
				if n, ok := strings.CutPrefix(k, "done."); ok {
					done = append(done, n)
				}
			}
			slices.Sort(done)
		}
		return fmt.Sprintf("nodes done %v", done)
	})

	// The same command once more, to the end (after a run that finished, it renews again: a
	// complete run must not find anything left to resume or adopt).
	r, err := multilab.Run(exec.Command(testenv.Certctl(t), args...))
	if err != nil {
		t.Fatal(err)
	}
	ok, fail, errs := lb.Stop()
	all := stopAll(own)
	t.Logf("the run after %d kills: %s", kills, r)
	if r.Code != 0 {
		t.Fatalf("cluster renew all after %d kills: %s", kills, r)
	}
	for _, l := range report {
		t.Log(l)
	}
	t.Logf("through the balancer from the first run to the last's end: /readyz %d ok, %d failed %v; down windows %s", ok, fail, errs, windowsText(lb.Windows()))
	for _, w := range lb.Windows() {
		if w.End.Sub(w.Start) >= time.Second {
			t.Errorf("the API through the balancer was down %s (%s)", w.End.Sub(w.Start).Round(time.Millisecond), windowsText([]window{w}))
		}
	}
	noOverlap(t, all)
	for _, n := range cps {
		if servedCert(t, n.APIServer()).SerialNumber.String() == before[n.Name] {
			t.Errorf("%s still serves the apiserver certificate it had before the runs", n.Name)
		}
		// Every certificate with its key, every kubeconfig parsing: nothing left half-done.
		checkPairs(t, n)
	}
	assertRenewDone(t, cs)
	if l, err := cs.CoordinationV1().Leases(lease.Namespace).Get(ctx, lease.Name, metav1.GetOptions{}); err != nil || l.Spec.HolderIdentity != nil {
		t.Errorf("the Lease is not free after the last run: %v %v", err, l)
	}
}

// TestFaultOrchestratorKilledEndpoint is issue 21's first fault for `cluster endpoint`: the
// move of the whole cluster to another endpoint (from the balancer to cp1's address when the
// lab is on the balancer, as TestClusterEndpoint leaves it; otherwise onto the balancer) killed
// with SIGKILL at random instants after it took the Lease, twice, then run again to the end.
// The run after a kill takes the Lease over at once, goes on from the record the killed run
// left (the endpoint it moves from) and adopts a node Job it left; the last run finishes:
// kubeadm-config, cluster-info and every node's kubeconfigs name the new endpoint, every node
// is Ready, no request through the balancer fails, every certificate has its key, nothing is
// left (no Job, no record, the Lease free). Then the cluster is moved back, uninterrupted.
func TestFaultOrchestratorKilledEndpoint(t *testing.T) {
	nodes := requireLab(t)
	roots := caPool(t)
	cs := clientset(t)
	ctx := context.Background()
	m := newEndpointMove(t, cs, nodes)
	to, args := m.to, m.args
	lb := startPoller(t, multilab.LBAddr, roots, 50*time.Millisecond, 15*time.Minute)
	watch := watchNodes(cs, 15*time.Minute)

	const kills = 2
	report, _ := killRuns(t, cs, args, kills, killAt{Window: 30 * time.Second}, func() string {
		rec, err := cs.CoreV1().ConfigMaps(lease.Namespace).Get(ctx, cluster.EndpointRecordName, metav1.GetOptions{})
		if err != nil {
			return "no endpoint record"
		}
		return fmt.Sprintf("endpoint record %s -> %s", rec.Data["from"], rec.Data["to"])
	})
	r, err := multilab.Run(exec.Command(testenv.Certctl(t), args...))
	if err != nil {
		t.Fatal(err)
	}
	ok, fail, errs := lb.Stop()
	polls, _, notReady := watch.Stop()
	for _, l := range report {
		t.Log(l)
	}
	t.Logf("the run after %d kills: %s", kills, r)
	if r.Code != 0 {
		t.Fatalf("cluster endpoint %s after %d kills: %s", to, kills, r)
	}
	t.Logf("through the balancer: /readyz %d ok, %d failed %v; %d node polls, NotReady %v", ok, fail, errs, polls, notReady)
	if fail != 0 || ok == 0 {
		t.Errorf("through the balancer during the killed move: %d failed requests (target 0), %d ok", fail, ok)
	}
	if len(notReady) > 0 {
		t.Errorf("nodes NotReady during the killed move: %v", notReady)
	}
	m.checkDone(t, cs, nodes)
	m.back(t, cs)
}

// endpointMove is the move of the endpoint fault tests: the whole cluster from the endpoint
// kubeadm-config names to the other one (cp1's address when the lab is on the balancer, as
// TestClusterEndpoint leaves it; onto the balancer otherwise), by `cluster endpoint` with a
// copy of the admin kubeconfig.
type endpointMove struct {
	from, to, local string
	args            []string // cluster endpoint TO --kubeconfig LOCAL --image ...
}

func newEndpointMove(t *testing.T, cs kubernetes.Interface, nodes []multilab.Node) endpointMove {
	t.Helper()
	m := endpointMove{from: controlPlaneEndpoint(t, cs), to: multilab.LBAddr, local: adminCopy(t)}
	if m.from == multilab.LBAddr {
		m.to = nodes[0].APIServer()
	}
	m.args = []string{"cluster", "endpoint", m.to, "--kubeconfig", m.local, "--image", multilab.Image}
	return m
}

// checkDone checks the move finished: kubeadm-config, cluster-info and every node's
// kubeconfigs name the new endpoint, every node is Ready with every certificate matching its
// key, and nothing is left (no Job, no endpoint record, the Lease free).
func (m endpointMove) checkDone(t *testing.T, cs kubernetes.Interface, nodes []multilab.Node) {
	t.Helper()
	ctx := context.Background()
	if ep := controlPlaneEndpoint(t, cs); ep != m.to {
		t.Errorf("kubeadm-config controlPlaneEndpoint is %s, want %s", ep, m.to)
	}
	ci, err := cs.CoreV1().ConfigMaps("kube-public").Get(ctx, "cluster-info", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg, err := clientcmd.Load([]byte(ci.Data["kubeconfig"])); err != nil || strings.Join(kubeconfig.Servers(cfg), ",") != "https://"+m.to {
		t.Errorf("kube-public/cluster-info does not name %s: %v", m.to, err)
	}
	for _, n := range nodes {
		file := "/etc/kubernetes/kubelet.conf" // a control-plane node's kubelet keeps its own apiserver
		if n.ControlPlane() {
			file = "/etc/kubernetes/admin.conf"
		}
		if got := serverOf(t, n, file); got != "https://"+m.to {
			t.Errorf("[%s] %s names %s, want https://%s", n.Name, file, got, m.to)
		}
		waitNodeReady(t, cs, n.Name, 2*time.Minute)
		checkPairs(t, n)
	}
	assertNoJobs(t)
	if _, err := cs.CoreV1().ConfigMaps(lease.Namespace).Get(ctx, cluster.EndpointRecordName, metav1.GetOptions{}); err == nil {
		t.Errorf("the endpoint record %s is left after the run that finished", cluster.EndpointRecordName)
	}
	if l, err := cs.CoordinationV1().Leases(lease.Namespace).Get(ctx, lease.Name, metav1.GetOptions{}); err != nil || l.Spec.HolderIdentity != nil {
		t.Errorf("the Lease is not free after the last run: %v %v", err, l)
	}
}

// back moves the cluster back where the lab was, for the tests after this one.
func (m endpointMove) back(t *testing.T, cs kubernetes.Interface) {
	t.Helper()
	if r := certctlWith(t, m.local, "cluster", "endpoint", m.from); r.Code != 0 {
		t.Fatalf("cluster endpoint %s (back): %s", m.from, r)
	}
	if ep := controlPlaneEndpoint(t, cs); ep != m.from {
		t.Fatalf("the cluster was not moved back: controlPlaneEndpoint %s, want %s", ep, m.from)
	}
}

// killAt is when killRuns kills a run, after it took the Lease (from then on a kill leaves
// work behind: a Job running, a record half-written): at a random instant within Window, or,
// When set, as soon as When holds (polled every 200 ms; a run that ends before is a failure,
// the fault not injected).
type killAt struct {
	Window time.Duration
	When   func(context.Context) bool
	What   string // what When waits for, for the log
}

// killRuns starts `certctl args...` kills times in a row and SIGKILLs each run at its instant
// (at). state says what the killed run left (logged). It returns one line per run, and whether
// a run finished the whole operation before its random kill (a run that took over quickly may:
// a success, not a failure to kill; no run follows it).
func killRuns(t *testing.T, cs kubernetes.Interface, args []string, kills int, at killAt, state func() string) (report []string, finished bool) {
	t.Helper()
	ctx := context.Background()
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 0))
	t.Logf("kill instants from seed %d", seed)
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= kills && !finished; i++ {
		cmd, out, exited := startCertctl(t, args...)
		// It holds the Lease (as host/PID/...): from then on a kill leaves work behind.
		mine := fmt.Sprintf("%s/%d/", host, cmd.Process.Pid)
		if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
			l, err := cs.CoordinationV1().Leases(lease.Namespace).Get(ctx, lease.Name, metav1.GetOptions{})
			return err == nil && strings.HasPrefix(ptr.Deref(l.Spec.HolderIdentity, ""), mine), nil
		}); err != nil {
			_ = cmd.Process.Kill()
			<-exited
			t.Fatalf("run %d did not take the Lease (an earlier run's dead holder not taken over?): %v\n%s", i, err, out.String())
		}
		took := time.Now()
		var fire <-chan time.Time
		pctx, stop := context.WithCancel(ctx)
		if at.When != nil {
			fire = pollFor(pctx, at.When)
		} else {
			fire = time.After(time.Duration(rng.Int64N(int64(at.Window))))
		}
		var after time.Duration
		select {
		case err := <-exited:
			after = time.Since(took)
			if err != nil {
				t.Fatalf("run %d failed before its kill, +%s: %v\n%s", i, after, err, out.String())
			}
			if at.When != nil {
				t.Fatalf("run %d finished the operation after +%s without %s: the fault was not injected\n%s", i, after.Round(100*time.Millisecond), at.What, out.String())
			}
			line := fmt.Sprintf("run %d finished the operation before its kill, +%s", i, after.Round(100*time.Millisecond))
			report = append(report, line)
			t.Logf("%s:\n%s", line, out.String())
			finished = true
			stop()
			continue
		case <-fire:
			after = time.Since(took)
		}
		stop()
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-exited
		jobs, _ := cs.BatchV1().Jobs("kube-system").List(ctx, metav1.ListOptions{LabelSelector: cluster.LabelName + "=certctl"})
		line := fmt.Sprintf("kill %d at +%s after the Lease was taken%s: %s, %d Job(s) left running", i, after.Round(100*time.Millisecond), map[bool]string{true: ", " + at.What}[at.When != nil], state(), len(jobs.Items))
		report = append(report, line)
		t.Log(line)
		t.Logf("run %d's output until the kill:\n%s", i, out.String())
	}
	return report, finished
}

// startCertctl starts `certctl args...` here, its stdout and stderr into out; exited gets
// its end.
func startCertctl(t *testing.T, args ...string) (cmd *exec.Cmd, out *bytes.Buffer, exited <-chan error) {
	t.Helper()
	out = &bytes.Buffer{}
	cmd = exec.Command(testenv.Certctl(t), args...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := make(chan error, 1)
	go func() { c <- cmd.Wait() }()
	return cmd, out, c
}

// pollFor returns a channel that receives once cond holds, polled every 200 ms (until ctx
// ends).
func pollFor(ctx context.Context, cond func(context.Context) bool) <-chan time.Time {
	c := make(chan time.Time, 1)
	go func() {
		if wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) { return cond(ctx), nil }) == nil {
			c <- time.Now()
		}
	}()
	return c
}

// balancerKubeconfig is a copy of the lab's admin kubeconfig naming the balancer (the lab's
// admin.conf names cp1, as case B's cluster does; "kubernetes" is a SAN of every apiserver
// certificate), and a client of it.
func balancerKubeconfig(t *testing.T) (string, *kubernetes.Clientset) {
	t.Helper()
	viaLB := adminCopy(t)
	kc, err := clientcmd.LoadFromFile(viaLB)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range kc.Clusters {
		c.Server, c.TLSServerName = "https://"+multilab.LBAddr, "kubernetes"
	}
	if err := clientcmd.WriteToFile(*kc, viaLB); err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", viaLB)
	if err != nil {
		t.Fatal(err)
	}
	return viaLB, kubernetes.NewForConfigOrDie(cfg)
}

// TestFaultLoadBalancerDown is issue 21's fifth fault: with haproxy stopped, the commands that
// reach the API through it (an operator's kubeconfig naming the balancer) refuse before they
// change anything: no Job, no progress record, no rotation Secret, every apiserver serving the
// certificate it served before; case C's message says what to run on a node instead.
func TestFaultLoadBalancerDown(t *testing.T) {
	nodes := requireLab(t)
	cps := controlPlanes(nodes)
	// The operator's kubeconfig through the balancer.
	viaLB, lbCS := balancerKubeconfig(t)
	if _, err := lbCS.Discovery().ServerVersion(); err != nil {
		t.Fatalf("the API through the balancer before it is stopped: %v", err)
	}
	before := map[string]string{}
	for _, n := range cps {
		before[n.Name] = servedCert(t, n.APIServer()).SerialNumber.String()
	}
	ctx := context.Background()
	lab(t, "lb", "stop")
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			lab(t, "lb", "start")
		}
	})
	if err := waitTCP(ctx, multilab.LBAddr, false, time.Minute); err != nil {
		t.Fatalf("the balancer did not stop: %v", err)
	}
	for _, args := range [][]string{
		// Every cluster command waits --api-wait (2m) for an API that refuses connections (an
		// apiserver restarting under it): 10 s here, the refusal is the point.
		{"cluster", "renew", "all", "--api-wait", "10s"},
		{"cluster", "ca-rotate", "all", "--phase", "trust", "--api-wait", "10s"},
		{"cluster", "endpoint", multilab.LBAddr, "--api-wait", "10s"},
	} {
		if r := certctlWith(t, viaLB, args...); r.Code == 0 || r.Stderr == "" {
			t.Errorf("%v with the balancer down: want a refusal, got %s", args, r)
		}
	}
	lab(t, "lb", "start")
	restarted = true
	if err := waitTCP(ctx, multilab.LBAddr, true, time.Minute); err != nil {
		t.Fatalf("the balancer did not come back: %v", err)
	}
	cs := clientset(t)
	if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := lbCS.Discovery().ServerVersion()
		return err == nil, nil
	}); err != nil {
		t.Fatalf("the API through the balancer did not come back: %v", err)
	}
	for _, n := range cps {
		if servedCert(t, n.APIServer()).SerialNumber.String() != before[n.Name] {
			t.Errorf("%s serves another certificate after the refused commands", n.Name)
		}
	}
	assertNoJobs(t)
	if _, err := cs.CoreV1().ConfigMaps(lease.Namespace).Get(ctx, cluster.ProgressName, metav1.GetOptions{}); err == nil {
		t.Errorf("the refused commands left the progress record %s", cluster.ProgressName)
	}
	if _, err := cs.CoreV1().Secrets("kube-system").Get(ctx, cluster.CARotationSecret, metav1.GetOptions{}); err == nil {
		t.Errorf("the refused rotation left the Secret %s", cluster.CARotationSecret)
	}
}

// TestFaultLoadBalancerDownMidCommand is issue 21's fifth fault in the middle of a command, in
// `cluster renew all` and `cluster endpoint` (a phase of `cluster ca-rotate`:
// TestFaultLoadBalancerDownMidCARotate, make e2e-multi-extra): the command runs
// through the balancer (its kubeconfig names it), and the balancer stops while a node's Job runs.
// The command waits --api-wait for the API (20 s here), then stops, saying the API cannot be
// reached, without blaming the node (reported interrupted); on that node the Job goes on by
// itself (its pod reaches the API without the balancer); the nodes after it are untouched. With
// the balancer back the same command takes the dead run's Lease over, adopts or reads what the
// node's Job did, does the rest, and leaves nothing behind: every certificate with its key.
func TestFaultLoadBalancerDownMidCommand(t *testing.T) {
	nodes := requireLab(t)
	cps := threeControlPlanes(t, nodes)
	ws := workers(nodes)
	if len(ws) == 0 {
		t.Fatal("the lab has no worker")
	}
	cs := clientset(t)
	mid, last := cps[1], cps[len(cps)-1]
	jobOf := func(component, node string) func(t *testing.T, s lbStopRun) {
		return func(t *testing.T, s lbStopRun) {
			waitJobMade(t, cs, jobSelector(component, node), s.cmd, s.out, s.exited)
		}
	}
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T) lbMid
	}{
		{"cluster renew all", func(t *testing.T) lbMid {
			before := freshRenew(t, cs, cps)
			return lbMid{
				args: []string{"cluster", "renew", "all"}, node: mid.Name, component: "renew", at: jobOf("renew", mid.Name),
				stopped: func(t *testing.T) {
					if servedCert(t, last.APIServer()).SerialNumber.String() != before[last.Name] {
						t.Errorf("%s, after the node whose Job ran when the balancer stopped, was changed", last.Name)
					}
				},
				done: func(t *testing.T, _ string) {
					for _, n := range cps {
						if servedCert(t, n.APIServer()).SerialNumber.String() == before[n.Name] {
							t.Errorf("%s is not renewed after the run with the balancer back", n.Name)
						}
						checkPairs(t, n)
					}
					assertRenewDone(t, cs)
				},
			}
		}},
		// The worker's Job is held where its certctl restarts the kubelet on the new endpoint
		// (kubelet.conf written), the balancer stopped, then the Job let go: the control-plane
		// nodes are moved before, the worker is the last node.
		{"cluster endpoint", func(t *testing.T) lbMid {
			m := newEndpointMove(t, cs, nodes)
			w := ws[len(ws)-1]
			h := newHold(t, w, "before-restart kubelet")
			return lbMid{
				args: []string{"cluster", "endpoint", m.to}, node: w.Name, component: "endpoint",
				at: func(t *testing.T, s lbStopRun) {
					if err := h.fired(context.Background(), 3*time.Minute); err != nil {
						_ = s.cmd.Process.Kill()
						<-s.exited
						t.Fatalf("%s's certctl never reached the kubelet's restart: %v\n%s", w.Name, err, s.out.String())
					}
				},
				then: func(t *testing.T) { h.let(t) },
				stopped: func(t *testing.T) {
					// kubelet.conf, written before the hold, stays on the new endpoint: the
					// worker's certctl goes on from there alone (no rollback for an orchestrator
					// gone); the next run takes its Job's result.
					if got := serverOf(t, w, "/etc/kubernetes/kubelet.conf"); got != "https://"+m.to {
						t.Errorf("[%s] kubelet.conf names %s after the stopped run, want https://%s", w.Name, got, m.to)
					}
				},
				done: func(t *testing.T, _ string) {
					m.checkDone(t, cs, nodes)
					m.back(t, cs)
				},
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) { balancerStopsMid(t, tc.setup(t)) })
	}
}

// lbMid is one command of TestFaultLoadBalancerDownMidCommand.
type lbMid struct {
	args []string // the command, without --kubeconfig and --image
	node string   // the node whose Job runs when the balancer stops: interrupted, not failed
	// component labels the node's Job: exactly one is made across both runs (the next run
	// takes the result of the Job that went on alone, it does not run the node again).
	component string
	// at returns at the instant the balancer is to stop; then, when set, is called right after.
	at   func(t *testing.T, s lbStopRun)
	then func(t *testing.T)
	// stopped checks what the run the balancer stopped left; done what the next run did (with
	// the kubeconfig through the balancer), and puts the lab back.
	stopped func(t *testing.T)
	done    func(t *testing.T, viaLB string)
}

// lbStopRun is the command running when the balancer stops.
type lbStopRun struct {
	cmd    *exec.Cmd
	out    *bytes.Buffer
	exited <-chan error
}

// balancerStopsMid runs c's command through the balancer, stops the balancer at c.at, checks the
// command stops without blaming the node, starts the balancer and runs the command again.
func balancerStopsMid(t *testing.T, c lbMid) {
	ctx := context.Background()
	viaLB, lbCS := balancerKubeconfig(t)
	if c.component == "" {
		t.Fatal("lbMid without the component of the node's Job")
	}
	made, stopWatch := watchJobsMade(t, clientset(t), jobSelector(c.component, c.node))
	defer stopWatch() // its credentials may be refused once the command ran (a CA rotation's drop)
	restarted := true
	t.Cleanup(func() {
		if !restarted {
			lab(t, "lb", "start")
		}
	})
	start := time.Now()
	cmd, out, exited := startCertctl(t, append(slices.Clone(c.args), "--api-wait", "20s", "--kubeconfig", viaLB, "--image", multilab.Image)...)
	c.at(t, lbStopRun{cmd, out, exited})
	lab(t, "lb", "stop")
	restarted = false
	stopped := time.Now()
	if c.then != nil {
		c.then(t)
	}
	t.Logf("the balancer stopped %s after the command started (%s's Job running)", stopped.Sub(start).Round(100*time.Millisecond), c.node)
	err := endsWithin(t, cmd, out, exited, 5*time.Minute, strings.Join(c.args, " ")+", the balancer stopped,")
	t.Logf("the command ended %s after the balancer stopped: %v\n%s", time.Since(stopped).Round(100*time.Millisecond), err, out.String())
	if err == nil {
		t.Fatalf("%s went on with the balancer (its kubeconfig's server) stopped:\n%s", strings.Join(c.args, " "), out.String())
	}
	if strings.Contains(out.String(), "node "+c.node+" failed") {
		t.Errorf("the API away was reported as %s's failure:\n%s", c.node, out.String())
	}
	c.stopped(t)
	lab(t, "lb", "start")
	restarted = true
	if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := lbCS.Discovery().ServerVersion()
		return err == nil, nil
	}); err != nil {
		t.Fatalf("the API through the balancer did not come back: %v", err)
	}
	start = time.Now()
	r := certctlWith(t, viaLB, c.args...)
	t.Logf("the same command with the balancer back: %s", time.Since(start).Round(100*time.Millisecond))
	if r.Code != 0 {
		t.Fatalf("%s with the balancer back: %s", strings.Join(c.args, " "), r)
	}
	if jobs := made(); len(jobs) != 1 {
		t.Errorf("%s's Jobs made across both runs: %v, want one (the next run takes its result)", c.node, jobs)
	}
	c.done(t, viaLB)
}

// watchJobsMade watches (through cp1, not the balancer) the certctl Jobs labelled sel from now
// on, with an informer (a watch the apiserver ends is resumed, or listed again), and returns
// what tells the names of those made so far, each once, and what stops the watch (at the
// latest when the test ends).
func watchJobsMade(t *testing.T, cs kubernetes.Interface, sel string) (made func() []string, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	var (
		mu    sync.Mutex
		names []string
		seen  = map[types.UID]bool{}
	)
	lw := cache.NewFilteredListWatchFromClient(cs.BatchV1().RESTClient(), "jobs", "kube-system", func(o *metav1.ListOptions) { o.LabelSelector = sel })
	_, informer := cache.NewInformerWithOptions(cache.InformerOptions{ListerWatcher: lw, ObjectType: &batchv1.Job{},
		Handler: cache.ResourceEventHandlerDetailedFuncs{AddFunc: func(obj any, initial bool) {
			j := obj.(*batchv1.Job)
			mu.Lock()
			defer mu.Unlock()
			if !seen[j.UID] {
				seen[j.UID] = true
				if initial {
					names = append(names, j.Name+" (before)")
				} else {
					names = append(names, j.Name)
				}
			}
		}}})
	go informer.RunWithContext(ctx)
	if !cache.WaitForCacheSync(ctx.Done(), informer.HasSynced) {
		t.Fatalf("the watch of the Jobs %s never synced", sel)
	}
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(names)
	}, cancel
}

// TestFaultNodeAway is issue 21's second fault: a control-plane node's kubelet stops (the node
// goes away) before `cluster renew all` reaches it. The command stops at that node once the
// node is seen not Ready (before making its Job, or while its Job's pod waits to start), long
// before the Job's timeout (the default 10 minutes here), naming it, with the node before it
// renewed, the node after it untouched, and no Job left (certctl never started there: a pod
// started late would run into the Job's deadline and be killed mid-work); with the kubelet
// back, the same command resumes at that node and finishes.
func TestFaultNodeAway(t *testing.T) {
	nodes := requireLab(t)
	cps := controlPlanes(nodes)
	cs := clientset(t)
	ctx := context.Background()
	if err := cs.CoreV1().ConfigMaps(lease.Namespace).Delete(ctx, cluster.ProgressName, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	first, away, last := cps[0], cps[1], cps[len(cps)-1]
	before := map[string]string{}
	for _, n := range cps {
		before[n.Name] = servedCert(t, n.APIServer()).SerialNumber.String()
	}
	lab(t, "kubelet", away.Name, "stop")
	back := false
	t.Cleanup(func() {
		if !back {
			lab(t, "kubelet", away.Name, "start")
		}
	})
	args := []string{"cluster", "renew", "all", "--image", multilab.Image}
	stopped := time.Now()
	r := certctlHere(t, args...)
	if r.Code == 0 || !strings.Contains(r.Stderr, "node "+away.Name+" failed") {
		t.Fatalf("cluster renew all with %s's kubelet stopped: want it to stop at %s, got %s", away.Name, away.Name, r)
	}
	if took := time.Since(stopped); took > 5*time.Minute {
		t.Errorf("the command stopped %s after the kubelet did: the node not Ready was not noticed before the Job's 10-minute timeout", took.Round(time.Second))
	}
	assertNoJobs(t)
	if servedCert(t, first.APIServer()).SerialNumber.String() == before[first.Name] {
		t.Errorf("%s, before the node that went away, was not renewed", first.Name)
	}
	if servedCert(t, last.APIServer()).SerialNumber.String() != before[last.Name] {
		t.Errorf("%s, after the node that went away, was changed", last.Name)
	}
	lab(t, "kubelet", away.Name, "start")
	back = true
	t.Logf("%s Ready again after %s", away.Name, waitNodeBack(t, cs, away.Name, 3*time.Minute).Round(time.Second))
	r = certctlHere(t, args...)
	if r.Code != 0 {
		t.Fatalf("cluster renew all with %s back: %s", away.Name, r)
	}
	if !strings.Contains(r.Stdout, "resumed") {
		t.Errorf("the second run did not resume after %s: %s", first.Name, r)
	}
	for _, n := range []multilab.Node{away, last} {
		if servedCert(t, n.APIServer()).SerialNumber.String() == before[n.Name] {
			t.Errorf("%s was not renewed by the run that resumed", n.Name)
		}
	}
	assertRenewDone(t, cs)
}

// TestFaultNodeNetworkCut is issue 21's second fault with the network rather than the kubelet
// gone: `cluster renew all --node cp2 --node cp3 --job-timeout 60s`, and cp2's network cut
// (its link down: every connection to and from it hangs) as soon as its Job's certctl has
// started there. Once certctl runs, the Node's Ready condition no longer ends the wait (a Job's
// own restarts make a node miss its reports, docs/faults.md): the command waits for the Job's
// result until --job-timeout, then stops at cp2 naming it, cp3 untouched. On cp2, certctl
// goes on without the API, and the kubelet ends it at the same deadline (the pod's
// activeDeadlineSeconds) if it has not ended: whatever it did, every certificate there has its
// key. With the network back, the same command renews cp2 and cp3 and leaves nothing behind.
func TestFaultNodeNetworkCut(t *testing.T) {
	nodes := requireLab(t)
	cps := controlPlanes(nodes)
	cs := clientset(t)
	ctx := context.Background()
	before := freshRenew(t, cs, cps)
	cut, last := cps[1], cps[len(cps)-1]
	args := []string{"cluster", "renew", "all", "--node", cut.Name, "--node", last.Name, "--image", multilab.Image, "--kubeconfig", multilab.AdminKubeconfig()}

	start := time.Now()
	cmd, out, exited := startCertctl(t, append(slices.Clone(args), "--job-timeout", "60s")...)
	sel := cluster.LabelName + "=certctl," + cluster.LabelNode + "=" + cut.Name
	var pod string
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		pods, err := cs.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err != nil {
			return false, nil
		}
		for _, p := range pods.Items {
			for _, st := range p.Status.ContainerStatuses {
				if st.State.Running != nil || st.State.Terminated != nil {
					pod = p.Name
					return true, nil
				}
			}
		}
		return false, nil
	}); err != nil {
		_ = cmd.Process.Kill()
		<-exited
		t.Fatalf("%s's Job never started certctl: %v\n%s", cut.Name, err, out.String())
	}
	restore := cutNetwork(t, cut.Name)
	cutAt := time.Now()
	t.Logf("%s's network cut %s after the command started (its pod %s had started certctl)", cut.Name, cutAt.Sub(start).Round(100*time.Millisecond), pod)
	err := endsWithin(t, cmd, out, exited, 5*time.Minute, "cluster renew, "+cut.Name+"'s network cut (--job-timeout 60s),")
	stopped := time.Since(cutAt)
	t.Logf("the command ended %s after the cut: %v\n%s", stopped.Round(100*time.Millisecond), err, out.String())
	if err == nil || !strings.Contains(out.String(), "node "+cut.Name) {
		t.Fatalf("with %s's network cut, the command must stop there naming it: %v\n%s", cut.Name, err, out.String())
	}
	if servedCert(t, last.APIServer()).SerialNumber.String() != before[last.Name] {
		t.Errorf("%s, after the node whose network was cut, was changed", last.Name)
	}
	restore()
	t.Logf("%s Ready again %s after its network came back", cut.Name, waitNodeBack(t, cs, cut.Name, 3*time.Minute).Round(time.Second))
	apiserversReady(t, nodes)
	r := certctlHere(t, args[:len(args)-2]...)
	if r.Code != 0 {
		t.Fatalf("cluster renew with %s's network back: %s", cut.Name, r)
	}
	for _, n := range []multilab.Node{cut, last} {
		if servedCert(t, n.APIServer()).SerialNumber.String() == before[n.Name] {
			t.Errorf("%s was not renewed by the run after the network came back", n.Name)
		}
	}
	for _, n := range cps {
		checkPairs(t, n)
	}
	assertRenewDone(t, cs)
}

// TestFaultWorkerNetworkCut is issue 21's second fault on a worker: `cluster endpoint` moves the
// whole cluster to another endpoint and worker1's network is cut while its Job runs, at the
// worst instant: kubelet.conf already names the new endpoint and certctl is about to restart
// the kubelet (the lab's certctl, built with -tags failpoints, holds there until the test lets
// it go, once the link is down). The command stops at the worker naming it, within
// --job-timeout; the worker's certctl goes on alone (the kubelet restarted, healthy, on the new
// endpoint it cannot reach yet). With the network back, the worker is Ready again through the
// new endpoint and the same command finishes; nothing is left behind. Then the cluster is
// moved back.
func TestFaultWorkerNetworkCut(t *testing.T) {
	nodes := requireLab(t)
	ws := workers(nodes)
	if len(ws) == 0 {
		t.Fatal("the lab has no worker")
	}
	w := ws[0]
	cs := clientset(t)
	ctx := context.Background()
	m := newEndpointMove(t, cs, nodes)
	to, args := m.to, m.args
	h := newHold(t, w, "before-restart kubelet")

	start := time.Now()
	cmd, out, exited := startCertctl(t, append(slices.Clone(args), "--job-timeout", "60s")...)
	// The failpoint fired: the worker's certctl holds before the kubelet's restart, kubelet.conf
	// written.
	if err := h.fired(ctx, 3*time.Minute); err != nil {
		_ = cmd.Process.Kill()
		<-exited
		t.Fatalf("%s's certctl never reached the kubelet's restart: %v\n%s", w.Name, err, out.String())
	}
	restore := cutNetwork(t, w.Name)
	cutAt := time.Now()
	h.let(t)
	t.Logf("%s's network cut %s after the command started, as its certctl restarts the kubelet on %s", w.Name, cutAt.Sub(start).Round(100*time.Millisecond), to)
	err := endsWithin(t, cmd, out, exited, 5*time.Minute, "cluster endpoint, "+w.Name+"'s network cut (--job-timeout 60s),")
	t.Logf("the command ended %s after the cut: %v\n%s", time.Since(cutAt).Round(100*time.Millisecond), err, out.String())
	if err == nil || !strings.Contains(out.String(), "node "+w.Name+" failed") {
		t.Fatalf("with %s's network cut, the command must stop naming it as the node failed: %v\n%s", w.Name, err, out.String())
	}
	// On the worker, certctl went on without the API: kubelet.conf names the new endpoint.
	if got := serverOf(t, w, "/etc/kubernetes/kubelet.conf"); got != "https://"+to {
		t.Errorf("[%s] kubelet.conf names %s after the cut run, want https://%s (written before the cut)", w.Name, got, to)
	}
	restore()
	t.Logf("%s Ready again %s after its network came back", w.Name, waitNodeReady(t, cs, w.Name, 3*time.Minute).Round(time.Second))
	r, err := multilab.Run(exec.Command(testenv.Certctl(t), args...))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the run with %s's network back: %s", w.Name, r)
	if r.Code != 0 {
		t.Fatalf("cluster endpoint %s with %s's network back: %s", to, w.Name, r)
	}
	m.checkDone(t, cs, nodes)
	m.back(t, cs)
}

// hold is a failpoint line "POINT hold-until PATH" in a node's failpoint file (the lab's
// certctl is built with -tags failpoints): certctl on that node holds at the point until the
// test lets it go.
type hold struct {
	fp, release string // the node's failpoint file; the file whose existence lets it go (here)
}

// newHold writes node's failpoint file with one line holding at point (e.g. "before-restart
// kubelet"). At the test's end the line and the release are removed, and a hold the test did
// not let go (it failed) is let go.
func newHold(t *testing.T, node multilab.Node, point string) hold {
	t.Helper()
	state := filepath.Join(node.Dir(), "etc-kubernetes", ".certctl")
	h := hold{fp: filepath.Join(state, "failpoints"), release: filepath.Join(state, "release")}
	if err := os.MkdirAll(state, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(h.release); err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	if err := os.WriteFile(h.fp, []byte(point+" hold-until /etc/kubernetes/.certctl/release\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = os.Remove(h.fp)
		if t.Failed() {
			_ = os.WriteFile(h.release, nil, 0o600)
			return
		}
		_ = os.Remove(h.release)
	})
	return h
}

// fired waits until the line has fired (gone from the file): certctl holds there.
func (h hold) fired(ctx context.Context, timeout time.Duration) error {
	return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		data, err := os.ReadFile(h.fp)
		return err == nil && len(bytes.TrimSpace(data)) == 0, nil
	})
}

// let lets the hold go.
func (h hold) let(t *testing.T) {
	t.Helper()
	if err := os.WriteFile(h.release, nil, 0o600); err != nil {
		t.Fatal(err)
	}
}

// cutNetwork cuts node's link to the lab's bridge (multi.sh net NODE cut) and returns what
// restores it, once (also at the test's end, whatever happened).
func cutNetwork(t *testing.T, node string) (restore func()) {
	t.Helper()
	lab(t, "net", node, "cut")
	var once sync.Once
	restore = func() { once.Do(func() { lab(t, "net", node, "restore") }) }
	t.Cleanup(restore)
	return restore
}

// endsWithin is how the command startCertctl started ended, waited for at most max; one still
// running then is killed and fails the test (what names it).
func endsWithin(t *testing.T, cmd *exec.Cmd, out *bytes.Buffer, exited <-chan error, max time.Duration, what string) error {
	t.Helper()
	select {
	case err := <-exited:
		return err
	case <-time.After(max):
		_ = cmd.Process.Kill()
		<-exited
		t.Fatalf("%s still runs after %s\n%s", what, max, out.String())
		return nil
	}
}

// TestFaultAPIRestartsUnderOrchestrator is issue 21's sixth fault: the apiserver the
// orchestrator's kubeconfig names (cp1: the lab's admin.conf, as case B's cluster has it) is
// restarted again and again, at random instants, while `cluster renew all --node cp2 --node
// cp3` runs: Jobs created, watched, their logs read, the progress recorded, the Lease
// confirmed, all through an API that goes away for seconds. The command finishes, no node is
// reported failed (pkg/apiretry waits out each restart, `--api-wait`), and cp2 and cp3 serve
// renewed certificates.
func TestFaultAPIRestartsUnderOrchestrator(t *testing.T) {
	nodes := requireLab(t)
	cps := threeControlPlanes(t, nodes)
	named, renewed := cps[0], cps[1:]
	cs := clientset(t)
	ctx := context.Background()
	before := freshRenew(t, cs, cps)
	own := startPoller(t, named.APIServer(), caPool(t), 50*time.Millisecond, 15*time.Minute)

	args := []string{"cluster", "renew", "all", "--image", multilab.Image}
	for _, n := range renewed {
		args = append(args, "--node", n.Name)
	}
	bin := testenv.Certctl(t)
	done := make(chan multilab.Result, 1)
	go func() {
		full := append(slices.Clone(args), "--kubeconfig", multilab.AdminKubeconfig())
		r, err := multilab.Run(exec.Command(bin, full...))
		if err != nil {
			r = multilab.Result{Code: -1, Stderr: err.Error()}
		}
		done <- r
	}()
	// The restarts: each after a random pause of 2-12 s, until the command has ended.
	seed := time.Now().UnixNano()
	rnd := rand.New(rand.NewPCG(uint64(seed), 0))
	t.Logf("restart instants from seed %d", seed)
	var (
		r        multilab.Result
		restarts []string
		start    = time.Now()
	)
loop:
	for {
		pause := time.Duration(2000+rnd.IntN(10000)) * time.Millisecond
		select {
		case r = <-done:
			break loop
		case <-time.After(pause):
		}
		at := time.Since(start).Round(100 * time.Millisecond)
		res, err := multilab.Run(multilab.Command(ctx, named, bin, "restart", "apiserver"))
		if err != nil || res.Code != 0 {
			t.Errorf("restart apiserver on %s at +%s: %v %s", named.Name, at, err, res)
			continue
		}
		restarts = append(restarts, fmt.Sprintf("+%s", at))
	}
	took := time.Since(start)
	own.Stop()
	var down []window
	for _, w := range own.Windows() {
		if w.End.Sub(w.Start) >= restartMin && w.Start.Before(start.Add(took)) {
			down = append(down, w)
		}
	}
	t.Logf("cluster renew all: %s in %s; %s restarted at %v; its apiserver down %d times: %s", r, took.Round(100*time.Millisecond), named.Name, restarts, len(down), windowsText(down))
	if len(down) == 0 {
		t.Fatalf("%s's apiserver was never down while the command ran: nothing was injected", named.Name)
	}
	if r.Code != 0 {
		t.Fatalf("cluster renew all with %s's apiserver restarting under it: %s", named.Name, r)
	}
	for _, n := range renewed {
		if servedCert(t, n.APIServer()).SerialNumber.String() == before[n.Name] {
			t.Errorf("%s still serves the apiserver certificate it had before", n.Name)
		}
	}
	assertRenewDone(t, cs)
}

// TestFaultAPIServerNotBack is issue 21's fourth fault: `certctl cluster renew all` while the
// second control-plane node's renewal breaks: the lab's certctl (built with -tags failpoints)
// writes a key that matches no certificate over that node's new apiserver.key just before the
// apiserver is to load its renewed files (renew verifies the apiserver, it does not restart
// it). The apiserver would keep its old pair in memory and could not start on the broken one:
// certctl on the node finds the pair that does not load before it waits for a reload
// (restart.BrokenPairError), rolls the node back to its old files and restarts the apiserver
// on them; the command stops at that node, the node after it is untouched, and through the
// balancer the API never failed. The same command again (the fault
// fired once) resumes at that node and finishes, without renewing the first node twice.
func TestFaultAPIServerNotBack(t *testing.T) {
	nodes := requireLab(t)
	cps := threeControlPlanes(t, nodes)
	first, broken, last := cps[0], cps[1], cps[2]
	roots := caPool(t)
	cs := clientset(t)
	ctx := context.Background()
	before := freshRenew(t, cs, cps)
	fp := setFailpoint(t, broken, "before-start apiserver break-key /etc/kubernetes/pki/apiserver.key")

	lb := startPoller(t, multilab.LBAddr, roots, 50*time.Millisecond, 20*time.Minute)
	list := startPollerAs(t, multilab.LBAddr, listPath, roots, testenv.KubeconfigClientCert(t, multilab.AdminKubeconfig()), 50*time.Millisecond, 20*time.Minute)
	own := map[string]*poller{}
	for _, n := range cps {
		own[n.Name] = startPoller(t, n.APIServer(), roots, 50*time.Millisecond, 20*time.Minute)
	}
	args := []string{"cluster", "renew", "all", "--days", "3650", "--kubeconfig", multilab.AdminKubeconfig(), "--image", multilab.Image}
	start := time.Now()
	r, err := multilab.Run(exec.Command(testenv.Certctl(t), args...))
	if err != nil {
		t.Fatal(err)
	}
	stopped := time.Since(start)
	t.Logf("the run with %s's renewal broken, %s: %s", broken.Name, stopped.Round(100*time.Millisecond), r)
	if r.Code == 0 {
		t.Fatalf("cluster renew all succeeded with %s's apiserver key broken", broken.Name)
	}
	if left, err := os.ReadFile(fp); err != nil || len(bytes.TrimSpace(left)) != 0 {
		t.Fatalf("the failpoint on %s did not fire: %q %v", broken.Name, left, err)
	}
	afterFirst := servedCert(t, first.APIServer()).SerialNumber.String()
	if afterFirst == before[first.Name] {
		t.Errorf("%s, before the broken node, was not renewed", first.Name)
	}
	for _, n := range []multilab.Node{broken, last} {
		if got := servedCert(t, n.APIServer()).SerialNumber.String(); got != before[n.Name] {
			t.Errorf("%s serves serial %s after the stopped run, want its old %s (rolled back / untouched)", n.Name, got, before[n.Name])
		}
	}
	cm, err := cs.CoreV1().ConfigMaps(lease.Namespace).Get(ctx, cluster.ProgressName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("no progress record after the stopped run: %v", err)
	}
	var done []string
	for k := range cm.Data {
		if n, ok := strings.CutPrefix(k, "done."); ok {
			done = append(done, n)
		}
	}
	if !slices.Equal(done, []string{first.Name}) {
		t.Errorf("nodes done after the stopped run: %v, want [%s]", done, first.Name)
	}
	// The broken node is back on its old pair: certificate and key match, nothing critical.
	checkPairs(t, broken)

	// The broken node's kubelet reports through its own apiserver, down while it crash-looped:
	// the next run makes no Job on a node that is not Ready (30 s), so wait as an operator would.
	t.Logf("%s Ready again %s after the run", broken.Name, waitNodeBack(t, cs, broken.Name, 3*time.Minute).Round(100*time.Millisecond))

	// Again: the fault fired once, so the node renews now; the first node is not done again.
	r2, err := multilab.Run(exec.Command(testenv.Certctl(t), args...))
	if err != nil {
		t.Fatal(err)
	}
	ok, fail, errs := lb.Stop()
	listOK, listFail, listErrs := list.Stop()
	all := stopAll(own)
	t.Logf("the run after: %s", r2)
	if r2.Code != 0 {
		t.Fatalf("cluster renew all after the fault: %s", r2)
	}
	if got := servedCert(t, first.APIServer()).SerialNumber.String(); got != afterFirst {
		t.Errorf("%s was renewed again by the resumed run (serial %s, was %s)", first.Name, got, afterFirst)
	}
	for _, n := range []multilab.Node{broken, last} {
		if servedCert(t, n.APIServer()).SerialNumber.String() == before[n.Name] {
			t.Errorf("%s still serves its old certificate after the resumed run", n.Name)
		}
	}
	for _, n := range cps {
		checkPairs(t, n)
	}
	t.Logf("through the balancer, both runs: /readyz %d ok, %d failed %v; a list %d ok, %d failed %v; down windows %s", ok, fail, errs, listOK, listFail, listErrs, windowsText(lb.Windows()))
	t.Logf("%s's own /readyz: %s", broken.Name, windowsText(own[broken.Name].Windows()))
	if fail != 0 || listFail != 0 {
		t.Errorf("requests through the balancer failed: /readyz %d %v, list %d %v", fail, errs, listFail, listErrs)
	}
	noOverlap(t, all)
	assertRenewDone(t, cs)
}

// TestFaultAPIServerNotBackCARotate is issue 21's fourth fault in a phase of `cluster
// ca-rotate`: phase trust of front-proxy-ca, with the bundle it wrote on the second
// control-plane node broken (failpoint break-file, right before that node's apiserver starts on
// it). That apiserver exits at every start; certctl on the node sees it, rolls the phase back on
// the node (every file as before it: its apiserver's manifest byte for byte, no rotation state)
// and brings the apiserver back on the old files; the command stops at that node, the node
// after it untouched, the one before it at trust; through the balancer the API never failed
// during that run. Then the operator's rollback of the rotation leaves the cluster as before
// it: no rotation on any node, no Job.
func TestFaultAPIServerNotBackCARotate(t *testing.T) {
	nodes := requireLab(t)
	cps := threeControlPlanes(t, nodes)
	first, broken, last := cps[0], cps[1], cps[2]
	const bundle = "/etc/kubernetes/pki/rotation/front-proxy-ca/bundle.crt"
	state := func(n multilab.Node) string { return rotation(n, "state.json") }
	manifest := func(n multilab.Node) []byte {
		data, err := os.ReadFile(filepath.Join(n.Dir(), "etc-kubernetes", "manifests", "kube-apiserver.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	noFrontProxyRotation(t, cps)
	brokenBefore, lastBefore := manifest(broken), manifest(last)
	fp := setFailpoint(t, broken, "before-start apiserver break-file "+bundle)
	roots := caPool(t)
	cs := clientset(t)
	local := adminCopy(t)
	lb := startPoller(t, multilab.LBAddr, roots, 50*time.Millisecond, 20*time.Minute)
	list := startPollerAs(t, multilab.LBAddr, listPath, roots, testenv.KubeconfigClientCert(t, multilab.AdminKubeconfig()), 50*time.Millisecond, 20*time.Minute)
	own := startPoller(t, broken.APIServer(), roots, 50*time.Millisecond, 20*time.Minute)

	start := time.Now()
	r := certctlWith(t, local, "cluster", "ca-rotate", "front-proxy-ca", "--phase", "trust")
	t.Logf("trust with %s's bundle broken: %s", broken.Name, time.Since(start).Round(100*time.Millisecond))
	if r.Code == 0 {
		t.Fatalf("cluster ca-rotate trust succeeded with %s's bundle broken", broken.Name)
	}
	if !strings.Contains(r.Stdout+r.Stderr, broken.Name) {
		t.Errorf("the failed run does not name %s", broken.Name)
	}
	if left, err := os.ReadFile(fp); err != nil || len(bytes.TrimSpace(left)) != 0 {
		t.Fatalf("the failpoint on %s did not fire: %q %v", broken.Name, left, err)
	}
	if _, err := os.Stat(state(first)); err != nil {
		t.Errorf("%s, before the broken node, is not at trust: %v", first.Name, err)
	}
	for _, n := range []multilab.Node{broken, last} {
		if _, err := os.Stat(state(n)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s has a rotation state after the stopped run (rolled back / untouched): %v", n.Name, err)
		}
	}
	if _, err := os.Stat(rotation(broken, "bundle.crt")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the broken bundle is still on %s: %v", broken.Name, err)
	}
	if !bytes.Equal(manifest(broken), brokenBefore) {
		t.Errorf("%s's apiserver manifest is not the one from before the phase", broken.Name)
	}
	if !bytes.Equal(manifest(last), lastBefore) {
		t.Errorf("%s, after the broken node, had its apiserver manifest changed", last.Name)
	}
	// Through the balancer over the faulted run, and then over the operator's rollback (which
	// puts the old manifests back through the drained restart, not in place).
	ok, fail, errs := lb.Stop()
	listOK, listFail, listErrs := list.Stop()
	t.Logf("through the balancer, the faulted run: /readyz %d ok, %d failed %v; a list %d ok, %d failed %v; down windows %s", ok, fail, errs, listOK, listFail, listErrs, windowsText(lb.Windows()))
	if fail != 0 || listFail != 0 {
		t.Errorf("requests through the balancer failed: /readyz %d %v, list %d %v", fail, errs, listFail, listErrs)
	}
	ownOK, _, _ := own.Stop()
	t.Logf("%s's own /readyz: %d ok, down %s", broken.Name, ownOK, windowsText(own.Windows()))
	// Its kubelet reports through its own apiserver, down while it crash-looped.
	t.Logf("%s Ready again %s after the run", broken.Name, waitNodeBack(t, cs, broken.Name, 3*time.Minute).Round(100*time.Millisecond))

	// The operator's rollback of the rotation: the first node back, the others have nothing.
	lb = startPoller(t, multilab.LBAddr, roots, 50*time.Millisecond, 20*time.Minute)
	list = startPollerAs(t, multilab.LBAddr, listPath, roots, testenv.KubeconfigClientCert(t, multilab.AdminKubeconfig()), 50*time.Millisecond, 20*time.Minute)
	start = time.Now()
	frontProxyRollback(t, cs, cps, local)
	t.Logf("the rollback and its checks: %s", time.Since(start).Round(100*time.Millisecond))
	ok, fail, errs = lb.Stop()
	listOK, listFail, listErrs = list.Stop()
	t.Logf("through the balancer, the rollback: /readyz %d ok, %d failed %v; a list %d ok, %d failed %v; down windows %s", ok, fail, errs, listOK, listFail, listErrs, windowsText(lb.Windows()))
	if fail != 0 || listFail != 0 {
		t.Errorf("requests through the balancer failed during the rollback: /readyz %d %v, list %d %v", fail, errs, listFail, listErrs)
	}
}

// rotation is a file of the rotation of front-proxy-ca on n (state.json, bundle.crt).
func rotation(n multilab.Node, file string) string {
	return filepath.Join(n.Dir(), "etc-kubernetes", "pki", "rotation", "front-proxy-ca", file)
}

// noFrontProxyRotation fails the test at once when a node has a rotation of front-proxy-ca.
func noFrontProxyRotation(t *testing.T, cps []multilab.Node) {
	t.Helper()
	for _, n := range cps {
		if _, err := os.Stat(rotation(n, "state.json")); err == nil {
			t.Fatalf("%s has a rotation of front-proxy-ca before the test", n.Name)
		}
	}
}

// oneFrontProxyBundle checks every node is at trust of front-proxy-ca with want, the bundle the
// first node had from the run the fault stopped: the run that resumed kept the Secret's new CA,
// it did not make a second one.
func oneFrontProxyBundle(t *testing.T, cps []multilab.Node, want []byte) {
	t.Helper()
	for _, n := range cps {
		bundle, err := os.ReadFile(rotation(n, "bundle.crt"))
		if err != nil {
			t.Errorf("%s not at trust after the run that resumed: %v", n.Name, err)
			continue
		}
		if !bytes.Equal(bundle, want) {
			t.Errorf("%s trusts another bundle than %s's from the run before: a second new CA", n.Name, cps[0].Name)
		}
	}
}

// frontProxyRollback is the operator's rollback of phase trust of front-proxy-ca after a fault
// (kubeconfig: the operator's); it must leave no rotation on any node, no Job, no Secret, and
// every certificate with its key.
func frontProxyRollback(t *testing.T, cs kubernetes.Interface, cps []multilab.Node, kubeconfig string) {
	t.Helper()
	if r := certctlWith(t, kubeconfig, "cluster", "ca-rotate", "front-proxy-ca", "--rollback", "--phase", "trust"); r.Code != 0 {
		t.Fatalf("cluster ca-rotate --rollback after the fault: %s", r)
	}
	for _, n := range cps {
		if _, err := os.Stat(rotation(n, "state.json")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s has a rotation of front-proxy-ca after the rollback: %v", n.Name, err)
		}
		checkPairs(t, n)
	}
	assertNoJobs(t)
	if _, err := cs.CoreV1().Secrets("kube-system").Get(context.Background(), cluster.CARotationSecret, metav1.GetOptions{}); err == nil {
		t.Errorf("the rotation Secret %s is left after the rollback", cluster.CARotationSecret)
	}
}

// setFailpoint writes line as the node's failpoint file (removed at the test's end) and returns
// its path.
func setFailpoint(t *testing.T, n multilab.Node, line string) string {
	t.Helper()
	fp := filepath.Join(n.Dir(), "etc-kubernetes", ".certctl", "failpoints")
	if err := os.MkdirAll(filepath.Dir(fp), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(fp, []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Remove(fp) })
	return fp
}

// stopAll stops the pollers of each node's own apiserver and returns their down windows, each
// with its node's name.
func stopAll(own map[string]*poller) []window {
	var all []window
	for name, p := range own {
		p.Stop()
		for _, w := range p.Windows() {
			w.Node = name
			all = append(all, w)
		}
	}
	return all
}

// freshRenew starts a `cluster renew` test: a progress record an earlier test left (it would
// resume that run) is removed, and it returns the serial each control-plane apiserver serves.
func freshRenew(t *testing.T, cs kubernetes.Interface, cps []multilab.Node) map[string]string {
	t.Helper()
	if err := cs.CoreV1().ConfigMaps(lease.Namespace).Delete(context.Background(), cluster.ProgressName, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	before := map[string]string{}
	for _, n := range cps {
		before[n.Name] = servedCert(t, n.APIServer()).SerialNumber.String()
	}
	return before
}

// checkPairs fails the test when inspect on n finds a certificate without its key or anything
// critical (what a fresh lab node shows of its kubelet's self-signed serving certificate aside).
func checkPairs(t *testing.T, n multilab.Node) {
	t.Helper()
	rep, ir := inspectJSON(t, n)
	if ir.Code == 3 {
		t.Fatalf("inspect on %s: %s", n.Name, ir)
	}
	for _, c := range rep.Certificates {
		for _, f := range c.Findings {
			if f.Severity != inspect.SevInfo && !(strings.HasPrefix(c.Name, "kubelet") && slices.Contains(kubeletCodes, f.Code)) {
				t.Errorf("%s: %s: %s finding %s: %s", n.Name, c.Name, f.Severity, f.Code, f.Message)
			}
		}
	}
}

// assertRenewDone fails the test when a `cluster renew` that finished left a Job or its progress
// record behind.
func assertRenewDone(t *testing.T, cs kubernetes.Interface) {
	t.Helper()
	assertNoJobs(t)
	if _, err := cs.CoreV1().ConfigMaps(lease.Namespace).Get(context.Background(), cluster.ProgressName, metav1.GetOptions{}); err == nil {
		t.Errorf("the progress record %s is left after the run that finished", cluster.ProgressName)
	}
}

// jobSelector selects the node Jobs of component (renew, endpoint, carotate, ...) on node.
func jobSelector(component, node string) string {
	return cluster.LabelComponent + "=" + component + "," + cluster.LabelNode + "=" + node
}

// waitJobMade waits (3 minutes at most) for a Job labelled sel that the running command cmd
// makes; the test fails at once, with the command's output, when the command ends first, and
// the command is killed and the test fails when no Job comes in time.
func waitJobMade(t *testing.T, cs kubernetes.Interface, sel string, cmd *exec.Cmd, out *bytes.Buffer, exited <-chan error) {
	t.Helper()
	var ended error
	gone := false
	if err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		jobs, err := cs.BatchV1().Jobs("kube-system").List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err == nil && len(jobs.Items) > 0 {
			return true, nil
		}
		select {
		case ended = <-exited:
			gone = true
			return false, errors.New("the command ended")
		default:
			return false, nil
		}
	}); err != nil {
		if gone {
			t.Fatalf("the command ended (%v) before it made a Job %s:\n%s", ended, sel, out.String())
		}
		_ = cmd.Process.Kill()
		<-exited
		t.Fatalf("no Job %s: %v\n%s", sel, err, out.String())
	}
}
