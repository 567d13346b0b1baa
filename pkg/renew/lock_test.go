package renew_test

import (
	"bytes"
	"fmt"
	"github.com/certctl/certctl/internal/testenv"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certctl/certctl/pkg/renew"
)

// TestLockHeldRefusesWithPID: while another process holds the lock, a renewal waits
// --lock-timeout, fails naming the holder's PID, and changes nothing; once the lock is
// released a waiting renewal proceeds.
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

	// A renewal waiting on the lock proceeds when it is released.
	cmd := exec.Command(bin, "--root", l.Root, "renew", "all", "--yes", "--lock-timeout", "20s")
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Let it reach the lock: its plan is printed before Apply takes the lock.
	waitFor(t, 10*time.Second, "the plan to be printed", func() bool { return strings.Contains(buf.String(), "NEW EXPIRY") })
	lock.Release()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("waiting renewal failed after the lock was released: %v\n%s", err, buf.String())
	}
	if err := checkPairs(l); err != nil {
		t.Fatal(err)
	}
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
