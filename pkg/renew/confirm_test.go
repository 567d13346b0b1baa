package renew_test

import (
	"github.com/certctl/certctl/internal/testenv"
	"os/exec"
	"strings"
	"testing"
)

// TestConfirmOnTerminal runs certctl on a real pseudo-terminal (util-linux script): "n"
// changes nothing, "y" renews.
func TestConfirmOnTerminal(t *testing.T) {
	if _, err := exec.LookPath("script"); err != nil {
		t.Skip("script (util-linux) not installed: no pty to test the prompt on")
	}
	bin := testenv.Certctl(t)
	l := newTree(t)
	before := treeHash(t, l.Root)
	run := func(answer string) string {
		cmd := exec.Command("script", "-qec", bin+" --root "+l.Root+" renew apiserver", "/dev/null")
		cmd.Stdin = strings.NewReader(answer + "\n")
		out, _ := cmd.CombinedOutput()
		return string(out)
	}
	out := run("n")
	if !strings.Contains(out, "[y/N]") || !strings.Contains(out, "aborted: nothing changed") {
		t.Fatalf("no prompt or no abort:\n%s", out)
	}
	if d := diffHash(before, treeHash(t, l.Root)); len(d) > 0 {
		t.Fatalf("answering n changed files: %v", d)
	}
	out = run("y")
	if !strings.Contains(out, "renewed 1: apiserver") {
		t.Fatalf("answering y did not renew:\n%s", out)
	}
	if err := checkPairs(l); err != nil {
		t.Fatal(err)
	}
}
