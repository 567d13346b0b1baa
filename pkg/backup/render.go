package backup

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// RenderList writes the backups as certctl backup list shows them (a table, oldest first), or
// says there are none under root.
func RenderList(w io.Writer, list []Manifest, root string) error {
	if len(list) == 0 {
		_, err := fmt.Fprintf(w, "no backups under %s\n", root)
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTIME\tFILES\tCOMMAND")
	for _, m := range list {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", m.ID, m.Time.Format(time.RFC3339), len(m.Files), m.Command)
	}
	return tw.Flush()
}

// Render says what the restore put back, and where the files it replaced are.
func (r *RestoreResult) Render(w io.Writer) {
	m := r.Restored
	names := make([]string, len(m.Files))
	for i, f := range m.Files {
		names[i] = f.Path
	}
	fmt.Fprintf(w, "restored backup %s (%s, %s):\n  %s\nthe previous files are in backup %s\n",
		m.ID, m.Command, m.Time.Format(time.RFC3339), strings.Join(names, "\n  "), r.Previous.ID)
}
