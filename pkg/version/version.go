// Package version says which certctl this is, from the build information the Go toolchain
// embeds in every binary (runtime/debug.ReadBuildInfo): the module version, the VCS commit
// and the Go version. Nothing needs to be set at link time.
package version

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/certctl/certctl/pkg/render"
)

// Info is what `certctl version` prints.
type Info struct {
	Version   string `json:"version"`             // module version: v1.2.3 from `go install ...@v1.2.3`, (devel) from a checkout
	Commit    string `json:"commit"`              // vcs.revision, "unknown" when built without VCS stamping (-buildvcs=false)
	Modified  bool   `json:"modified,omitempty"`  // vcs.modified: built from a tree with uncommitted changes
	BuildTime string `json:"buildTime,omitempty"` // vcs.time: the commit's time
	GoVersion string `json:"goVersion"`
	Platform  string `json:"platform"`
}

// Get reads the running binary's build information.
func Get() Info {
	bi, _ := debug.ReadBuildInfo()
	return FromBuildInfo(bi)
}

// FromBuildInfo turns bi (nil when the binary carries none) into an Info.
func FromBuildInfo(bi *debug.BuildInfo) Info {
	in := Info{Version: "unknown", Commit: "unknown", GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi == nil {
		return in
	}
	if bi.Main.Version != "" {
		in.Version = bi.Main.Version
	}
	if bi.GoVersion != "" {
		in.GoVersion = bi.GoVersion
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			in.Commit = s.Value
		case "vcs.modified":
			in.Modified = s.Value == "true"
		case "vcs.time":
			in.BuildTime = s.Value
		case "GOOS", "GOARCH":
			// runtime's values are the running binary's; keep them.
		}
	}
	return in
}

// String is the one line `certctl --version` prints.
func (in Info) String() string {
	commit := in.Commit
	if in.Modified {
		commit += "-dirty"
	}
	s := fmt.Sprintf("certctl %s (commit %s", in.Version, commit)
	if in.BuildTime != "" {
		s += ", " + in.BuildTime
	}
	return s + ", " + in.GoVersion + ", " + in.Platform + ")"
}

// Render writes in as text (String's line) or json.
func (in Info) Render(w io.Writer, format string) error {
	if format == "json" {
		return render.JSON(w, in)
	}
	_, err := fmt.Fprintln(w, in)
	return err
}
