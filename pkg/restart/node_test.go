package restart_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/restart"
	"k8s.io/apimachinery/pkg/util/wait"
)

// tree is a node's directories under a temp root.
func tree(t *testing.T) pki.Layout {
	t.Helper()
	l := pki.NewLayout(pki.LayoutOptions{Root: t.TempDir(), Home: "/root"})
	if err := os.MkdirAll(l.ManifestsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	return l
}

// TestFindNodeEachTreeItsKubelet: two real processes named kubelet run with the configs of two
// trees (one PID namespace, as in the multi-node lab): each tree finds its own, with the CRI
// socket its config names; a third tree that no kubelet runs is refused at once.
func TestFindNodeEachTreeItsKubelet(t *testing.T) {
	a, b, none := tree(t), tree(t), tree(t)
	sock := filepath.Join(a.Root, "run", "cri.sock")
	os.MkdirAll(filepath.Dir(sock), 0o755)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ka := testenv.StartFakeKubelet(t, a.ManifestsDir, "containerRuntimeEndpoint: unix://"+sock)
	// b's kubelet names its manifests dir relative to its working directory, by flag.
	kb := exec.Command(testenv.Named(t, "kubelet"), "--pod-manifest-path", "etc/kubernetes/manifests", "--container-runtime-endpoint=unix:///nonexistent.sock")
	kb.Dir = b.Root
	testenv.StartProcess(t, kb)

	for _, tc := range []struct {
		name string
		l    pki.Layout
		pid  int
		cri  string
	}{{"a", a, ka.Process.Pid, sock}, {"b", b, kb.Process.Pid, ""}} {
		n, err := restart.FindNode("", tc.l.ManifestsDir)
		if err != nil {
			t.Fatalf("tree %s: %v", tc.name, err)
		}
		if n.PID != tc.pid {
			t.Errorf("tree %s: found kubelet %d, want %d", tc.name, n.PID, tc.pid)
		}
		// The socket is reached through the kubelet's root (its mount namespace); b names one
		// that does not exist: no socket (the default sockets are not its).
		want := ""
		if tc.cri != "" {
			want = filepath.Join("/proc", strconv.Itoa(tc.pid), "root", tc.cri)
		}
		if n.CRIEndpoint != want {
			t.Errorf("tree %s: CRI endpoint %q, want %q", tc.name, n.CRIEndpoint, want)
		}
		if n.NetNS == 0 || !n.Alive("") {
			t.Errorf("tree %s: %+v", tc.name, n)
		}
	}
	start := time.Now()
	_, err = restart.FindNode("", none.ManifestsDir)
	var nk *restart.ErrNoKubelet
	if !errors.As(err, &nk) || !strings.Contains(err.Error(), "no kubelet runs the static pods in "+none.ManifestsDir+": nothing to restart") {
		t.Fatalf("tree without a kubelet: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("refusing took %s", d)
	}
}

// TestRestartRefusesWithoutKubelet: `certctl --root DIR restart` and `renew --restart` on a
// tree that no kubelet runs (the demo sandbox) refuse within seconds, touching nothing; the
// host's processes are not looked at.
func TestRestartRefusesWithoutKubelet(t *testing.T) {
	bin := testenv.Certctl(t)
	root := filepath.Join(t.TempDir(), "node")
	if out, err := exec.Command(bin, "sandbox", "create", root).CombinedOutput(); err != nil {
		t.Fatalf("sandbox: %v\n%s", err, out)
	}
	l := pki.NewLayout(pki.LayoutOptions{Root: root})
	before := hashTree(t, root)
	for _, args := range [][]string{
		{"restart", "apiserver"},
		{"restart", "all", "kubelet"},
		{"renew", "all", "--restart", "--yes"},
	} {
		start := time.Now()
		out, err := exec.Command(bin, append([]string{"--root", root}, args...)...).CombinedOutput()
		took := time.Since(start)
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		if !strings.Contains(string(out), "no kubelet runs the static pods in "+l.ManifestsDir+": nothing to restart") {
			t.Errorf("%v: message %q", args, out)
		}
		if took > 5*time.Second {
			t.Errorf("%v: refused after %s, want within seconds", args, took)
		}
		if after := hashTree(t, root); after != before {
			t.Errorf("%v changed the tree", args)
		}
	}
}

// hashTree is the names and contents of every file under root, for "nothing changed".
func hashTree(t *testing.T, root string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			// A link as a link: the sandbox's kubelet links are absolute node paths, as the
			// kubelet writes them, and lead nowhere on this machine.
			target, err := os.Readlink(p)
			b.WriteString(p + "\x00->" + target + "\x00")
			return err
		}
		data, err := os.ReadFile(p)
		b.WriteString(p + "\x00" + string(data) + "\x00")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestRestartRefusesKubeletInAnotherNetNS: the node's kubelet runs in a network namespace of
// its own (a node of the multi-node lab seen from the host): its components listen on that
// namespace's 127.0.0.1, so certctl, outside it, refuses at once instead of probing the ports
// of whatever listens on its own loopback.
func TestRestartRefusesKubeletInAnotherNetNS(t *testing.T) {
	if os.Geteuid() != 0 || exec.Command("unshare", "--net", "true").Run() != nil {
		t.Skip("needs unshare --net (root)")
	}
	l := tree(t)
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	os.WriteFile(cfg, []byte("staticPodPath: "+l.ManifestsDir+"\n"), 0o644)
	k := testenv.StartProcess(t, exec.Command("unshare", "--net", "--", testenv.Named(t, "kubelet"), "--config="+cfg))
	var err error
	// unshare execs the kubelet: poll until the process is the kubelet.
	werr := wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		_, err = restart.Restart(context.Background(), restart.Request{Layout: l}, []string{"apiserver"})
		var nk *restart.ErrNoKubelet
		return !errors.As(err, &nk), nil
	})
	if werr != nil {
		t.Fatalf("the kubelet was never found: %v", err)
	}
	var other *restart.ErrOtherNetNS
	if !errors.As(err, &other) || other.Node.PID != k.Process.Pid || !strings.Contains(err.Error(), "nsenter --net=/proc/"+strconv.Itoa(k.Process.Pid)+"/ns/net") {
		t.Fatalf("err %v, want a refusal naming the kubelet's network namespace", err)
	}
}

// TestFindNodeIgnoresTheKubeletsFork: a kubelet that forks (to run mount, nsenter, iptables)
// has, until the child execs, a child with its own command line and config. FindNode and
// FindKubelet find the kubelet, not "several kubelets" (seen on the lab right after a kubelet
// restart); two unrelated kubelets on one tree are still refused.
func TestFindNodeIgnoresTheKubeletsFork(t *testing.T) {
	l := tree(t)
	cfg := filepath.Join(l.KubeletDir, "config.yaml")
	os.MkdirAll(l.KubeletDir, 0o755)
	if err := os.WriteFile(cfg, []byte("staticPodPath: "+l.ManifestsDir+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	k := exec.Command(testenv.Named(t, "kubelet"), "--config="+cfg)
	k.Env = append(os.Environ(), "CERTCTL_FAKE_FORK=1")
	out, err := k.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	testenv.StartProcess(t, k)
	var child int
	if _, err := fmt.Fscan(out, &child); err != nil {
		t.Fatalf("read the fork's pid: %v", err)
	}
	t.Cleanup(func() { syscall.Kill(child, syscall.SIGKILL) })
	parentLine, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", k.Process.Pid))
	childLine, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", child))
	if err != nil || string(childLine) != string(parentLine) {
		t.Fatalf("the fork's command line %q (%v), want the kubelet's %q", childLine, err, parentLine)
	}

	n, err := restart.FindNode("", l.ManifestsDir)
	if err != nil || n.PID != k.Process.Pid {
		t.Fatalf("FindNode: %+v, %v; want the kubelet %d (its fork is %d)", n, err, k.Process.Pid, child)
	}
	n, err = restart.FindKubelet("", cfg)
	if err != nil || n.PID != k.Process.Pid {
		t.Fatalf("FindKubelet: %+v, %v; want the kubelet %d (its fork is %d)", n, err, k.Process.Pid, child)
	}

	other := testenv.StartProcess(t, exec.Command(testenv.Named(t, "kubelet"), "--config="+cfg))
	_, err = restart.FindNode("", l.ManifestsDir)
	if err == nil || !strings.Contains(err.Error(), "several kubelets") || !strings.Contains(err.Error(), strconv.Itoa(other.Process.Pid)) {
		t.Fatalf("two kubelets on one tree: %v", err)
	}
}
