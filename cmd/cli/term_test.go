package cli

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// /dev/null is a character device but no terminal: a renewal run with stdin from /dev/null
// (cron, systemd) must refuse to ask instead of reading an empty answer as "no".
func TestConfirmRefusesWithoutTerminal(t *testing.T) {
	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	if isTerminal(null) {
		t.Fatalf("%s is reported as a terminal", os.DevNull)
	}
	var out bytes.Buffer
	ok, err := confirm(Streams{In: null, Out: &out, ErrOut: &out}, "renew?")
	if ok || err == nil || !strings.Contains(err.Error(), "pass --yes") {
		t.Fatalf("confirm on %s: %v, %v; want a refusal naming --yes", os.DevNull, ok, err)
	}
	if out.Len() != 0 {
		t.Fatalf("asked anyway: %q", out.String())
	}
}
