package render

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

type sample struct {
	Node    string    `json:"node"`
	When    time.Time `json:"when"`
	Items   []string  `json:"items,omitempty"`
	Skipped string    `json:"-"`
}

// TestMachine: json and yaml say the same thing with the JSON's field names and time format;
// every other format is left to the caller.
func TestMachine(t *testing.T) {
	v := sample{Node: "cp1", When: time.Date(2026, 12, 3, 22, 0, 0, 0, time.UTC), Items: []string{"a", "b"}, Skipped: "x"}
	for _, tc := range []struct {
		format string
		ok     bool
		decode func([]byte, any) error
	}{
		{"json", true, json.Unmarshal},
		{"yaml", true, yaml.Unmarshal},
		{"table", false, nil},
		{"", false, nil},
	} {
		t.Run(tc.format, func(t *testing.T) {
			var buf bytes.Buffer
			ok, err := Machine(&buf, tc.format, v)
			if err != nil || ok != tc.ok {
				t.Fatalf("ok %v, %v", ok, err)
			}
			if !ok {
				if buf.Len() != 0 {
					t.Errorf("wrote %q for a format not its own", buf.String())
				}
				return
			}
			var got map[string]any
			if err := tc.decode(buf.Bytes(), &got); err != nil {
				t.Fatalf("%s does not decode: %v\n%s", tc.format, err, buf.String())
			}
			if got["node"] != "cp1" || got["when"] != "2026-12-03T22:00:00Z" || len(got["items"].([]any)) != 2 || got["Skipped"] != nil {
				t.Errorf("%s: %v", tc.format, got)
			}
		})
	}
	if _, err := Machine(&bytes.Buffer{}, "json", map[string]any{"f": func() {}}); err == nil {
		t.Errorf("a value JSON cannot encode: no error")
	}
}
