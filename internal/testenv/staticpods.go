package testenv

import (
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/certctl/certctl/pkg/manifest"
	"k8s.io/client-go/tools/clientcmd"
)

// StaticPodPorts are the loopback ports of the static pods WriteStaticPods lays out.
type StaticPodPorts struct {
	APIServer, EtcdClient, EtcdPeer, EtcdMetrics, ControllerManager, Scheduler int
}

// WriteStaticPods writes kubeadm-like manifests for etcd, kube-apiserver,
// kube-controller-manager and kube-scheduler into the tree's manifests dir: node paths
// (/etc/kubernetes/pki/...), loopback ports, and the probes kubeadm writes.
func WriteStaticPods(t testing.TB, tr *Tree) StaticPodPorts {
	t.Helper()
	for _, b := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"} {
		Binary(t, b) // skip loudly (or fail in CI) before anything starts
	}
	p := StaticPodPorts{
		APIServer: FreePort(t, "127.0.0.1"), EtcdClient: FreePort(t, "127.0.0.1"), EtcdPeer: FreePort(t, "127.0.0.1"),
		EtcdMetrics: FreePort(t, "127.0.0.1"), ControllerManager: FreePort(t, "127.0.0.1"), Scheduler: FreePort(t, "127.0.0.1"),
	}
	pk := func(f string) string { return "/etc/kubernetes/pki/" + f }
	etcdURL := fmt.Sprintf("https://127.0.0.1:%d", p.EtcdClient)
	peerURL := fmt.Sprintf("https://127.0.0.1:%d", p.EtcdPeer)
	pods := map[string]struct {
		cmd   []string
		probe string
	}{
		"etcd.yaml": {append([]string{"etcd"}, etcdArgs(pk, "/var/lib/etcd", etcdURL, peerURL, fmt.Sprintf("http://127.0.0.1:%d", p.EtcdMetrics))...),
			fmt.Sprintf("host: 127.0.0.1\n        path: /health\n        port: %d\n        scheme: HTTP", p.EtcdMetrics)},
		"kube-apiserver.yaml": {append([]string{"kube-apiserver"}, apiserverArgs(pk, p.APIServer, etcdURL, "/var/lib/kube-apiserver-certs")...),
			fmt.Sprintf("host: 127.0.0.1\n        path: /livez\n        port: %d\n        scheme: HTTPS", p.APIServer)},
		"kube-controller-manager.yaml": {append([]string{"kube-controller-manager"}, kcmArgs(pk, "/etc/kubernetes/controller-manager.conf", p.ControllerManager, "/var/lib/kcm-certs", nil)...),
			fmt.Sprintf("host: 127.0.0.1\n        path: /healthz\n        port: %d\n        scheme: HTTPS", p.ControllerManager)},
		"kube-scheduler.yaml": {[]string{"kube-scheduler", "--kubeconfig=/etc/kubernetes/scheduler.conf", "--authentication-kubeconfig=/etc/kubernetes/scheduler.conf",
			"--authorization-kubeconfig=/etc/kubernetes/scheduler.conf", "--leader-elect=false", "--bind-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", p.Scheduler), "--cert-dir=/var/lib/scheduler-certs"},
			fmt.Sprintf("host: 127.0.0.1\n        path: /healthz\n        port: %d\n        scheme: HTTPS", p.Scheduler)},
	}
	if err := os.MkdirAll(tr.Layout.ManifestsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	// The node's kubeconfigs name the control-plane endpoint: point it at this apiserver.
	for _, conf := range []string{"admin.conf", "super-admin.conf", "controller-manager.conf", "scheduler.conf"} {
		path := filepath.Join(tr.Layout.KubeconfigDir, conf)
		cfg, err := clientcmd.LoadFromFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cfg.Clusters {
			c.Server = fmt.Sprintf("https://127.0.0.1:%d", p.APIServer)
		}
		if err := clientcmd.WriteToFile(*cfg, path); err != nil {
			t.Fatal(err)
		}
	}
	for file, pod := range pods {
		var b strings.Builder
		name := strings.TrimSuffix(file, ".yaml")
		fmt.Fprintf(&b, "apiVersion: v1\nkind: Pod\nmetadata:\n  name: %s\n  namespace: kube-system\nspec:\n  containers:\n  - name: %s\n    command:\n", name, name)
		for _, a := range pod.cmd {
			fmt.Fprintf(&b, "    - %s\n", a)
		}
		fmt.Fprintf(&b, "    livenessProbe:\n      httpGet:\n        %s\n  hostNetwork: true\n", pod.probe)
		if err := os.WriteFile(filepath.Join(tr.Layout.ManifestsDir, file), []byte(b.String()), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// Kubelet is a stand-in for the kubelet's static-pod handling: it watches the manifests dir
// and runs each manifest's command as a process (the real binary from the cache), with node
// paths mapped under the tree's root as a container's hostPath mounts would. A manifest that
// leaves the dir gets its process SIGTERMed (SIGKILLed after the grace period); a changed
// manifest is restarted; a process that exits is restarted after a back-off, like a
// crash-looping container.
type Kubelet struct {
	t     testing.TB
	root  string
	dir   string
	grace time.Duration
	stop  chan struct{}
	done  chan struct{}
	mu    sync.Mutex
	pods  map[string]*pod
	logs  string
}

type pod struct {
	hash   [32]byte // of the manifest the running process came from
	proc   *process // running
	old    *process // SIGTERMed, still shutting down (it may hold its ports)
	exited time.Time
	starts int
}

// StartKubelet starts the stand-in on tr's manifests dir.
func StartKubelet(t testing.TB, tr *Tree) *Kubelet {
	t.Helper()
	k := &Kubelet{t: t, root: tr.Root, dir: tr.Layout.ManifestsDir, grace: 10 * time.Second,
		stop: make(chan struct{}), done: make(chan struct{}), pods: map[string]*pod{}, logs: t.TempDir()}
	// A process named kubelet whose staticPodPath is the manifests dir: what certctl's restart
	// looks for before it touches anything (restart.FindNode). Its CRI socket is one that does
	// not exist, under the tree: no container runtime, so certctl stops processes.
	StartFakeKubelet(t, tr.Layout.ManifestsDir, "containerRuntimeEndpoint: unix://"+filepath.Join(tr.Root, "run", "containerd", "containerd.sock"))
	go k.loop()
	t.Cleanup(func() {
		close(k.stop)
		<-k.done
		k.mu.Lock()
		defer k.mu.Unlock()
		for _, p := range k.pods {
			for _, proc := range []*process{p.proc, p.old} {
				if proc != nil {
					proc.stop()
				}
			}
		}
	})
	return k
}

// Starts returns how often the static pod of file has been started.
func (k *Kubelet) Starts(file string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	if p := k.pods[file]; p != nil {
		return p.starts
	}
	return 0
}

// Log returns the tail of a static pod's log.
func (k *Kubelet) Log(file string) string {
	b, _ := os.ReadFile(filepath.Join(k.logs, strings.TrimSuffix(file, ".yaml")+".log"))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

func (k *Kubelet) loop() {
	defer close(k.done)
	for {
		select {
		case <-k.stop:
			return
		case <-time.After(50 * time.Millisecond):
		}
		k.sync()
	}
}

func (k *Kubelet) sync() {
	entries, _ := os.ReadDir(k.dir)
	present := map[string][32]byte{}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".yaml") {
			continue
		}
		if data, err := os.ReadFile(filepath.Join(k.dir, e.Name())); err == nil {
			present[e.Name()] = sha256.Sum256(data)
		}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	for file, p := range k.pods {
		if h, ok := present[file]; p.proc != nil && (!ok || h != p.hash) {
			// Removed or changed: stop it as the kubelet does, SIGTERM then SIGKILL.
			p.old, p.proc, p.hash, p.exited = p.proc, nil, [32]byte{}, time.Now()
			go terminate(p.old, k.grace)
		}
	}
	for file, h := range present {
		p := k.pods[file]
		if p == nil {
			p = &pod{}
			k.pods[file] = p
		}
		if p.old != nil {
			if !p.old.exited() {
				continue
			}
			p.old = nil
		}
		if p.proc != nil && p.proc.exited() { // crashed: restart after a back-off
			p.proc, p.exited = nil, time.Now()
		}
		if p.proc == nil && (p.hash != h || time.Since(p.exited) >= backoff(p.starts)) {
			proc, err := k.run(file)
			if err != nil {
				continue
			}
			p.proc, p.hash = proc, h
			p.starts++
		}
	}
}

func backoff(starts int) time.Duration {
	if starts == 0 {
		return 0
	}
	return time.Second
}

func terminate(p *process, grace time.Duration) {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.stop()
	}
}

// run starts the manifest's command with node paths under the root.
func (k *Kubelet) run(file string) (*process, error) {
	pod, err := manifest.Load(filepath.Join(k.dir, file))
	if err != nil {
		return nil, err
	}
	c := pod.Spec.Containers[0]
	args := append(append([]string{}, c.Command...), c.Args...)
	bin := filepath.Join(BinDir(), args[0])
	for i, a := range args[1:] {
		if name, val, ok := strings.Cut(a, "="); ok && strings.HasPrefix(val, "/") {
			args[i+1] = name + "=" + filepath.Join(k.root, val)
		}
	}
	logPath := filepath.Join(k.logs, strings.TrimSuffix(file, ".yaml")+".log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, args[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(logf, "start %s: %v\n", bin, err)
		return nil, err
	}
	p := &process{name: file, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	return p, nil
}

// Running reports whether a process of the static pod file (current or terminating) is alive.
func (k *Kubelet) Running(file string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	p := k.pods[file]
	if p == nil {
		return false
	}
	for _, proc := range []*process{p.proc, p.old} {
		if proc != nil && !proc.exited() {
			return true
		}
	}
	return false
}
