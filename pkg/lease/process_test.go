package lease_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/certctl/certctl/pkg/lease"
)

// holderEnv makes the test binary a Lease holder (TestMain): it takes the Lease named in
// the variable with the kubeconfig in holderKubeconfig, prints its identity, and holds it
// until it is killed, as a `certctl cluster renew` whose terminal died.
const (
	holderEnv           = "CERTCTL_TEST_LEASE_HOLDER"
	holderKubeconfigEnv = "CERTCTL_TEST_LEASE_KUBECONFIG"
)

func TestMain(m *testing.M) {
	if name := os.Getenv(holderEnv); name != "" {
		os.Exit(holdUntilKilled(name, os.Getenv(holderKubeconfigEnv)))
	}
	os.Exit(m.Run())
}

func holdUntilKilled(name, kubeconfig string) int {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	l, err := lease.Acquire(context.Background(), cs, lease.Options{Name: name, Duration: time.Minute})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(l.Identity())
	select {} // held (and renewed) until killed
}

// startHolder runs a holder process and returns it with the identity it holds the Lease as.
func startHolder(t *testing.T, kubeconfig, name string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), holderEnv+"="+name, holderKubeconfigEnv+"="+kubeconfig)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("the holder process did not take the lease: %v", err)
	}
	return cmd, strings.TrimSpace(line)
}

// TestDeadHolderLosesTheLeaseAtOnce, on a real apiserver: a holder process killed with
// SIGKILL (no Release) keeps the Lease for its whole duration (a minute) by the Lease's own
// rules, but a run on the same machine proves it dead (its PID gone) and takes the Lease at
// once, naming it; a live holder, and a holder recorded from another machine (another boot
// ID), keep it.
func TestDeadHolderLosesTheLeaseAtOnce(t *testing.T) {
	cs, cp := apiserver(t)
	ctx := context.Background()
	kubeconfig := cp.AdminKubeconfig(t)

	holder, id := startHolder(t, kubeconfig, "dead-holder")
	got, err := lease.Acquire(ctx, cs, lease.Options{Name: "dead-holder", Identity: "second-run"})
	var held *lease.HeldError
	if !errors.As(err, &held) || held.Holder != id {
		t.Fatalf("with the holder alive: want a HeldError naming %s, got %v (%v)", id, err, got)
	}
	l, err := cs.CoordinationV1().Leases(lease.Namespace).Get(ctx, "dead-holder", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rec, ok := lease.ParseProcess(l.Annotations[lease.ProcessAnnotation])
	if !ok || rec.PID != holder.Process.Pid {
		t.Fatalf("the Lease records %q, want the holder's PID %d", l.Annotations[lease.ProcessAnnotation], holder.Process.Pid)
	}

	if err := holder.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = holder.Wait() // reaped: its PID is gone from /proc
	start := time.Now()
	second, err := lease.Acquire(ctx, cs, lease.Options{Name: "dead-holder", Identity: "second-run"})
	if err != nil {
		t.Fatalf("after SIGKILL of the holder: %v", err)
	}
	t.Logf("took the lease %s after SIGKILL of its holder in %s (its duration: 1m)", second.Held(), time.Since(start).Round(time.Millisecond))
	if second.TookOver != id || !strings.Contains(second.Held(), id) {
		t.Errorf("TookOver %q (%s), want the dead holder %s", second.TookOver, second.Held(), id)
	}
	if err := second.Release(ctx); err != nil {
		t.Fatal(err)
	}

	// A holder recorded from another machine: its PID means nothing here.
	now := metav1.NewMicroTime(time.Now())
	foreign := lease.Process{BootID: "00000000-0000-0000-0000-000000000000", PIDNamespace: "4026531836", PID: 999999, StartTicks: 1}
	if _, err := cs.CoordinationV1().Leases(lease.Namespace).Create(ctx, &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: "foreign-holder", Annotations: map[string]string{lease.ProcessAnnotation: foreign.String()}},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: ptr.To("other-machine/999999/ab"), LeaseDurationSeconds: ptr.To(int32(60)), RenewTime: &now, AcquireTime: &now},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := lease.Acquire(ctx, cs, lease.Options{Name: "foreign-holder", Identity: "second-run"}); !errors.As(err, &held) {
		t.Errorf("a holder of another machine: want a HeldError, got %v", err)
	}
}

// TestProcessGone: what proves a recorded holder dead, on a /proc laid out as Linux's.
func TestProcessGone(t *testing.T) {
	self := os.Getpid()
	const boot, ns = "6f1c2a4e-0000-4000-8000-000000000001", "4026531836"
	tests := []struct {
		name   string
		holder lease.Process
		procs  map[int]uint64 // the fake /proc's processes: PID -> start ticks (besides self)
		gone   bool
	}{
		{name: "pid gone", holder: lease.Process{BootID: boot, PIDNamespace: ns, PID: 4242, StartTicks: 77}, gone: true},
		{name: "alive", holder: lease.Process{BootID: boot, PIDNamespace: ns, PID: 4242, StartTicks: 77}, procs: map[int]uint64{4242: 77}},
		{name: "pid reused", holder: lease.Process{BootID: boot, PIDNamespace: ns, PID: 4242, StartTicks: 77}, procs: map[int]uint64{4242: 90}, gone: true},
		{name: "another boot", holder: lease.Process{BootID: "another", PIDNamespace: ns, PID: 4242, StartTicks: 77}},
		{name: "another pid namespace", holder: lease.Process{BootID: boot, PIDNamespace: "4026532999", PID: 4242, StartTicks: 77}},
		{name: "this very process", holder: lease.Process{BootID: boot, PIDNamespace: ns, PID: self, StartTicks: 5}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			proc := t.TempDir()
			write := func(path, data string) {
				t.Helper()
				if err := os.MkdirAll(proc+"/"+path[:strings.LastIndexByte(path, '/')], 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(proc+"/"+path, []byte(data), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			stat := func(pid int, start uint64) string {
				// Fields 1-22 of /proc/PID/stat; a command with a space and a parenthesis.
				return fmt.Sprintf("%d (cert ctl) S 1 1 1 0 -1 4194560 100 0 0 0 1 1 0 0 20 0 8 0 %d 1000 10\n", pid, start)
			}
			write("sys/kernel/random/boot_id", boot+"\n")
			if err := os.MkdirAll(proc+"/self/ns", 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("pid:["+ns+"]", proc+"/self/ns/pid"); err != nil {
				t.Fatal(err)
			}
			write(fmt.Sprintf("%d/stat", self), stat(self, 5))
			for pid, start := range tc.procs {
				write(fmt.Sprintf("%d/stat", pid), stat(pid, start))
			}
			if got := lease.Gone(proc, tc.holder); got != tc.gone {
				t.Errorf("gone = %v, want %v", got, tc.gone)
			}
			if p, ok := lease.ParseProcess(tc.holder.String()); !ok || p != tc.holder {
				t.Errorf("ParseProcess(%q) = %+v %v", tc.holder.String(), p, ok)
			}
		})
	}
	for _, bad := range []string{"", "a/b/c", "boot/ns/0/1", "boot/ns/x/1", "/ns/1/1", "boot/ns/1/-1"} {
		if _, ok := lease.ParseProcess(bad); ok {
			t.Errorf("ParseProcess(%q) accepted", bad)
		}
	}
}
