// Package flagvalue holds pflag values for certctl's own kinds of flag: SAN lists, expiry
// windows such as 30d, and output formats. Each checks its value when the flag is parsed, so a
// bad value is refused before the command runs, with the flag named in pflag's words
// (`invalid argument "x" for "--san" flag: ...`), and a command's code never sees it.
package flagvalue

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/certctl/certctl/pkg/inspect"
	"github.com/certctl/certctl/pkg/pki"
)

// sans is a repeatable list of IPs and DNS names, comma-separated, normalised and without
// duplicates (pki.ParseSANs).
type sans struct {
	p       *[]string
	changed bool
}

// SANsVar defines a flag of SANs stored in p.
func SANsVar(f *pflag.FlagSet, p *[]string, name, usage string) {
	f.Var(&sans{p: p}, name, usage)
}

func (s *sans) Set(v string) error {
	prev := *s.p
	if !s.changed {
		prev = nil
	}
	parsed, err := pki.ParseSANs(append(slices.Clone(prev), v))
	if err != nil {
		return err
	}
	*s.p, s.changed = parsed, true
	return nil
}

// String is the list as pflag shows a default: "" when empty (or unbound), so that an empty
// default is not printed.
func (s *sans) String() string {
	if s.p == nil || len(*s.p) == 0 {
		return ""
	}
	return "[" + strings.Join(*s.p, ",") + "]"
}

func (s *sans) Type() string { return "strings" }

// window is a duration as inspect.ParseDuration reads it (30d, 2w, 720h), positive when asked.
type window struct {
	d        *time.Duration
	arg      *string
	positive bool
	text     string
}

// WindowVar defines a flag of a duration such as 30d stored in d and, when arg is not nil, its
// text as given in arg (what is passed on to a node). def is the default, "" for none;
// positive refuses 0 and negative values.
func WindowVar(f *pflag.FlagSet, d *time.Duration, arg *string, name, def string, positive bool, usage string) {
	w := &window{d: d, arg: arg, positive: positive}
	if def != "" {
		if err := w.Set(def); err != nil {
			panic(fmt.Sprintf("flag --%s: default %q: %v", name, def, err))
		}
	}
	f.Var(w, name, usage)
}

func (w *window) Set(v string) error {
	d, err := inspect.ParseDuration(v)
	if err != nil {
		return err
	}
	if w.positive && d <= 0 {
		return fmt.Errorf("want a positive duration such as 30d")
	}
	*w.d, w.text = d, v
	if w.arg != nil {
		*w.arg = v
	}
	return nil
}

func (w *window) String() string { return w.text }
func (w *window) Type() string   { return "duration" }

// choice is a string flag that takes one of a fixed set of values: an output format.
type choice struct {
	p       *string
	allowed []string
}

// FormatVarP defines -o/--output (or another name), one of allowed, stored in p, def first.
// Its help lists the formats.
func FormatVarP(f *pflag.FlagSet, p *string, name, short string, allowed []string, usage string) {
	*p = allowed[0]
	if usage == "" {
		usage = "output format: " + strings.Join(allowed, ", ")
	}
	f.VarP(&choice{p: p, allowed: allowed}, name, short, usage)
}

func (c *choice) Set(v string) error {
	if !slices.Contains(c.allowed, v) {
		return fmt.Errorf("unknown output format %q (want %s)", v, orList(c.allowed))
	}
	*c.p = v
	return nil
}

func (c *choice) String() string { return *c.p }
func (c *choice) Type() string   { return "string" }

// orList is "a", "a or b", "a, b or c".
func orList(s []string) string {
	if len(s) == 1 {
		return s[0]
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}
