// Command testreport reads `go test -json` on stdin and prints what `make test` must show:
// go test's own package lines ("ok  pkg 1.2s", "FAIL pkg", build errors: CI reads them), the
// full output of every failed test, and every skipped test with its reason, which plain
// `go test` hides. It ends with a count of the skips and exits 1 when anything failed.
//
//	go test -json ./... | go run ./hack/testreport
//
// For the long end-to-end runs (make e2e, e2e-multi), -v prints every test's output as it
// comes (what `go test -v` shows) and -failed FILE writes the end of each failed test's
// output there: the Makefile prints that file last, after the lab's logs, so that the tail of
// a CI log names the test that failed and why, not only the lab's last log lines.
//
//	go test -json -v ./e2e/multinode | go run ./hack/testreport -v -failed _out/failed.txt
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"
)

// options are testreport's flags.
type options struct {
	verbose  bool      // every output line as it comes
	failed   io.Writer // when set: the end of each failed test's output, after the run
	tailSize int       // lines of each failed test kept for failed
}

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Time    time.Time
	Action  string
	Package string
	Test    string
	Elapsed float64
	Output  string
}

func main() {
	var opts options
	var failedFile string
	flag.BoolVar(&opts.verbose, "v", false, "print every test's output as it comes, as go test -v does")
	flag.StringVar(&failedFile, "failed", "", "write the end of each failed test's output to this file (empty when none failed)")
	flag.IntVar(&opts.tailSize, "failed-lines", 80, "lines of each failed test's output written to -failed")
	flag.Parse()
	var summary strings.Builder
	if failedFile != "" {
		opts.failed = &summary
	}
	failed, err := report(os.Stdin, os.Stdout, opts)
	if failedFile != "" {
		if werr := os.WriteFile(failedFile, []byte(summary.String()), 0o644); werr != nil && err == nil {
			err = fmt.Errorf("write %s: %w", failedFile, werr)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "testreport:", err)
		os.Exit(2)
	}
	if failed {
		os.Exit(1)
	}
}

// report copies the events of in to w as described above; failed says whether a test,
// a package or a build failed.
func report(in io.Reader, w io.Writer, opts options) (failed bool, err error) {
	output := map[string][]string{} // package/test -> its output so far
	var skips []string
	var failures []string // the end of each failed test's output, for opts.failed
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var ev event
		if json.Unmarshal(line, &ev) != nil || ev.Action == "" {
			fmt.Fprintln(w, string(line)) // not an event: pass it on (go vet, build noise)
			if strings.HasPrefix(string(line), "FAIL") {
				failed = true
			}
			continue
		}
		key := ev.Package + "/" + ev.Test
		switch ev.Action {
		case "build-output":
			fmt.Fprint(w, ev.Output)
		case "build-fail":
			failed = true
		case "output":
			if opts.verbose {
				fmt.Fprint(w, ev.Output)
				if ev.Test == "" {
					continue
				}
			}
			if ev.Test == "" {
				// Package level: go test's closing lines and anything outside a test.
				if o := strings.TrimSpace(ev.Output); o != "PASS" && o != "FAIL" && !strings.HasPrefix(o, "=== ") && o != "" {
					fmt.Fprint(w, ev.Output)
				}
				continue
			}
			output[key] = append(output[key], ev.Output)
		case "skip":
			if ev.Test != "" {
				skips = append(skips, ev.Package+" "+ev.Test)
				if !opts.verbose {
					fmt.Fprint(w, strings.Join(skipLines(output[key]), ""))
				}
			}
			delete(output, key)
		case "fail":
			failed = true
			var out []string
			if ev.Test != "" {
				out = output[key]
			} else {
				// The package failed: a test still without its own result was running when
				// the binary died (a panic, an os.Exit, the -timeout): its output says why.
				out = unfinished(output, ev.Package)
			}
			if !opts.verbose {
				fmt.Fprint(w, strings.Join(out, ""))
			}
			if len(out) > 0 {
				failures = append(failures, fmt.Sprintf("=== failed: %s %s (%.0fs), its last lines:\n%s",
					ev.Package, ev.Test, ev.Elapsed, strings.Join(tail(out, opts.tailSize), "")))
			}
			delete(output, key)
		case "pass":
			delete(output, key)
		}
	}
	if err := sc.Err(); err != nil {
		return true, err
	}
	fmt.Fprintf(w, "%d tests skipped", len(skips))
	if len(skips) > 0 {
		fmt.Fprint(w, " (the --- SKIP lines above say why)")
	}
	fmt.Fprintln(w)
	if opts.failed != nil {
		for _, f := range failures {
			fmt.Fprint(opts.failed, f)
		}
	}
	return failed, nil
}

// tail is the last n lines of out (all of them when n <= 0).
func tail(out []string, n int) []string {
	if n > 0 && len(out) > n {
		return out[len(out)-n:]
	}
	return out
}

// unfinished is the output of pkg's tests that have no result yet, in the order they
// started, and removes it from output.
func unfinished(output map[string][]string, pkg string) []string {
	var keys []string
	for k := range output {
		if strings.HasPrefix(k, pkg+"/") && k != pkg+"/" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var out []string
	for _, k := range keys {
		out = append(out, fmt.Sprintf("--- %s: no result (running when the test binary ended)\n", strings.TrimPrefix(k, pkg+"/")))
		out = append(out, output[k]...)
		delete(output, k)
	}
	return out
}

// skipLines are a skipped test's "--- SKIP" line and then the reason, as go test -v prints
// them, without its "=== RUN" and "=== PAUSE" lines.
func skipLines(out []string) []string {
	var head, reason []string
	for _, l := range out {
		switch t := strings.TrimSpace(l); {
		case strings.HasPrefix(t, "=== "):
		case strings.HasPrefix(t, "--- SKIP"):
			head = append(head, l)
		default:
			reason = append(reason, l)
		}
	}
	return append(head, reason...)
}
