package version_test

import (
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/certctl/certctl/pkg/version"
)

func TestFromBuildInfo(t *testing.T) {
	tests := []struct {
		name string
		bi   *debug.BuildInfo
		want version.Info
		line string
	}{
		{"no build info", nil,
			version.Info{Version: "unknown", Commit: "unknown", GoVersion: runtime.Version()},
			"certctl unknown (commit unknown, " + runtime.Version()},
		{"go install @v1.4.0", &debug.BuildInfo{GoVersion: "go1.23.4", Main: debug.Module{Path: "github.com/certctl/certctl", Version: "v1.4.0"}},
			version.Info{Version: "v1.4.0", Commit: "unknown", GoVersion: "go1.23.4"},
			"certctl v1.4.0 (commit unknown, go1.23.4"},
		{"checkout with local changes", &debug.BuildInfo{GoVersion: "go1.24.1", Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "edbcfda0123"}, {Key: "vcs.modified", Value: "true"}, {Key: "vcs.time", Value: "2026-12-01T10:00:00Z"}}},
			version.Info{Version: "(devel)", Commit: "edbcfda0123", Modified: true, BuildTime: "2026-12-01T10:00:00Z", GoVersion: "go1.24.1"},
			"certctl (devel) (commit edbcfda0123-dirty, 2026-12-01T10:00:00Z, go1.24.1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := version.FromBuildInfo(tc.bi)
			tc.want.Platform = runtime.GOOS + "/" + runtime.GOARCH
			if got != tc.want {
				t.Fatalf("got %+v\nwant %+v", got, tc.want)
			}
			if !strings.HasPrefix(got.String(), tc.line) || !strings.HasSuffix(got.String(), tc.want.Platform+")") {
				t.Fatalf("line %q, want it to start with %q", got.String(), tc.line)
			}
		})
	}
}

// The test binary itself carries build information: Get reads it.
func TestGetReadsThisBinary(t *testing.T) {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		t.Skip("this test binary carries no build information")
	}
	if got := version.Get(); got.GoVersion != bi.GoVersion || got.GoVersion == "" {
		t.Fatalf("Go version %q, want %q from the binary", got.GoVersion, bi.GoVersion)
	}
}
