package cluster

import "testing"

func TestTail(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		n        int
		want     string
	}{
		{"short", "a\nb\n", 10, "a\nb"},
		{"cut right at a line's end", "first line\nsecond\nthird", 13, "...\nsecond\nthird"},
		{"cut inside a line", "first line\nsecond\nthird", 10, "...\nthird"},
		{"cut mid-line, the rest whole lines", "0123456789\nabc\ndef", 12, "...\nabc\ndef"},
		{"the last line alone longer", "ab\n0123456789", 5, "...\n56789"},
		{"one line", "0123456789", 4, "...\n6789"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tail(tc.in, tc.n); got != tc.want {
				t.Errorf("tail(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
			}
		})
	}
}
