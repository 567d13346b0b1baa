package renew_test

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/renew"
)

// TestLockHeldRefusesWithPID: while another process holds the lock, a renewal waits
// --lock-timeout, fails naming the holder's PID, and changes nothing; a second renewal is
// seen blocked (running, nothing changed, for five times what it needs unblocked) while the
// lock is held, and renews once it is released.
func TestLockHeldRefusesWithPID(t *testing.T) {
	bin := testenv.Certctl(t)
	l := newTree(t)
	lock, err := renew.AcquireLock(l.StateDir(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	before := treeHash(t, l.Root)
	start := time.Now()
	out, err := exec.Command(bin, "--root", l.Root, "renew", "all", "--yes", "--lock-timeout", "400ms").CombinedOutput()
	waited := time.Since(start)
	if err == nil {
		t.Fatalf("renewal ran while the lock was held:\n%s", out)
	}
	want := fmt.Sprintf("process %d", os.Getpid())
	if !strings.Contains(string(out), "holds the lock") || !strings.Contains(string(out), want) || !strings.Contains(string(out), "waited 400ms") {
		t.Fatalf("message %q does not name the holder (%s)", out, want)
	}
	if waited < 400*time.Millisecond {
		t.Fatalf("gave up after %s, before --lock-timeout", waited)
	}
	if d := diffHash(before, treeHash(t, l.Root)); len(d) > 0 {
		t.Fatalf("files changed: %v", d)
	}

	// A second renewal really waits for the lock and proceeds when it is released. First,
	// how long one takes from its plan to its exit when nothing holds the lock.
	free := newTree(t)
	unblocked := planToExit(t, exec.Command(bin, "--root", free.Root, "renew", "all", "--yes"))
	window := max(5*unblocked, time.Second)

	buf, exited := startUntilPlan(t, exec.Command(bin, "--root", l.Root, "renew", "all", "--yes", "--lock-timeout", "60s"))
	// Blocked: for five times what an unblocked renewal needs from here to its exit, it is
	// still running and has changed nothing.
	for end := time.Now().Add(window); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		select {
		case err := <-exited:
			t.Fatalf("the second renewal did not wait for the lock (exit %v):\n%s", err, buf.String())
		default:
		}
		if d := diffHash(before, treeHash(t, l.Root)); len(d) > 0 {
			t.Fatalf("the second renewal changed files while the lock was held: %v", d)
		}
	}
	t.Logf("the second renewal waited %s (an unblocked one exits %s after its plan)", window, unblocked)
	lock.Release()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("waiting renewal failed after the lock was released: %v\n%s", err, buf.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("the second renewal did not proceed within 60s of the release:\n%s", buf.String())
	}
	if !strings.Contains(buf.String(), "renewed ") || len(diffHash(before, treeHash(t, l.Root))) == 0 {
		t.Fatalf("the second renewal did not renew after the release:\n%s", buf.String())
	}
	if err := checkPairs(l); err != nil {
		t.Fatal(err)
	}
}

// startUntilPlan starts a renewal and returns once it has printed its plan (right before
// Apply takes the lock), with its output and its exit.
func startUntilPlan(t *testing.T, cmd *exec.Cmd) (*testenv.SyncBuffer, <-chan error) {
	t.Helper()
	buf, exited := start(t, cmd)
	waitFor(t, 30*time.Second, "the plan to be printed", func() bool { return strings.Contains(buf.String(), "NEW EXPIRY") })
	return buf, exited
}

// planToExit runs cmd and returns the time from its printed plan to its exit.
func planToExit(t *testing.T, cmd *exec.Cmd) time.Duration {
	t.Helper()
	buf, exited := startUntilPlan(t, cmd)
	start := time.Now()
	if err := <-exited; err != nil {
		t.Fatalf("%v\n%s", err, buf.String())
	}
	return time.Since(start)
}

// TestConcurrentRenewals starts two renewals of the same tree at once: they never
// interleave; each either renews or refuses with a clear message, and every pair matches.
func TestConcurrentRenewals(t *testing.T) {
	bin := testenv.Certctl(t)
	for round := range 5 {
		l := newTree(t)
		var wg sync.WaitGroup
		outs := make([][]byte, 2)
		errs := make([]error, 2)
		for i := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				outs[i], errs[i] = exec.Command(bin, "--root", l.Root, "renew", "all", "--yes", "--lock-timeout", "20s").CombinedOutput()
			}()
		}
		wg.Wait()
		ok := 0
		for i := range 2 {
			if errs[i] == nil {
				ok++
				continue
			}
			if !strings.Contains(string(outs[i]), "changed since the plan was made") {
				t.Fatalf("round %d: renewal %d failed unclearly: %v\n%s", round, i, errs[i], outs[i])
			}
		}
		if ok == 0 {
			t.Fatalf("round %d: neither renewal succeeded:\n%s\n%s", round, outs[0], outs[1])
		}
		if err := checkPairs(l); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		t.Logf("round %d: %d of 2 renewed, the other refused cleanly", round, ok)
	}
}
