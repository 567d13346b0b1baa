package renew_test

import (
	"bytes"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/renew"
)

// TestKill9AnyInstant kills `certctl renew all` with SIGKILL at random instants spread over
// a run's measured duration, hundreds of times, then runs certctl again (which recovers from
// the journal) and checks that every cert/key pair matches and verifies against its CA. It
// fails unless kills landed in every phase of a run: before the journal, while staging,
// while replacing, and after the run finished (a phase the random instants missed is then
// aimed at: the kill is sent as soon as the journal shows that phase).
func TestKill9AnyInstant(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	bin := testenv.Certctl(t)
	src := template(t)
	work := t.TempDir()
	args := func(root string) []string { return []string{"--root", root, "renew", "all", "--yes"} }

	// Measure a whole run (process start to exit).
	var durs []time.Duration
	for i := range 7 {
		root := filepath.Join(work, "measure", itoa(i))
		os.MkdirAll(root, 0o755)
		copyTree(t, src, root)
		start := time.Now()
		if out, err := exec.Command(bin, args(root)...).CombinedOutput(); err != nil {
			t.Fatalf("renew: %v\n%s", err, out)
		}
		durs = append(durs, time.Since(start))
		os.RemoveAll(root)
	}
	sort.Slice(durs, func(i, j int) bool { return durs[i] < durs[j] })
	runDur := durs[len(durs)/2]
	t.Logf("a renewal takes %s (median of %d)", runDur, len(durs))

	// The phases a kill can land in, in the order a run passes through them.
	const (
		phBefore = "killed before the journal (old)"
		phStage  = "killed while staging, rolled back (old)"
		phCommit = "killed while replacing, repaired forward (new)"
		phAfter  = "killed after the journal was removed (new)"
		phDone   = "finished before the kill (new)"
	)
	order := []string{phBefore, phStage, phCommit, phAfter, phDone}
	// Every phase but the instant between removing the journal and exiting (a few
	// microseconds) must have been hit, or the test did not test what it says.
	required := []string{phBefore, phStage, phCommit, phDone}

	origAPI := mustRead(t, filepath.Join(src, "etc/kubernetes/pki/apiserver.crt"))
	runs := 0
	delays := map[string][]time.Duration{}
	// killAt runs one renewal, kills it after delay (or, with aim, as soon as aim sees the
	// tree in the state it waits for), recovers, checks, and says in which phase the kill
	// landed.
	killAt := func(delay time.Duration, aim func(l pki.Layout) bool) string {
		t.Helper()
		root := filepath.Join(work, "run")
		os.RemoveAll(root)
		os.MkdirAll(root, 0o755)
		l := copyTree(t, src, root)
		cmd := exec.Command(bin, args(root)...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		start := time.Now()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		if aim == nil {
			time.Sleep(delay) // the kill instant: this is the point of the test, not a wait
		} else {
			// As fast as the file system can be read: the phase may last a millisecond.
			for end := time.Now().Add(30 * time.Second); !aim(l) && len(exited) == 0 && time.Now().Before(end); {
				time.Sleep(50 * time.Microsecond)
			}
			delay = time.Since(start)
		}
		cmd.Process.Signal(syscall.SIGKILL)
		err := <-exited
		finished := err == nil

		_, jerr := os.Stat(filepath.Join(l.StateDir(), renew.JournalName))
		journal := jerr == nil
		phase := ""
		if journal {
			phase = "prepare"
			if strings.Contains(string(mustRead(t, filepath.Join(l.StateDir(), renew.JournalName))), `"phase": "commit"`) {
				phase = "commit"
			}
		}
		// Any certctl command recovers first.
		rec := exec.Command(bin, "--root", root, "backup", "list")
		recOut, rerr := rec.CombinedOutput()
		if rerr != nil {
			t.Fatalf("run %d (kill after %s): recovery run failed: %v\n%s", runs, delay, rerr, recOut)
		}
		if err := checkPairs(l); err != nil {
			t.Fatalf("run %d (kill after %s, journal %v %s): pairs broken after recovery:\n%v\nrecovery said: %s", runs, delay, journal, phase, err, recOut)
		}
		nowAPI := mustRead(t, filepath.Join(root, "etc/kubernetes/pki/apiserver.crt"))
		var landed string
		switch {
		case finished:
			landed = phDone
		case phase == "commit":
			if !strings.Contains(string(recOut), "completed a renewal interrupted") || bytes.Equal(nowAPI, origAPI) {
				t.Fatalf("run %d: commit-phase journal but recovery said %q", runs, recOut)
			}
			landed = phCommit
		case phase == "prepare":
			if !strings.Contains(string(recOut), "had not replaced any file") || !bytes.Equal(nowAPI, origAPI) {
				t.Fatalf("run %d: prepare-phase journal but recovery said %q", runs, recOut)
			}
			landed = phStage
		case bytes.Equal(nowAPI, origAPI):
			landed = phBefore
		default:
			landed = phAfter
		}
		// A second recovery finds nothing to do.
		if out, _ := exec.Command(bin, "--root", root, "backup", "list").CombinedOutput(); strings.Contains(string(out), "interrupted") {
			t.Fatalf("run %d: recovery ran twice: %s", runs, out)
		}
		runs++
		delays[landed] = append(delays[landed], delay)
		return landed
	}

	// 75s of random kills, and at least 100 of them (a loaded machine gets up to three
	// times as long for those).
	const maxRuns, minRuns = 400, 100
	budget := 75 * time.Second
	start := time.Now()
	for runs < maxRuns && (time.Since(start) < budget || runs < minRuns) && time.Since(start) < 3*budget {
		killAt(time.Duration(rand.Int64N(int64(runDur)*11/10)), nil)
	}
	if runs < minRuns {
		t.Fatalf("only %d runs in %s", runs, time.Since(start).Round(time.Second))
	}
	// A required phase no random instant hit (replacing the files takes a few milliseconds;
	// on a loaded machine process start-up varies by more): kill as soon as the journal shows
	// the phase. A kill can still come late, so a few tries.
	journalHas := func(phase string) func(pki.Layout) bool {
		return func(l pki.Layout) bool {
			data, err := os.ReadFile(filepath.Join(l.StateDir(), renew.JournalName))
			return err == nil && (phase == "" || strings.Contains(string(data), `"phase": "`+phase+`"`))
		}
	}
	aims := map[string]func(pki.Layout) bool{
		phBefore: func(pki.Layout) bool { return true }, // at once
		phStage:  journalHas(""),
		phCommit: journalHas("commit"),
		phDone:   func(pki.Layout) bool { return false }, // until it exits
	}
	aimed := 0
	for _, ph := range required {
		for try := 0; len(delays[ph]) == 0 && try < 20; try++ {
			killAt(0, aims[ph])
			aimed++
		}
	}
	for _, ph := range order {
		t.Logf("%4d  %s", len(delays[ph]), ph)
	}
	t.Logf("%d runs (%d aimed at a phase the random instants missed), every pair matched and verified after each", runs, aimed)
	for _, ph := range required {
		if len(delays[ph]) == 0 {
			t.Errorf("no kill landed in the phase %q in %d runs: the test did not cover it", ph, runs)
		}
	}
}

// TestCrashAtEveryStep re-runs the renewal in a child process that dies (exit without
// cleanup, like a kill) right before each file-system operation in turn, so every instant
// between two operations is covered deterministically; recovery must then leave all pairs
// matching.
func TestCrashAtEveryStep(t *testing.T) {
	if os.Getenv("CERTCTL_CRASH_AT") != "" {
		crashChild()
		return
	}
	src := template(t)
	for step := 1; ; step++ {
		l := copyTree(t, src, "")
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashAtEveryStep$")
		cmd.Env = append(os.Environ(), "CERTCTL_CRASH_AT="+itoa(step), "CERTCTL_CRASH_ROOT="+l.Root)
		out, err := cmd.CombinedOutput()
		var recLog bytes.Buffer
		if rerr := renew.Recover(l, &recLog); rerr != nil {
			t.Fatalf("step %d: recover: %v", step, rerr)
		}
		if perr := checkPairs(l); perr != nil {
			t.Fatalf("step %d: after recovery (%s): %v", step, recLog.String(), perr)
		}
		if err == nil {
			t.Logf("crashed before each of %d operations; all recovered", step-1)
			if step < 40 {
				t.Fatalf("only %d operations: %s", step, out)
			}
			return
		}
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 137 {
			t.Fatalf("step %d: child: %v\n%s", step, err, out)
		}
	}
}

// crashWriter exits the process (no deferred cleanup) at operation n.
type crashWriter struct {
	renewWriter
	n, at int
}

func crashChild() {
	at := atoi(os.Getenv("CERTCTL_CRASH_AT"))
	l := pki.NewLayout(pki.LayoutOptions{Root: os.Getenv("CERTCTL_CRASH_ROOT"), Home: "/root"})
	p, err := renew.NewPlan(l, renew.Options{Days: 365})
	if err != nil {
		os.Exit(3)
	}
	w := &crashWriter{renewWriter: osWriter(), at: at}
	if _, err := renew.Apply(p, renew.ApplyOptions{Writer: w, Command: "crash test", LockTimeout: time.Second}); err != nil {
		os.Exit(3)
	}
	os.Exit(0)
}
