package flagvalue

import (
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func TestSANs(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string // the list, comma-joined
		err  string
	}{
		{"none", nil, "", ""},
		{"one IP", []string{"--san", "10.2.1.139"}, "10.2.1.139", ""},
		{"repeated and comma-separated, duplicates dropped", []string{"--san", "10.2.1.139,lb.example.com", "--san", "10.2.1.139"}, "10.2.1.139,lb.example.com", ""},
		{"bad IP", []string{"--san", "10.2.1.1390"}, "", `invalid argument "10.2.1.1390" for "--san" flag`},
		{"empty in list", []string{"--san", "a.example,,b.example"}, "", "empty value"},
		{"bad name", []string{"--san", "bad_name!"}, "", "bad_name!"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			f := pflag.NewFlagSet("t", pflag.ContinueOnError)
			SANsVar(f, &got, "san", "")
			err := f.Parse(tc.args)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil || strings.Join(got, ",") != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestWindow(t *testing.T) {
	tests := []struct {
		name     string
		def      string
		positive bool
		args     []string
		want     time.Duration
		arg      string
		err      string
	}{
		{"default", "30d", false, nil, 30 * 24 * time.Hour, "30d", ""},
		{"no default, not given", "", true, nil, 0, "", ""},
		{"days", "", true, []string{"--w", "2w"}, 14 * 24 * time.Hour, "2w", ""},
		{"hours", "30d", false, []string{"--w", "720h"}, 720 * time.Hour, "720h", ""},
		{"zero refused when positive", "", true, []string{"--w", "0d"}, 0, "", "want a positive duration"},
		{"zero allowed otherwise", "30d", false, []string{"--w", "0d"}, 0, "0d", ""},
		{"bad", "", true, []string{"--w", "soon"}, 0, "", `invalid argument "soon" for "--w" flag: invalid duration`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var d time.Duration
			var arg string
			f := pflag.NewFlagSet("t", pflag.ContinueOnError)
			WindowVar(f, &d, &arg, "w", tc.def, tc.positive, "")
			err := f.Parse(tc.args)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil || d != tc.want || arg != tc.arg {
				t.Fatalf("got %s %q, %v; want %s %q", d, arg, err, tc.want, tc.arg)
			}
		})
	}
}

func TestFormat(t *testing.T) {
	tests := []struct {
		name    string
		allowed []string
		args    []string
		want    string
		err     string
	}{
		{"default is the first", []string{"text", "json"}, nil, "text", ""},
		{"short flag", []string{"text", "json"}, []string{"-o", "json"}, "json", ""},
		{"two", []string{"text", "json"}, []string{"-o", "xml"}, "", `unknown output format "xml" (want text or json)`},
		{"three", []string{"table", "json", "yaml"}, []string{"--output=xml"}, "", `(want table, json or yaml)`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got string
			f := pflag.NewFlagSet("t", pflag.ContinueOnError)
			FormatVarP(f, &got, "output", "o", tc.allowed, "")
			err := f.Parse(tc.args)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
			if u := f.Lookup("output").Usage; !strings.Contains(u, strings.Join(tc.allowed, ", ")) {
				t.Errorf("usage %q does not list the formats", u)
			}
		})
	}
}

// TestSANsHelp: a SAN list without a default shows none in the help; one with entries shows them.
func TestSANsHelp(t *testing.T) {
	var empty, set []string
	set = []string{"10.2.1.139"}
	f := pflag.NewFlagSet("t", pflag.ContinueOnError)
	SANsVar(f, &empty, "san", "a SAN")
	SANsVar(f, &set, "check-san", "a SAN to check")
	usage := f.FlagUsages()
	for _, line := range strings.Split(usage, "\n") {
		switch {
		case strings.Contains(line, "--san ") && strings.Contains(line, "(default"):
			t.Errorf("an empty SAN list shows a default: %q", line)
		case strings.Contains(line, "--check-san ") && !strings.Contains(line, "(default [10.2.1.139])"):
			t.Errorf("a SAN list with a default does not show it: %q", line)
		}
	}
}
