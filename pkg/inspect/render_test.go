package inspect_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certctl/certctl/pkg/inspect"
	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/sandbox"
	"gopkg.in/yaml.v3"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestRenderTableGolden(t *testing.T) {
	tests := []struct {
		golden string
		faults []sandbox.Fault
		check  []string
	}{
		{"table-healthy.golden", nil, nil},
		{"table-faults.golden", sandbox.AllFaults, []string{"10.2.1.139"}},
	}
	for _, tc := range tests {
		t.Run(tc.golden, func(t *testing.T) {
			l := tree(t, sandbox.Options{Faults: tc.faults})
			r := inspect.Diagnose(pki.Load(l, pki.Default()), inspect.Options{Now: now, CheckSANs: tc.check})
			var buf bytes.Buffer
			if err := inspect.Render(&buf, r, "table"); err != nil {
				t.Fatal(err)
			}
			got := strings.ReplaceAll(buf.String(), l.Root, "<root>")
			path := filepath.Join("testdata", tc.golden)
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./pkg/inspect -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("table output differs from %s (rerun with -update if intended):\n%s", path, got)
			}
		})
	}
}

// TestJSONContract checks the fields later tools depend on, in JSON and in YAML.
func TestJSONContract(t *testing.T) {
	l := tree(t, sandbox.Options{Faults: sandbox.AllFaults})
	r := inspect.Diagnose(pki.Load(l, pki.Default()), inspect.Options{Now: now, CheckSANs: []string{"10.2.1.139"}})
	for _, format := range []string{"json", "yaml"} {
		t.Run(format, func(t *testing.T) {
			var buf bytes.Buffer
			if err := inspect.Render(&buf, r, format); err != nil {
				t.Fatal(err)
			}
			var doc struct {
				Certificates []map[string]any `json:"certificates" yaml:"certificates"`
			}
			var err error
			if format == "json" {
				err = json.Unmarshal(buf.Bytes(), &doc)
			} else {
				err = yaml.Unmarshal(buf.Bytes(), &doc)
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(doc.Certificates) != len(pki.Default()) {
				t.Fatalf("%d certificates, want %d", len(doc.Certificates), len(pki.Default()))
			}
			byName := map[string]map[string]any{}
			for _, c := range doc.Certificates {
				for _, k := range []string{"name", "kind", "path", "ca", "findings", "dnsNames", "ipAddresses", "status"} {
					if _, ok := c[k]; !ok {
						t.Errorf("%v: missing key %q", c["name"], k)
					}
				}
				byName[c["name"].(string)] = c
			}
			api := byName["apiserver"]
			for _, k := range []string{"subject", "issuer", "notBefore", "notAfter", "serial", "keyAlgorithm"} {
				if _, ok := api[k]; !ok {
					t.Errorf("apiserver: missing key %q", k)
				}
			}
			if na, _ := api["notAfter"].(string); format == "json" && !strings.HasSuffix(na, "Z") {
				t.Errorf("notAfter %q is not RFC 3339 UTC", na)
			}
			var codes []string
			for _, f := range api["findings"].([]any) {
				m := f.(map[string]any)
				for _, k := range []string{"severity", "code", "message", "remedy"} {
					if _, ok := m[k]; !ok {
						t.Errorf("finding %v: missing %q", m, k)
					}
				}
				codes = append(codes, m["code"].(string))
			}
			if strings.Join(codes, ",") != "expired,san-missing" {
				t.Errorf("apiserver codes %v, want expired,san-missing", codes)
			}
		})
	}
}
