package restart_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/backup"
	"github.com/certctl/certctl/pkg/fsutil"
	"github.com/certctl/certctl/pkg/live"
	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/renew"
	"github.com/certctl/certctl/pkg/restart"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// node is a kubeadm-made tree whose four static pods run under the stand-in kubelet.
type node struct {
	tr    *testenv.Tree
	ports testenv.StaticPodPorts
	k     *testenv.Kubelet
	node  *restart.Node // the stand-in's kubelet process, as restart finds it
}

func startNode(t testing.TB) *node {
	t.Helper()
	if testing.Short() {
		t.Skip("runs a control plane")
	}
	tr := testenv.KubeadmTree(t, testenv.TreeOptions{})
	n := &node{tr: tr, ports: testenv.WriteStaticPods(t, tr)}
	n.k = testenv.StartKubelet(t, tr)
	var err error
	if n.node, err = restart.FindNode("", tr.Layout.ManifestsDir); err != nil {
		t.Fatal(err)
	}
	n.waitReady(t, 2*time.Minute)
	return n
}

func (n *node) apiAddr() string { return fmt.Sprintf("127.0.0.1:%d", n.ports.APIServer) }

// waitReady polls until the four components answer their probes.
func (n *node) waitReady(t testing.TB, timeout time.Duration) {
	t.Helper()
	urls := map[string]string{
		"etcd.yaml":                    fmt.Sprintf("http://127.0.0.1:%d/health", n.ports.EtcdMetrics),
		"kube-apiserver.yaml":          fmt.Sprintf("https://127.0.0.1:%d/readyz", n.ports.APIServer),
		"kube-controller-manager.yaml": fmt.Sprintf("https://127.0.0.1:%d/healthz", n.ports.ControllerManager),
		"kube-scheduler.yaml":          fmt.Sprintf("https://127.0.0.1:%d/healthz", n.ports.Scheduler),
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for file, u := range urls {
		if err := testenv.WaitOK(ctx, u); err != nil {
			t.Fatalf("%s not ready: %v\n%s", file, err, n.k.Log(file))
		}
	}
}

// runWithRollback restarts comps with a rollback to backup id, logging the progress it
// returns. Each wait gets 45 s: the apiserver's cold start took over 20 s on this 2-core
// machine while other test packages ran beside it.
func (n *node) runWithRollback(t *testing.T, id string, comps ...string) ([]restart.Result, string, error) {
	t.Helper()
	var steps []restart.Step
	for _, c := range comps {
		steps = append(steps, restart.Step{Component: c, Action: restart.ActionRestart})
	}
	l := n.tr.Layout
	var progress bytes.Buffer
	results, err := restart.Run(context.Background(), restart.Options{Layout: l, Node: n.node, Timeout: 45 * time.Second,
		Steps: steps, Stopper: restart.ProcessStopper{Layout: l, Node: n.node}, Progress: restart.NewProgress(&progress, false),
		Rollback: func(string) error { _, err := backup.Restore(fsutil.OS{}, l, id); return err }})
	t.Logf("progress:\n%s", progress.String())
	return results, progress.String(), err
}

func (n *node) clientset(t *testing.T) *kubernetes.Clientset {
	t.Helper()
	rc, err := clientcmd.BuildConfigFromFlags("", filepath.Join(n.tr.Layout.KubeconfigDir, "super-admin.conf"))
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// TestRenewThenRestart: renew everything, then roll it out with the plan. etcd and the
// apiserver serve the renewed files without a restart (the apiserver loads its client pairs
// again for new connections: TestAPIServerClientCertsReload); the controller-manager and the
// scheduler, which read their kubeconfigs once, are restarted; the API answers afterwards.
func TestRenewThenRestart(t *testing.T) {
	n := startNode(t)
	l := n.tr.Layout
	oldServed := testenv.ServedCert(t, n.apiAddr())
	plan, err := renew.NewPlan(l, renew.Options{Names: renew.All, Days: 3650, SANs: []string{"10.2.1.139"}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := renew.Apply(plan, renew.ApplyOptions{Writer: fsutil.OS{}, Command: "test"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range res.Changed {
		names = append(names, c.Name)
	}
	steps, kubelet := restart.Plan(names)
	if len(kubelet) != 0 {
		t.Fatalf("kubelet items %v", kubelet)
	}
	var progress bytes.Buffer
	results, err := restart.Run(context.Background(), restart.Options{Layout: l, Steps: steps, Timeout: 2 * time.Minute,
		Progress: restart.NewProgress(&progress, false), Stopper: restart.ProcessStopper{Layout: l, Node: n.node},
		Rollback: func(string) error { _, err := backup.Restore(fsutil.OS{}, l, res.BackupID); return err }})
	t.Logf("progress:\n%s", progress.String())
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	got := map[string]restart.Result{}
	for _, r := range results {
		got[r.Component] = r
		t.Logf("%s: %s restarted=%v downtime=%s", r.Component, r.Action, r.Restarted, r.Downtime)
	}
	for _, comp := range []string{"etcd", "apiserver"} {
		if r := got[comp]; r.Restarted || r.Served == "" {
			t.Errorf("%s should reload its certificates without a restart: %+v", comp, r)
		}
	}
	for _, comp := range []string{"controller-manager", "scheduler"} {
		if r := got[comp]; !r.Restarted || r.Downtime <= 0 || r.RolledBack {
			t.Errorf("%s: %+v, want a restart with a measured downtime", comp, r)
		}
	}
	served := testenv.ServedCert(t, n.apiAddr())
	if served.Equal(oldServed) || served.VerifyHostname("10.2.1.139") != nil {
		t.Errorf("the apiserver does not serve the renewed certificate")
	}
	if n.k.Starts("kube-apiserver.yaml") != 1 || n.k.Starts("etcd.yaml") != 1 {
		t.Errorf("starts: apiserver %d (want 1), etcd %d (want 1)", n.k.Starts("kube-apiserver.yaml"), n.k.Starts("etcd.yaml"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := n.clientset(t).CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); err != nil {
		t.Fatalf("the API does not answer with the renewed super-admin.conf: %v", err)
	}
	if !strings.Contains(progress.String(), "manifest moved out") {
		t.Errorf("no progress lines")
	}
}

// TestRollbackBrokenCertificate: apiserver.crt is replaced by a certificate whose key is not
// apiserver.key; the apiserver cannot start with it, so the backup is restored and the
// apiserver restarted on the old pair.
func TestRollbackBrokenCertificate(t *testing.T) {
	n := startNode(t)
	l := n.tr.Layout
	crt := filepath.Join(l.PKIDir, "apiserver.crt")
	before := testenv.ServedCert(t, n.apiAddr())
	m, err := backup.Create(fsutil.OS{}, l, "test", []string{crt, filepath.Join(l.PKIDir, "apiserver.key")}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	// A valid certificate from the right CA, for another key.
	inv := pki.Load(l, pki.Default())
	ca := inv.Get("ca")
	otherKey, _ := pki.GenerateKey(pki.AlgRSA2048)
	tmpl := pki.TemplateFrom(inv.Get("apiserver").Cert())
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Minute), time.Now().Add(24*time.Hour)
	broken, err := pki.Sign(ca.Cert(), ca.Key, otherKey, tmpl)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(crt, pki.EncodeCertificates(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err = n.runWithRollback(t, m.ID, pki.CompAPIServer)
	var rb *restart.RolledBackError
	if !errors.As(err, &rb) || rb.Component != pki.CompAPIServer || strings.Join(rb.Restarted, ",") != pki.CompAPIServer {
		t.Fatalf("err %v, want a rollback of the apiserver alone", err)
	}
	if _, err := os.Stat(filepath.Join(l.ManifestsDir, "kube-apiserver.yaml")); err != nil {
		t.Fatalf("the manifest is not back: %v", err)
	}
	if !testenv.ServedCert(t, n.apiAddr()).Equal(before) {
		t.Errorf("after the rollback the apiserver does not serve the old certificate")
	}
}

// TestVerifyRollsBackABrokenPair: the renewal's apiserver-kubelet-client.key is replaced by a
// key that is not its certificate's. The apiserver would never load that pair (it keeps the old
// one in memory) and would not start on it: the verify step says which pair, restores the
// backup and restarts the apiserver on the old files, once, instead of waiting for a reload
// that cannot come.
func TestVerifyRollsBackABrokenPair(t *testing.T) {
	n := startNode(t)
	l := n.tr.Layout
	crt, key := filepath.Join(l.PKIDir, "apiserver-kubelet-client.crt"), filepath.Join(l.PKIDir, "apiserver-kubelet-client.key")
	m, err := backup.Create(fsutil.OS{}, l, "test", []string{crt, key}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	otherKey, _ := pki.GenerateKey(pki.AlgRSA2048)
	keyPEM, _ := pki.EncodePrivateKey(otherKey)
	if err := os.WriteFile(key, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	steps, _ := restart.Plan([]string{"apiserver-kubelet-client"})
	var progress bytes.Buffer
	results, err := restart.Run(context.Background(), restart.Options{Layout: l, Node: n.node, Timeout: 45 * time.Second,
		Steps: steps, Stopper: restart.ProcessStopper{Layout: l, Node: n.node}, Progress: restart.NewProgress(&progress, false),
		Rollback: func(string) error { _, err := backup.Restore(fsutil.OS{}, l, m.ID); return err }})
	t.Logf("progress:\n%s", progress.String())
	var rb *restart.RolledBackError
	var broken *restart.BrokenPairError
	if !errors.As(err, &rb) || !errors.As(err, &broken) || broken.Key != key || strings.Join(rb.Restarted, ",") != pki.CompAPIServer {
		t.Fatalf("err %v, want a rollback of the apiserver for the broken pair %s", err, key)
	}
	if len(results) != 1 || results[0].Restarted || !results[0].RolledBack {
		t.Errorf("results %+v, want the apiserver rolled back without a restart on the broken pair", results)
	}
	if n.k.Starts("kube-apiserver.yaml") != 2 {
		t.Errorf("apiserver starts %d, want 2 (the first, and the rollback's on the old files)", n.k.Starts("kube-apiserver.yaml"))
	}
	if _, err := tls.LoadX509KeyPair(crt, key); err != nil {
		t.Errorf("after the rollback: %v", err)
	}
}

// TestRollbackRestartsWhatItRestarted: the run restarts the apiserver (fine), then the
// scheduler, whose scheduler.conf now holds a client key that is not its certificate's, so it
// never becomes healthy. The rollback restores the whole backup (the apiserver's files too)
// and so restarts, on the restored files, both the scheduler and the apiserver restarted
// before it, and says so; etcd and the controller-manager, not restarted, stay untouched.
func TestRollbackRestartsWhatItRestarted(t *testing.T) {
	n := startNode(t)
	l := n.tr.Layout
	conf := filepath.Join(l.KubeconfigDir, "scheduler.conf")
	files := []string{filepath.Join(l.PKIDir, "apiserver.crt"), filepath.Join(l.PKIDir, "apiserver.key"), conf}
	m, err := backup.Create(fsutil.OS{}, l, "test", files, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	good, _ := os.ReadFile(conf)
	cfg, err := clientcmd.LoadFromFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	otherKey, _ := pki.GenerateKey(pki.AlgRSA2048)
	keyPEM, _ := pki.EncodePrivateKey(otherKey)
	for _, a := range cfg.AuthInfos {
		a.ClientKeyData = keyPEM
	}
	if err := clientcmd.WriteToFile(*cfg, conf); err != nil {
		t.Fatal(err)
	}
	results, progress, err := n.runWithRollback(t, m.ID, pki.CompAPIServer, pki.CompScheduler)
	var rb *restart.RolledBackError
	if !errors.As(err, &rb) || rb.Component != pki.CompScheduler || strings.Join(rb.Restarted, ",") != "apiserver,scheduler" {
		t.Fatalf("err %v, want a rollback that restarted the apiserver and the scheduler", err)
	}
	if len(results) != 2 || !results[1].RolledBack || strings.Join(results[1].RollbackRestarted, ",") != "apiserver,scheduler" {
		t.Fatalf("results %+v", results)
	}
	if !strings.Contains(progress, "restoring the backup and restarting apiserver, scheduler on the old files") {
		t.Errorf("the progress does not say what the rollback restarts")
	}
	if got, _ := os.ReadFile(conf); !bytes.Equal(got, good) {
		t.Errorf("scheduler.conf is not the backup's")
	}
	// apiserver: first start, the run's restart, the rollback's restart.
	if a := n.k.Starts("kube-apiserver.yaml"); a != 3 {
		t.Errorf("the apiserver started %d times, want 3", a)
	}
	// etcd and the controller-manager were never moved out (the controller-manager may have
	// crashed and been restarted by the kubelet while the apiserver was down: not certctl's).
	for _, comp := range []string{pki.CompEtcd, pki.CompControllerManager} {
		if strings.Contains(progress, " "+comp+" ") {
			t.Errorf("the run touched %s:\n%s", comp, progress)
		}
	}
	n.waitReady(t, time.Minute)
}

// TestKilledWhileStaged: certctl is frozen (SIGSTOP) while the apiserver's manifest is out of
// the manifests dir, so the worst moment is always reached however fast it is. A certctl
// command run meanwhile (an inspect from a timer) leaves the manifest alone: its owner still
// runs. Then certctl is SIGKILLed; the next certctl command puts the manifest back and the
// kubelet starts the apiserver again.
func TestKilledWhileStaged(t *testing.T) {
	n := startNode(t)
	l := n.tr.Layout
	bin := testenv.Certctl(t)
	cmd := exec.Command(bin, "--root", n.tr.Root, "restart", "apiserver", "--timeout", "2m")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	manifest := filepath.Join(l.ManifestsDir, "kube-apiserver.yaml")
	err := wait.PollUntilContextTimeout(context.Background(), time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		_, err := os.Stat(manifest)
		return os.IsNotExist(err), nil
	})
	if err != nil {
		t.Fatalf("the manifest never moved out:\n%s", out.String())
	}
	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(manifest); err == nil {
		t.Fatalf("certctl put the manifest back within a millisecond:\n%s", out.String())
	}
	// Another certctl command while the restart (frozen) still owns the staged manifest.
	during, err := exec.Command(bin, "--root", n.tr.Root, "backup", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("certctl during the restart: %v\n%s", err, during)
	}
	if _, err := os.Stat(manifest); err == nil || strings.Contains(string(during), "put ") {
		t.Fatalf("a certctl run during the restart put the manifest back:\n%s", during)
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	if _, err := os.Stat(manifest); !os.IsNotExist(err) {
		t.Fatal("the manifest came back before the next certctl run")
	}
	rec, err := exec.Command(bin, "--root", n.tr.Root, "backup", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("next certctl run: %v\n%s", err, rec)
	}
	if !strings.Contains(string(rec), "put "+manifest+" back") {
		t.Errorf("the next run did not say it put the manifest back:\n%s", rec)
	}
	if _, err := os.Stat(manifest); err != nil {
		t.Fatalf("manifest still missing: %v", err)
	}
	n.waitReady(t, 2*time.Minute)
	if chain, err := live.Served(context.Background(), n.apiAddr(), "", nil, 2*time.Second); err != nil || len(chain) == 0 {
		t.Fatalf("apiserver not serving after recovery: %v", err)
	}
}

// TestInterruptedRestartPutsTheManifestBack: the run's context ends (what SIGTERM does to a
// certctl command) while the apiserver's manifest is out. Run returns at once with an
// *InterruptedError, the manifest already back in place, the backup not restored (no rollback:
// its restarts would take the apiserver down again), and the kubelet runs the apiserver again.
func TestInterruptedRestartPutsTheManifestBack(t *testing.T) {
	n := startNode(t)
	l := n.tr.Layout
	manifest := filepath.Join(l.ManifestsDir, "kube-apiserver.yaml")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Cancel once the manifest is out: polled every millisecond, for at most a minute.
	go func() {
		_ = wait.PollUntilContextTimeout(ctx, time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
			_, err := os.Stat(manifest)
			return os.IsNotExist(err), nil
		})
		cancel()
	}()
	rolledBack := false
	var progress bytes.Buffer
	_, err := restart.Run(ctx, restart.Options{Layout: l, Node: n.node, Timeout: 45 * time.Second,
		Steps:   []restart.Step{{Component: pki.CompAPIServer, Action: restart.ActionRestart}, {Component: pki.CompScheduler, Action: restart.ActionRestart}},
		Stopper: restart.ProcessStopper{Layout: l, Node: n.node}, Progress: restart.NewProgress(&progress, false),
		Rollback: func(string) error { rolledBack = true; return nil }})
	t.Logf("progress:\n%s", progress.String())
	var ie *restart.InterruptedError
	if !errors.As(err, &ie) || ie.Component != pki.CompAPIServer || !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want an *InterruptedError of the apiserver wrapping context.Canceled", err)
	}
	if _, err := os.Stat(manifest); err != nil {
		t.Fatalf("the manifest is not back when Run returns: %v", err)
	}
	if rolledBack {
		t.Error("an interrupted restart rolled back")
	}
	if strings.Contains(progress.String(), pki.CompScheduler) {
		t.Error("the scheduler, after the interrupted apiserver, was touched")
	}
	n.waitReady(t, 2*time.Minute)
}
