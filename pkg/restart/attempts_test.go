package restart

import (
	"strconv"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func ctr(id, sandbox string, attempt int, created time.Time, exited bool) *runtimeapi.Container {
	st := runtimeapi.ContainerState_CONTAINER_RUNNING
	if exited {
		st = runtimeapi.ContainerState_CONTAINER_EXITED
	}
	return &runtimeapi.Container{Id: id, PodSandboxId: sandbox, CreatedAt: created.UnixNano(), State: st,
		Annotations: map[string]string{"io.kubernetes.container.restartCount": strconv.Itoa(attempt)}}
}

// TestAttemptsOf: the attempts counted are those of the newest container's pod sandbox made
// since the manifest went back; an exit counts only while that sandbox is ready.
func TestAttemptsOf(t *testing.T) {
	back := time.Unix(1000, 0)
	at := func(s int) time.Time { return back.Add(time.Duration(s) * time.Second) }
	ready := map[string]bool{"sb2": true, "sb3": true}
	tests := []struct {
		name string
		ctrs []*runtimeapi.Container
		want Attempts
	}{
		{name: "nothing since", ctrs: []*runtimeapi.Container{ctr("old", "sb1", 0, at(-5), true)}, want: Attempts{}},
		{name: "first attempt running",
			ctrs: []*runtimeapi.Container{ctr("old", "sb1", 0, at(-5), true), ctr("c1", "sb2", 0, at(1), false)},
			want: Attempts{Seen: true, Sandbox: "sb2", NewestID: "c1"}},
		{name: "crashed in its pod",
			ctrs: []*runtimeapi.Container{ctr("c1", "sb2", 0, at(1), true)},
			want: Attempts{Seen: true, Sandbox: "sb2", NewestID: "c1", NewestExited: true}},
		{name: "restarted in its pod after a crash",
			ctrs: []*runtimeapi.Container{ctr("c1", "sb2", 3, at(1), true), ctr("c2", "sb2", 4, at(12), false)},
			want: Attempts{Seen: true, Sandbox: "sb2", NewestID: "c2", First: 3, Newest: 4}},
		{name: "stopped with its pod (the CI's etcd: the kubelet saw the manifest leave late)",
			ctrs: []*runtimeapi.Container{ctr("c1", "sb1", 0, at(1), true)},
			want: Attempts{Seen: true, Sandbox: "sb1", NewestID: "c1"}},
		{name: "a new pod after that: its attempts alone",
			ctrs: []*runtimeapi.Container{ctr("c1", "sb1", 0, at(1), true), ctr("c2", "sb3", 1, at(18), false)},
			want: Attempts{Seen: true, Sandbox: "sb3", NewestID: "c2", First: 1, Newest: 1}},
		{name: "no attempt number: not the kubelet's",
			ctrs: []*runtimeapi.Container{{Id: "x", PodSandboxId: "sb2", CreatedAt: at(1).UnixNano()}},
			want: Attempts{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := attemptsOf(tc.ctrs, back, func(id string) bool { return ready[id] })
			if got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestCrashCount: the ended attempts after each look; a newest attempt seen ended counts at
// the next look that still shows it ended, a new sandbox starts the count again.
func TestCrashCount(t *testing.T) {
	running := func(sb string, first, n int) Attempts {
		return Attempts{Seen: true, Sandbox: sb, First: first, Newest: n, NewestID: sb + strconv.Itoa(n)}
	}
	ended := func(sb string, first, n int) Attempts {
		a := running(sb, first, n)
		a.NewestExited = true
		return a
	}
	tests := []struct {
		name  string
		looks []Attempts
		want  []int
	}{
		{name: "comes up", looks: []Attempts{running("a", 0, 0), running("a", 0, 0)}, want: []int{0, 0}},
		{name: "crashes: counted on the second look", looks: []Attempts{running("a", 0, 0), ended("a", 0, 0), ended("a", 0, 0)}, want: []int{0, 0, 1}},
		{name: "exited, then its pod is gone and a new one runs", looks: []Attempts{ended("a", 0, 0), running("b", 1, 1), running("b", 1, 1)}, want: []int{0, 0, 0}},
		{name: "restarted between two looks", looks: []Attempts{running("a", 0, 0), running("a", 0, 1)}, want: []int{0, 1}},
		{name: "garbage collected attempts: the first seen stays", looks: []Attempts{running("a", 2, 2), ended("a", 3, 3), ended("a", 3, 3)}, want: []int{0, 1, 2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var c crashCount
			for i, a := range tc.looks {
				if got := c.observe(a); got != tc.want[i] {
					t.Fatalf("look %d (%+v): %d ended, want %d", i, a, got, tc.want[i])
				}
			}
		})
	}
}

// TestCrashLoopErrorMessage: the exit code is told only when the runtime gave one.
func TestCrashLoopErrorMessage(t *testing.T) {
	one := int32(1)
	tests := []struct {
		err  CrashLoopError
		want string
	}{
		{CrashLoopError{Component: "apiserver", Exits: 1, ExitCode: &one, After: 4 * time.Second}, "its container exited once (exit code 1) 4s after"},
		{CrashLoopError{Component: "apiserver", Exits: 2, After: 4 * time.Second}, "its container exited 2 times 4s after"},
	}
	for _, tc := range tests {
		if got := tc.err.Error(); !strings.HasPrefix(got, tc.want) {
			t.Errorf("%q, want it to start with %q", got, tc.want)
		}
	}
}
