package cli

import (
	"embed"
	"strings"

	"github.com/spf13/cobra"
)

// The long help and the examples of every command are text files under help/, one per command,
// named by its path under certctl ("kubelet-serving enable" is help/kubelet-serving_enable.txt,
// certctl itself help/certctl.txt): the long text, then, after a line "-- examples --", the
// examples. They are documentation, kept beside the wiring rather than inside it.
//
//go:embed help/*.txt
var helpFiles embed.FS

const examplesMark = "-- examples --\n"

// helpFile is the name of cmd's help file.
func helpFile(cmd *cobra.Command) string {
	key := strings.TrimSpace(strings.TrimPrefix(cmd.CommandPath(), cmd.Root().Name()))
	if key == "" {
		key = cmd.Root().Name()
	}
	return "help/" + strings.ReplaceAll(key, " ", "_") + ".txt"
}

// parseHelp splits a help file into its long text and its examples.
func parseHelp(b []byte) (long, example string) {
	s := string(b)
	long, example, _ = strings.Cut(s, examplesMark)
	return strings.TrimSuffix(long, "\n"), strings.TrimSuffix(example, "\n")
}

// applyHelp sets Long and Example of cmd and of every command under it from their help files.
// A command without a file keeps its short help only (TestHelp checks which those are).
func applyHelp(cmd *cobra.Command) {
	if b, err := helpFiles.ReadFile(helpFile(cmd)); err == nil {
		cmd.Long, cmd.Example = parseHelp(b)
	}
	for _, c := range cmd.Commands() {
		applyHelp(c)
	}
}
