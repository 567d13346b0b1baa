package renew

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// Render writes the plan as a table: one row per item with its old and new expiry, the key
// action, the SANs added and a note (capped at the CA, skipped and why).
func (p *Plan) Render(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tACTION\tOLD EXPIRY\tNEW EXPIRY\tKEY\tSANS ADDED\tNOTE")
	for _, r := range p.Rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, r.Action, day(r.OldExpiry), day(r.NewExpiry),
			dash(r.KeyAction), dash(strings.Join(r.SANsAdded, ",")), dash(r.Note))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	p.KubeadmConfig.render(w)
	return nil
}

func day(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04Z")
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
