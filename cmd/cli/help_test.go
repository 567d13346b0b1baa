package cli

import (
	"io/fs"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestHelp: every help file belongs to a command (a renamed command does not orphan its help),
// and every command a user runs has its long help and examples.
func TestHelp(t *testing.T) {
	root := NewRootCmd(Streams{})
	used := map[string]bool{}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		name := helpFile(c)
		if _, err := fs.Stat(helpFiles, name); err == nil {
			used[name] = true
		}
		if c.Runnable() && !c.Hidden && c.Name() != "help" && c.Name() != "completion" {
			if c.Long == "" || c.Example == "" {
				t.Errorf("%q: long help %d bytes, examples %d bytes: both wanted (%s)", c.CommandPath(), len(c.Long), len(c.Example), name)
			}
			if strings.Contains(c.Long, examplesMark) || strings.HasSuffix(c.Long, "\n") {
				t.Errorf("%q: long help not split from its examples: %q", c.CommandPath(), c.Long)
			}
		}
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(root)
	files, err := fs.Glob(helpFiles, "help/*.txt")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if !used[f] {
			t.Errorf("%s belongs to no command", f)
		}
	}
	if len(files) == 0 {
		t.Fatal("no help files embedded")
	}
}

func TestParseHelp(t *testing.T) {
	for _, tc := range []struct{ in, long, example string }{
		{"long\ntext\n-- examples --\n  certctl x\n", "long\ntext", "  certctl x"},
		{"long only\n", "long only", ""},
		{"", "", ""},
	} {
		long, example := parseHelp([]byte(tc.in))
		if long != tc.long || example != tc.example {
			t.Errorf("parseHelp(%q) = %q, %q; want %q, %q", tc.in, long, example, tc.long, tc.example)
		}
	}
}
