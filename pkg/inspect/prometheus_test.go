package inspect_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/certctl/certctl/pkg/inspect"
	"github.com/certctl/certctl/pkg/lastrun"
	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/sandbox"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// TestPrometheusParses renders a report with findings and a last run and parses it back with
// Prometheus' own text parser.
func TestPrometheusParses(t *testing.T) {
	l := tree(t, sandbox.Options{Faults: sandbox.AllFaults})
	r := inspect.Diagnose(pki.Load(l, pki.Default()), inspect.Options{Now: now, CheckSANs: []string{"10.2.1.139", "10.2.0.100"}})
	r.LastRun = &lastrun.Record{Time: now.Add(-time.Hour), Result: lastrun.ResultFailed, Error: `lock "held"`}
	var buf bytes.Buffer
	if err := inspect.Render(&buf, r, "prometheus"); err != nil {
		t.Fatal(err)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	families, err := p.TextToMetricFamilies(strings.NewReader(buf.String()))
	if err != nil {
		t.Fatalf("not valid exposition format: %v\n%s", err, buf.String())
	}
	expiry := families["certctl_certificate_expiry_timestamp_seconds"]
	if expiry == nil {
		t.Fatal("no expiry metric")
	}
	found := false
	for _, m := range expiry.Metric {
		labels := map[string]string{}
		for _, lp := range m.Label {
			labels[lp.GetName()] = lp.GetValue()
		}
		if labels["name"] == "apiserver" {
			found = true
			if labels["ca"] != "ca" || !strings.HasSuffix(labels["path"], "/etc/kubernetes/pki/apiserver.crt") || int64(m.Gauge.GetValue()) != r.Get("apiserver").NotAfter.Unix() {
				t.Errorf("apiserver expiry %v %v", labels, m.Gauge.GetValue())
			}
		}
	}
	if !found {
		t.Error("no apiserver expiry series")
	}
	codes := map[string]bool{}
	for _, m := range families["certctl_certificate_finding"].Metric {
		for _, lp := range m.Label {
			if lp.GetName() == "code" {
				codes[lp.GetValue()] = true
			}
		}
	}
	for _, c := range []string{inspect.CodeExpired, inspect.CodeSANMissing, inspect.CodeKubeletNoIPSANs, inspect.CodeKubeconfigStale} {
		if !codes[c] {
			t.Errorf("no finding series for %s", c)
		}
	}
	if v := families["certctl_last_run_success"].Metric[0].Gauge.GetValue(); v != 0 {
		t.Errorf("last run success %v, want 0", v)
	}
}
