package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestReportRealGoTest runs `go test -json` on a throwaway module with a passing, a skipped
// and a failing test, and checks what the report shows.
func TestReportRealGoTest(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go test on a throwaway module")
	}
	dir := t.TempDir()
	files := map[string]string{
		"go.mod": "module example.com/m\n\ngo 1.21\n",
		"a/a_test.go": `package a

import "testing"

func TestPasses(t *testing.T) { t.Log("quiet") }
func TestSkips(t *testing.T)  { t.Skip("needs the kube-apiserver binary") }
func TestFails(t *testing.T)  { t.Error("broken on purpose") }
`,
		// A test binary that dies in the middle of a test (a panic in a goroutine, os.Exit):
		// the output of the test that was running must still be shown.
		"c/c_test.go": "package c\n\nimport (\n\t\"os\"\n\t\"testing\"\n)\n\nfunc TestDies(t *testing.T) {\n\tt.Log(\"last words\")\n\tos.Exit(3)\n}\n",
		"b/b_test.go": "package b\n\nimport \"testing\"\n\nfunc TestOK(t *testing.T) {}\nfunc TestSkipped(t *testing.T) { t.Skipf(\"skipped: %d\", 42) }\n",
	}
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("go", "test", "-count=1", "-json", "./...")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
	events, _ := cmd.Output() // exits 1: a test fails on purpose
	var out bytes.Buffer
	failed, err := report(bytes.NewReader(events), &out, options{})
	if err != nil {
		t.Fatal(err)
	}
	got := out.String()
	if !failed {
		t.Errorf("a failing test was not reported as a failure:\n%s", got)
	}
	for _, want := range []string{
		"--- SKIP: TestSkips", "needs the kube-apiserver binary",
		"--- SKIP: TestSkipped", "skipped: 42",
		"--- FAIL: TestFails", "broken on purpose",
		"FAIL\texample.com/m/a", "ok  \texample.com/m/b",
		"2 tests skipped",
		"FAIL\texample.com/m/c", "TestDies", "last words",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("report lacks %q:\n%s", want, got)
		}
	}
	if i, j := strings.Index(got, "--- SKIP: TestSkips"), strings.Index(got, "needs the kube-apiserver binary"); i > j {
		t.Errorf("the reason comes before its --- SKIP line:\n%s", got)
	}
	for _, unwanted := range []string{"quiet", "=== RUN   TestPasses", "--- PASS", "=== RUN   TestSkips"} {
		if strings.Contains(got, unwanted) {
			t.Errorf("report shows %q of a passing test:\n%s", unwanted, got)
		}
	}
}

// TestReportVerboseFailedSummary feeds recorded go test -json events (a pass, a failure with
// more lines than kept, a package failing in the middle of a test) to the -v -failed mode:
// every line is printed as it comes, and the summary holds the end of each failed test only.
func TestReportVerboseFailedSummary(t *testing.T) {
	ev := func(action, pkg, test, output string) string {
		return fmt.Sprintf(`{"Action":%q,"Package":%q,"Test":%q,"Output":%q}`, action, pkg, test, output) + "\n"
	}
	var in strings.Builder
	in.WriteString(ev("output", "m/a", "TestPasses", "=== RUN   TestPasses\n"))
	in.WriteString(ev("output", "m/a", "TestPasses", "    a_test.go:1: quiet\n"))
	in.WriteString(ev("pass", "m/a", "TestPasses", ""))
	in.WriteString(ev("output", "m/a", "TestFails", "=== RUN   TestFails\n"))
	for i := 1; i <= 5; i++ {
		in.WriteString(ev("output", "m/a", "TestFails", fmt.Sprintf("    a_test.go:2: step %d\n", i)))
	}
	in.WriteString(ev("output", "m/a", "TestFails", "--- FAIL: TestFails (1.00s)\n"))
	in.WriteString(ev("fail", "m/a", "TestFails", ""))
	in.WriteString(ev("output", "m/a", "", "FAIL\tm/a\t1.0s\n"))
	in.WriteString(ev("fail", "m/a", "", ""))
	in.WriteString(ev("output", "m/c", "TestDies", "=== RUN   TestDies\n"))
	in.WriteString(ev("output", "m/c", "TestDies", "    c_test.go:1: last words\n"))
	in.WriteString(ev("fail", "m/c", "", ""))

	tests := []struct {
		name        string
		inOut       []string // in the live output
		inFailed    []string // in the failed summary
		notInFailed []string
	}{
		{
			name:        "summary of the failures only, the end of each",
			inOut:       []string{"quiet", "step 1", "step 5", "FAIL\tm/a", "last words"},
			inFailed:    []string{"=== failed: m/a TestFails", "step 4", "step 5", "--- FAIL: TestFails", "TestDies", "last words"},
			notInFailed: []string{"quiet", "step 2", "TestPasses"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, failedOut bytes.Buffer
			failed, err := report(strings.NewReader(in.String()), &out, options{verbose: true, failed: &failedOut, tailSize: 3})
			if err != nil {
				t.Fatal(err)
			}
			if !failed {
				t.Error("failures not reported")
			}
			for _, want := range tc.inOut {
				if !strings.Contains(out.String(), want) {
					t.Errorf("output lacks %q:\n%s", want, out.String())
				}
			}
			for _, want := range tc.inFailed {
				if !strings.Contains(failedOut.String(), want) {
					t.Errorf("failed summary lacks %q:\n%s", want, failedOut.String())
				}
			}
			for _, unwanted := range tc.notInFailed {
				if strings.Contains(failedOut.String(), unwanted) {
					t.Errorf("failed summary has %q:\n%s", unwanted, failedOut.String())
				}
			}
		})
	}
}
