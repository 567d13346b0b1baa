package restart_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/restart"
)

// kubeletTree is a node tree with a kubelet config.yaml (no static pods: a worker).
func kubeletTree(t *testing.T) (pki.Layout, string) {
	t.Helper()
	l := pki.NewLayout(pki.LayoutOptions{Root: t.TempDir(), Home: "/root"})
	cfg := filepath.Join(l.KubeletDir, "config.yaml")
	if err := os.MkdirAll(l.KubeletDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, []byte("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return l, cfg
}

// TestFindKubeletByConfig: two real processes named kubelet (one PID namespace), each run
// with the config of its own tree and no static pods (workers): each tree finds its own by
// the config file; a tree no kubelet runs is refused at once, naming the file.
func TestFindKubeletByConfig(t *testing.T) {
	a, cfgA := kubeletTree(t)
	b, cfgB := kubeletTree(t)
	none, cfgNone := kubeletTree(t)
	ka := testenv.StartProcess(t, exec.Command(testenv.Named(t, "kubelet"), "--config="+cfgA))
	kb := testenv.StartProcess(t, exec.Command(testenv.Named(t, "kubelet"), "--config", cfgB))
	for _, tc := range []struct {
		l   pki.Layout
		cfg string
		pid int
	}{{a, cfgA, ka.Process.Pid}, {b, cfgB, kb.Process.Pid}} {
		n, err := restart.FindKubelet("", tc.cfg)
		if err != nil {
			t.Fatalf("%s: %v", tc.cfg, err)
		}
		if n.PID != tc.pid {
			t.Errorf("%s: found kubelet %d, want %d", tc.cfg, n.PID, tc.pid)
		}
	}
	_, err := restart.FindKubelet("", cfgNone)
	var nk *restart.ErrNoKubelet
	if !errors.As(err, &nk) || !strings.Contains(err.Error(), cfgNone) {
		t.Fatalf("a tree no kubelet runs (%s): %v", none.Root, err)
	}
}

// TestKubeletRestarterSupervised: a kubelet run by a supervisor (a shell loop, as runit or the
// labs do) is stopped with SIGTERM and Restart returns once the supervisor runs a new one; the
// kubelet of another tree is not touched.
func TestKubeletRestarterSupervised(t *testing.T) {
	l, cfg := kubeletTree(t)
	_, otherCfg := kubeletTree(t)
	other := testenv.StartProcess(t, exec.Command(testenv.Named(t, "kubelet"), "--config="+otherCfg))
	bin := testenv.Named(t, "kubelet")
	sup := exec.Command("sh", "-c", `trap 'kill -9 $child 2>/dev/null; exit 0' TERM; while :; do "$0" --config="$1" & child=$!; wait $child; done`, bin, cfg)
	sup.Env = append(os.Environ(), "CERTCTL_FAKE_EXIT_ON_TERM=1")
	testenv.StartProcess(t, sup)
	t.Cleanup(func() {
		// The supervisor's trap kills the kubelet it runs; the kubelet found last is killed
		// too, whatever the supervisor did (a kubelet left behind outlives the test).
		_ = sup.Process.Signal(syscall.SIGTERM)
		if n, err := restart.FindKubelet("", cfg); err == nil {
			_ = syscall.Kill(n.PID, syscall.SIGKILL)
		}
	})

	var before *restart.Node
	deadline := time.Now().Add(10 * time.Second)
	for before == nil {
		n, err := restart.FindKubelet("", cfg)
		switch {
		case err == nil:
			before = n
		case time.Now().After(deadline):
			t.Fatalf("the supervised kubelet never started: %v", err)
		default:
			time.Sleep(50 * time.Millisecond)
		}
	}
	if err := (restart.KubeletRestarter{Layout: l, Timeout: 20 * time.Second}).Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	after, err := restart.FindKubelet("", cfg)
	if err != nil {
		t.Fatal(err)
	}
	if after.PID == before.PID && after.StartTime == before.StartTime {
		t.Errorf("the same kubelet (pid %d) runs after the restart", before.PID)
	}
	if before.Alive("") {
		t.Errorf("the old kubelet (pid %d) still runs", before.PID)
	}
	if n, err := restart.FindKubelet("", otherCfg); err != nil || n.PID != other.Process.Pid {
		t.Errorf("the other tree's kubelet was touched: %v %+v", err, n)
	}
}
