package cli

import (
	"encoding/json"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/certctl/certctl/pkg/version"
)

func TestVersion(t *testing.T) {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		t.Fatal("the test binary carries no build information")
	}
	want := version.FromBuildInfo(bi)
	for _, args := range [][]string{{"version"}, {"--version"}} {
		code, out, errOut := run(t, args...)
		if code != ExitOK || errOut != "" {
			t.Fatalf("certctl %v: exit %d, stderr %q", args, code, errOut)
		}
		for _, part := range []string{"certctl " + want.Version, "commit " + want.Commit, bi.GoVersion, want.Platform} {
			if !strings.Contains(out, part) {
				t.Errorf("certctl %v: %q lacks %q", args, out, part)
			}
		}
	}
	code, out, _ := run(t, "version", "-o", "json")
	var got version.Info
	if err := json.Unmarshal([]byte(out), &got); code != ExitOK || err != nil || got != want {
		t.Fatalf("version -o json: exit %d, %v: %+v, want %+v", code, err, got, want)
	}
}
