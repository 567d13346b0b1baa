package inspect

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/certctl/certctl/pkg/render"
)

// Formats accepted by Render.
var Formats = []string{"table", "wide", "json", "yaml", "prometheus"}

// ValidFormat reports whether f is one of Formats (or an extra format a caller adds).
func ValidFormat(f string, extra ...string) error {
	for _, v := range append(append([]string{}, Formats...), extra...) {
		if f == v {
			return nil
		}
	}
	return fmt.Errorf("unknown output format %q (want one of %s)", f, strings.Join(append(append([]string{}, Formats...), extra...), ", "))
}

// Render writes r to w in format.
func Render(w io.Writer, r *Report, format string) error {
	if ok, err := render.Machine(w, format, r); ok {
		return err
	}
	switch format {
	case "prometheus":
		return RenderPrometheus(w, r)
	case "table", "wide", "":
		return renderTable(w, r, format == "wide")
	}
	return ValidFormat(format)
}

func renderTable(w io.Writer, r *Report, wide bool) error {
	if r.Role != "" {
		fmt.Fprintf(w, "Node role: %s (%s)\n\n", r.Role, r.RoleReason)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	hdr := "NAME\tEXPIRES\tRESIDUAL\tCA\tSTATUS"
	if wide {
		hdr += "\tKEY\tSERIAL\tSANS"
	}
	fmt.Fprintln(tw, hdr)
	for _, c := range r.Certificates {
		expires, residual := "-", "-"
		if c.NotAfter != nil {
			expires = c.NotAfter.UTC().Format("Jan 02, 2006 15:04 MST")
			left := c.NotAfter.Sub(r.GeneratedAt)
			if left <= 0 {
				residual = "<invalid>"
			} else {
				residual = Residual(left)
			}
		}
		ca := c.CA
		if ca == "" {
			ca = "-"
		}
		line := fmt.Sprintf("%s\t%s\t%s\t%s\t%s", c.Name, expires, residual, ca, c.Status)
		if wide {
			sans := append(append([]string{}, c.DNSNames...), c.IPAddresses...)
			sans = append(sans, c.EmailAddresses...)
			sans = append(sans, c.URIs...)
			line += fmt.Sprintf("\t%s\t%s\t%s", dash(c.KeyAlgorithm), dash(c.Serial), dash(strings.Join(sans, ",")))
		}
		fmt.Fprintln(tw, line)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var n int
	for _, c := range r.Certificates {
		for _, f := range c.Findings {
			if n == 0 {
				fmt.Fprintln(w, "\nFINDINGS")
			}
			n++
			fmt.Fprintf(w, "%-8s %s [%s] %s\n", strings.ToUpper(string(f.Severity)), c.Name, f.Code, f.Message)
			if f.Remedy != "" {
				fmt.Fprintf(w, "         fix: %s\n", f.Remedy)
			}
		}
	}
	if n == 0 {
		fmt.Fprintln(w, "\nNo findings.")
	}
	for _, c := range r.Certificates {
		if c.KeyWritten != nil {
			fmt.Fprintf(w, "\nKey pair %s: %s, written %s (%s ago); nothing expires it: rotate it with certctl cluster ca-rotate %s (docs/ca-rotation.md)\n",
				c.Name, dash(c.KeyAlgorithm), c.KeyWritten.Format("Jan 02, 2006 15:04 MST"), Residual(r.GeneratedAt.Sub(*c.KeyWritten)), c.Name)
		}
	}
	for i, rot := range r.CARotations {
		if i == 0 {
			fmt.Fprintln(w, "\nRotations on this node (certctl ca rotate):")
		}
		fmt.Fprintf(w, "  %-15s phase %-5s done %s (%s)\n", rot.CA, rot.Phase, rot.Time.UTC().Format("Jan 02, 2006 15:04 MST"), rot.State())
	}
	if lr := r.LastRun; lr != nil {
		fmt.Fprintf(w, "\nLast renewal run: %s\n", lr.Summary())
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// ParseDuration accepts Go durations plus days and weeks: 30d, 2w, 36h, 1d12h.
func ParseDuration(s string) (time.Duration, error) {
	orig := s
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("empty duration")
	}
	var total time.Duration
	for s != "" {
		i := 0
		for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
			i++
		}
		if i == 0 || i == len(s) {
			d, err := time.ParseDuration(s)
			if err != nil {
				return 0, fmt.Errorf("invalid duration %q (examples: 30d, 2w, 36h)", orig)
			}
			return total + d, nil
		}
		j := i
		for j < len(s) && (s[j] < '0' || s[j] > '9') && s[j] != '.' {
			j++
		}
		unit := s[i:j]
		var n float64
		if _, err := fmt.Sscanf(s[:i], "%g", &n); err != nil {
			return 0, fmt.Errorf("invalid duration %q (examples: 30d, 2w, 36h)", orig)
		}
		switch unit {
		case "d":
			total += time.Duration(n * float64(24*time.Hour))
		case "w":
			total += time.Duration(n * float64(7*24*time.Hour))
		default:
			d, err := time.ParseDuration(s[:j])
			if err != nil {
				return 0, fmt.Errorf("invalid duration %q (examples: 30d, 2w, 36h)", orig)
			}
			total += d
		}
		s = s[j:]
	}
	if total < 0 {
		return 0, fmt.Errorf("invalid duration %q: negative", orig)
	}
	return total, nil
}
