// Command fleetbench measures, on the multi-node lab (hack/lab/multi.sh up), how the cost of
// the cluster commands grows with the workers (issue 22). For each worker count (default 1, 4,
// 8 and 9: 12 nodes with the three control-plane nodes) it adds workers (multi.sh add-node and
// join, through the endpoint the cluster uses) and times:
//
//   - `certctl cluster status` on every node;
//
//   - with -renew, `certctl cluster renew all` (the control-plane nodes' certificates, one
//     node at a time: the workers get no Job, so its time should not grow with them);
//
//   - with -ca-rotate, `certctl cluster ca-rotate --phase trust` and its `--rollback`, each
//     whole and its worker part;
//
//   - `certctl cluster endpoint` from the balancer to cp1's address and back (every kubelet's
//     kubeconfig changed and the kubelet restarted; the control-plane nodes one at a time, the
//     workers in waves of -max-parallel): the whole command and its worker part, from the first
//     worker's Job (seen by a watch) to the command's end.
//
// It prints each with its growth against the first worker count, and the memory (RSS of the
// kubelet and containerd) one worker costs. The workers it added are removed at the end unless
// -keep.
//
//	go run ./bench/fleetbench [-workers 1,4,8,9] [-max-parallel 25%] [-renew] [-ca-rotate] [-logs DIR]     (as root, lab up)
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/certctl/certctl/internal/multilab"
	"github.com/certctl/certctl/pkg/cluster"
	"github.com/certctl/certctl/pkg/kubeadmconfig"
)

// fleetPrefix names the workers the benchmark adds.
const fleetPrefix = "fleet"

type row struct {
	workers               int
	status                time.Duration
	renew                 time.Duration // -renew: cluster renew all
	toCP1, toLB           time.Duration
	workersCP1, workersLB time.Duration
	// -ca-rotate: the cluster CA's phase trust and its rollback
	trust, trustWorkers, back, backWorkers time.Duration
	// the machine's CPU over each worker part: on the lab every node shares its cores
	trustCPU, backCPU cpuUse
	restCPU           cpuUse // 5 s with no command running
}

func main() {
	counts := flag.String("workers", "1,4,8,9", "worker counts, ascending")
	maxParallel := flag.String("max-parallel", "", "cluster endpoint --max-parallel (default: certctl's, 25% of the workers, at least 4)")
	certctl := flag.String("certctl", "bin/certctl", "certctl binary (built from this checkout)")
	keep := flag.Bool("keep", false, "keep the workers added")
	doEndpoint := flag.Bool("endpoint", true, "time cluster endpoint there and back at each count")
	logs := flag.String("logs", "", "keep each timed command's output (its progress log: each node's Job timing) in this directory")
	doRenew := flag.Bool("renew", false, "also time cluster renew all at each count (the control-plane nodes one at a time; ~1-2 min per count)")
	caRotate := flag.Bool("ca-rotate", false, "also time cluster ca-rotate --phase trust and its --rollback at each count (the cluster CA; ~5 min per count)")
	flag.Parse()
	bin, err := multilab.BenchStart(*certctl)
	if err != nil {
		fail(err)
	}
	var sizes []int
	for _, s := range strings.Split(*counts, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || (len(sizes) > 0 && n <= sizes[len(sizes)-1]) {
			fail(fmt.Errorf("-workers %q: ascending counts, each at least 1", *counts))
		}
		sizes = append(sizes, n)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", multilab.AdminKubeconfig())
	if err != nil {
		fail(err)
	}
	cs := kubernetes.NewForConfigOrDie(cfg)
	ctx := context.Background()
	nodes, err := multilab.Nodes()
	if err != nil {
		fail(err)
	}
	// Workers an earlier run left (-keep, or killed) go first: the counts start from the lab's.
	for _, n := range nodes {
		if strings.HasPrefix(n.Name, fleetPrefix) {
			lab("remove-node", n.Name)
			_ = cs.CoreV1().Nodes().Delete(ctx, n.Name, metav1.DeleteOptions{})
		}
	}
	nodes = slices.DeleteFunc(nodes, func(n multilab.Node) bool { return strings.HasPrefix(n.Name, fleetPrefix) })
	var cp1 multilab.Node
	have := 0
	for _, n := range nodes {
		if n.ControlPlane() && cp1.Name == "" {
			cp1 = n
		}
		if !n.ControlPlane() {
			have++
		}
	}
	kc := "--kubeconfig=" + multilab.AdminKubeconfig()
	img := "--image=" + multilab.Image
	seq := 0 // the timed commands' order, in their log files' names
	if *logs != "" {
		if err := os.MkdirAll(*logs, 0o755); err != nil {
			fail(err)
		}
	}
	// run runs certctl; status exits 1 or 2 when it finds warnings or critical findings (the
	// lab's kubelets serve self-signed certificates), which is its report, not a failure.
	run := func(args ...string) time.Duration {
		start := time.Now()
		r, err := multilab.Run(exec.Command(bin, append(args, kc)...))
		if *logs != "" {
			name := fmt.Sprintf("%02d-%s.log", seq, strings.Join(args[:min(len(args), 4)], "-"))
			seq++
			if werr := os.WriteFile(filepath.Join(*logs, strings.ReplaceAll(name, "/", "_")), []byte(r.String()), 0o644); werr != nil {
				fail(werr)
			}
		}
		if err != nil || r.Code != 0 && (args[1] != "status" || r.Code > 2) {
			fail(fmt.Errorf("certctl %s: %v %s", strings.Join(args, " "), err, r))
		}
		return time.Since(start)
	}
	endpoint := func() string {
		doc, _, err := kubeadmconfig.Read(ctx, cs)
		if err != nil {
			fail(err)
		}
		ep, err := kubeadmconfig.ControlPlaneEndpoint(doc)
		if err != nil {
			fail(err)
		}
		return ep
	}
	// The balancer's SAN once, before anything is timed.
	if endpoint() != multilab.LBAddr {
		fmt.Printf("moving the cluster onto %s first (its SAN added; not timed)\n", multilab.LBAddr)
		run("cluster", "endpoint", multilab.LBAddr, img)
	}
	var added []string
	defer func() {
		if *keep {
			return
		}
		for _, n := range added {
			if r, err := multilab.Lab(context.Background(), "remove-node", n); err != nil || r.Code != 0 {
				fmt.Fprintf(os.Stderr, "remove-node %s: %v %s\n", n, err, r)
			}
			_ = cs.CoreV1().Nodes().Delete(context.Background(), n, metav1.DeleteOptions{})
		}
	}()
	var rows []row
	for _, size := range sizes {
		for have < size {
			name, ip := fmt.Sprintf("%s%d", fleetPrefix, have), fmt.Sprintf("10.2.1.%d", 160+have)
			lab("add-node", name, ip)
			added = append(added, name)
			lab("join", name, multilab.LBAddr, "--discovery-timeout", "2m")
			waitReady(ctx, cs, name)
			have++
		}
		if have > size {
			fail(fmt.Errorf("the lab has %d workers, more than %d", have, size))
		}
		r := row{workers: size}
		if *caRotate {
			// What the lab's nodes cost at rest, to read the worker parts' CPU figures against
			// (printed with -ca-rotate's table only).
			c0 := readCPU()
			time.Sleep(5 * time.Second) // a measurement window, not a wait for anything
			r.restCPU = readCPU().since(c0)
			fmt.Printf("%d workers: the lab at rest: CPU %s over 5 s\n", size, r.restCPU)
		}
		r.status = run("cluster", "status", img)
		mp := []string{}
		if *maxParallel != "" {
			mp = append(mp, "--max-parallel="+*maxParallel)
		}
		fmt.Printf("%d workers: status %s\n", size, round(r.status))
		if *doEndpoint {
			r.toCP1, r.workersCP1, _ = timedWorkers(ctx, cs, func() { run(append([]string{"cluster", "endpoint", cp1.APIServer(), img}, mp...)...) })
			r.toLB, r.workersLB, _ = timedWorkers(ctx, cs, func() { run(append([]string{"cluster", "endpoint", multilab.LBAddr, img}, mp...)...) })
			fmt.Printf("%d workers: endpoint to cp1 %s (workers %s), back %s (workers %s)\n", size,
				round(r.toCP1), round(r.workersCP1), round(r.toLB), round(r.workersLB))
		}
		if *doRenew {
			r.renew = run("cluster", "renew", "all", img)
			fmt.Printf("%d workers: renew all %s\n", size, round(r.renew))
		}
		if *caRotate {
			r.trust, r.trustWorkers, r.trustCPU = timedWorkers(ctx, cs, func() { run(append([]string{"cluster", "ca-rotate", "--phase", "trust", img}, mp...)...) })
			r.back, r.backWorkers, r.backCPU = timedWorkers(ctx, cs, func() { run(append([]string{"cluster", "ca-rotate", "--rollback", img}, mp...)...) })
			fmt.Printf("%d workers: ca-rotate trust %s (workers %s, CPU %s), its rollback %s (workers %s, CPU %s)\n", size,
				round(r.trust), round(r.trustWorkers), r.trustCPU, round(r.back), round(r.backWorkers), r.backCPU)
		}
		rows = append(rows, r)
	}
	first := rows[0]
	waves := *maxParallel
	if waves == "" {
		waves = "25% of the workers, at least 4 (the default)"
	}
	fmt.Printf("\n== workers in waves of %s (each move restarts every worker's kubelet)\n", waves)
	fmt.Printf("%-8s %-6s %-10s %-7s %-16s %-7s %-16s %-7s\n", "workers", "nodes", "status", "growth", "endpoint (x2)", "growth", "worker part (x2)", "growth")
	for _, r := range rows {
		ep, fep := r.toCP1+r.toLB, first.toCP1+first.toLB
		wp, fwp := r.workersCP1+r.workersLB, first.workersCP1+first.workersLB
		fmt.Printf("%-8d %-6d %-10s %-7s %-16s %-7s %-16s %-7s\n", r.workers, r.workers+3, round(r.status), ratio(r.status, first.status),
			round(ep), ratio(ep, fep), round(wp), ratio(wp, fwp))
	}
	if *doRenew {
		fmt.Printf("\n== cluster renew all (the control-plane nodes one at a time; no worker Job)\n")
		fmt.Printf("%-8s %-10s %-7s\n", "workers", "renew all", "growth")
		for _, r := range rows {
			fmt.Printf("%-8d %-10s %-7s\n", r.workers, round(r.renew), ratio(r.renew, first.renew))
		}
	}
	if *caRotate {
		fmt.Printf("\n== cluster ca-rotate (the cluster CA), workers in waves of %s\n", waves)
		fmt.Printf("%-8s %-10s %-12s %-7s %-20s %-10s %-12s %-7s %-20s\n", "workers", "trust", "worker part", "growth", "CPU then", "rollback", "worker part", "growth", "CPU then")
		for _, r := range rows {
			fmt.Printf("%-8d %-10s %-12s %-7s %-20s %-10s %-12s %-7s %-20s\n", r.workers, round(r.trust), round(r.trustWorkers), ratio(r.trustWorkers, first.trustWorkers), r.trustCPU,
				round(r.back), round(r.backWorkers), ratio(r.backWorkers, first.backWorkers), r.backCPU)
		}
		for _, r := range rows {
			fmt.Printf("at rest with %d workers: CPU %s over 5 s\n", r.workers, r.restCPU)
		}
		fmt.Printf("(CPU then: the share of this machine's %d CPUs busy during the worker part, and the CPU time spent; every lab node shares them)\n", runtime.NumCPU())
	}
	if rss := workerRSS(); rss > 0 {
		fmt.Printf("\none worker (kubelet + containerd, RSS): %d MiB\n", rss>>20)
	}
}

// timedWorkers runs move and returns how long it took and its worker part: from the first
// worker's Job (a watch of certctl's Jobs) to the first control-plane node's Job after it (a
// rollback goes workers first), or else to the end.
func timedWorkers(ctx context.Context, cs kubernetes.Interface, move func()) (total, workers time.Duration, cpu cpuUse) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cps := map[string]bool{}
	list, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: "node-role.kubernetes.io/control-plane"})
	if err != nil {
		fail(err)
	}
	for _, n := range list.Items {
		cps[n.Name] = true
	}
	var mu sync.Mutex
	var firstWorker, cpAfter time.Time
	var cpuFirst, cpuAfter cpuTimes // the machine's CPU counters at those two instants
	// An informer: the command restarts the apiserver the watch goes to (cp1's), after which a
	// watch from an old resourceVersion may be refused (410): the informer lists again. The
	// workers' Jobs come long after cp1's restart, so each is seen as it is made.
	lw := cache.NewFilteredListWatchFromClient(cs.BatchV1().RESTClient(), "jobs", "kube-system",
		func(o *metav1.ListOptions) { o.LabelSelector = cluster.LabelName + "=certctl" })
	_, informer := cache.NewInformerWithOptions(cache.InformerOptions{ListerWatcher: lw, ObjectType: &batchv1.Job{},
		Handler: cache.ResourceEventHandlerDetailedFuncs{AddFunc: func(obj any, initial bool) {
			j := obj.(*batchv1.Job)
			if initial {
				return // made before this move
			}
			mu.Lock()
			defer mu.Unlock()
			switch {
			case !cps[j.Labels[cluster.LabelNode]] && firstWorker.IsZero():
				firstWorker, cpuFirst = time.Now(), readCPU()
			case cps[j.Labels[cluster.LabelNode]] && !firstWorker.IsZero() && cpAfter.IsZero():
				cpAfter, cpuAfter = time.Now(), readCPU()
			}
		}}})
	go informer.RunWithContext(wctx)
	if !cache.WaitForCacheSync(wctx.Done(), informer.HasSynced) {
		fail(errors.New("the watch of certctl's Jobs never synced"))
	}
	start := time.Now()
	move()
	done, cpuDone := time.Now(), readCPU()
	mu.Lock()
	defer mu.Unlock()
	if firstWorker.IsZero() {
		fail(errors.New("no worker Job seen"))
	}
	end, cpuEnd := done, cpuDone
	if !cpAfter.IsZero() {
		end, cpuEnd = cpAfter, cpuAfter
	}
	return done.Sub(start), end.Sub(firstWorker), cpuEnd.since(cpuFirst)
}

// cpuTimes are the machine's CPU counters (/proc/stat's first line), in clock ticks.
type cpuTimes struct{ busy, total int64 }

// readCPU reads them; zero when /proc/stat cannot be read (then no CPU figure is printed).
func readCPU() cpuTimes {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return cpuTimes{}
	}
	var t cpuTimes
	// user nice system idle iowait irq softirq steal (guest time is counted in user already)
	for i, v := range f[1:min(len(f), 9)] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return cpuTimes{}
		}
		t.total += n
		if i != 3 && i != 4 { // idle, iowait
			t.busy += n
		}
	}
	return t
}

// cpuUse is what the machine's CPUs did over an interval: the busy share of all of them, and
// the CPU time spent (busy ticks at USER_HZ, 100 a second on Linux).
type cpuUse struct {
	busy    float64 // 0-1
	seconds float64
	ok      bool
}

func (t cpuTimes) since(before cpuTimes) cpuUse {
	if before.total == 0 || t.total <= before.total {
		return cpuUse{}
	}
	return cpuUse{busy: float64(t.busy-before.busy) / float64(t.total-before.total), seconds: float64(t.busy-before.busy) / 100, ok: true}
}

func (u cpuUse) String() string {
	if !u.ok {
		return "-"
	}
	return fmt.Sprintf("%.0f%% (%.1f CPU-s)", 100*u.busy, u.seconds)
}

func lab(args ...string) {
	r, err := multilab.Lab(context.Background(), args...)
	if err != nil || r.Code != 0 {
		fail(fmt.Errorf("multi.sh %s: %v %s", strings.Join(args, " "), err, r))
	}
}

func waitReady(ctx context.Context, cs kubernetes.Interface, name string) {
	if err := wait.PollUntilContextTimeout(ctx, time.Second, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		for _, c := range n.Status.Conditions {
			if c.Type == "Ready" {
				return c.Status == "True", nil
			}
		}
		return false, nil
	}); err != nil {
		fail(fmt.Errorf("%s not Ready within 3m", name))
	}
}

// workerRSS is the resident memory of the first worker's kubelet and containerd (their pid
// files in the lab's node directory), in bytes; 0 when unknown.
func workerRSS() int64 {
	nodes, err := multilab.Nodes()
	if err != nil {
		return 0
	}
	i := slices.IndexFunc(nodes, func(n multilab.Node) bool { return !n.ControlPlane() })
	if i < 0 {
		return 0
	}
	var sum int64
	for _, p := range []string{"kubelet.pid", "containerd.pid"} {
		pid, err := os.ReadFile(filepath.Join(nodes[i].Dir(), p))
		if err != nil {
			return 0
		}
		f, err := os.Open("/proc/" + strings.TrimSpace(string(pid)) + "/status")
		if err != nil {
			return 0
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				sum += kb << 10
			}
		}
		f.Close()
	}
	return sum
}

func round(d time.Duration) string { return d.Round(100 * time.Millisecond).String() }

func ratio(a, b time.Duration) string {
	if b <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", float64(a)/float64(b))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "fleetbench:", err)
	os.Exit(1)
}
