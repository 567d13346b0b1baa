package monitoring_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/certctl/certctl/pkg/inspect"
	"github.com/certctl/certctl/pkg/monitoring"
	"github.com/certctl/certctl/pkg/sandbox"
	"sigs.k8s.io/yaml"
)

// The promtool test file (promtool test rules).
type promtoolFile struct {
	RuleFiles          []string       `json:"rule_files"`
	EvaluationInterval string         `json:"evaluation_interval"`
	Tests              []promtoolTest `json:"tests"`
}

type promtoolTest struct {
	Name          string        `json:"name"`
	Interval      string        `json:"interval"`
	InputSeries   []inputSeries `json:"input_series"`
	AlertRuleTest []alertTest   `json:"alert_rule_test"`
}

type inputSeries struct {
	Series string `json:"series"`
	Values string `json:"values"`
}

type alertTest struct {
	EvalTime  string     `json:"eval_time"`
	Alertname string     `json:"alertname"`
	ExpAlerts []expAlert `json:"exp_alerts"`
}

type expAlert struct {
	ExpLabels      map[string]string `json:"exp_labels"`
	ExpAnnotations map[string]string `json:"exp_annotations"`
}

// want is an alert expected to fire: its name and the series of certctl's output it comes
// from (metric and the labels that single it out).
type want struct {
	alert  string
	metric string
	match  map[string]string
}

type evalCase struct {
	at    time.Duration
	wants []want
	// fromReport, when set, adds wants computed by inspect itself at t0+at from the tree
	// (the certificates inspect would flag then), for alerts that only time raises.
	fromReport func(t *testing.T, n node, now time.Time) []want
}

// The job and instance labels Prometheus adds when it scrapes node_exporter.
const job = "node-exporter"

// Expected alerts of the field cases, by what they are about.
func expiryWant(alert, name string) want {
	return want{alert: alert, metric: "certctl_certificate_expiry_timestamp_seconds", match: map[string]string{"name": name}}
}

func findingWant(alert, name, code string) want {
	return want{alert: alert, metric: "certctl_certificate_finding", match: map[string]string{"name": name, "code": code}}
}

var (
	caseA = findingWant("CertctlKubeletServingCertificateWithoutNodeIP", "kubelet-serving", inspect.CodeKubeletNoIPSANs)
	caseB = findingWant("CertctlAPIServerSANMissing", "apiserver", inspect.CodeSANMissing)
	caseC = expiryWant("CertctlCertificateExpired", "apiserver")
	stale = findingWant("CertctlKubeconfigStale", "user-kubeconfig", inspect.CodeKubeconfigStale)
)

// faultWants is the alert each sandbox fault raises: every fault the sandbox can make must
// have one (TestEveryFaultHasItsAlert).
var faultWants = map[sandbox.Fault]want{
	sandbox.FaultAPIServerNoLBSAN:    caseB,
	sandbox.FaultAPIServerExpired:    caseC,
	sandbox.FaultKubeletNoIPSANs:     caseA,
	sandbox.FaultStaleUserKubeconfig: stale,
}

func TestEveryFaultHasItsAlert(t *testing.T) {
	for _, f := range sandbox.AllFaults {
		if _, ok := faultWants[f]; !ok {
			t.Errorf("sandbox fault %s has no expected alert in faultWants: add its alert rule and its row", f)
		}
	}
}

// byInspect: every certificate inspect flags with code at now raises alert, if keep says so
// of its time left.
func byInspect(alert, code string, keep func(left time.Duration) bool) func(t *testing.T, n node, now time.Time) []want {
	return func(t *testing.T, n node, now time.Time) []want {
		rep := inspect.Diagnose(n.inv, inspect.Options{Now: now, CheckSANs: []string{lbIP}})
		var out []want
		for _, c := range rep.Certificates {
			for _, f := range c.Findings {
				if f.Code != code || !keep(c.NotAfter.Sub(now)) {
					continue
				}
				// The alert's fix must be the remedy inspect gives for the finding then.
				if got := inspect.RenewRemedy(c.Name); got != f.Remedy {
					t.Errorf("%s at %s: the alert's fix %q is not inspect's remedy %q", c.Name, now, got, f.Remedy)
				}
				out = append(out, expiryWant(alert, c.Name))
			}
		}
		if len(out) == 0 {
			t.Fatalf("inspect flags nothing with %s at %s: the scenario tests nothing", code, now)
		}
		return out
	}
}

func TestAlertRulesWithPromtool(t *testing.T) {
	promtool := requireTool(t, "promtool")
	all := func(time.Duration) bool { return true }
	scenarios := []struct {
		name  string
		nodes func(t *testing.T) []node
		evals []evalCase
		// interval is the series' and the rules' evaluation interval (default 1h): a day for
		// the scenarios that look a year ahead (promtool evaluates every interval up to
		// the last eval_time).
		interval time.Duration
	}{
		{name: "healthy", nodes: func(t *testing.T) []node { return faultScenario(t) }, evals: []evalCase{{at: 2 * time.Hour}}},
		{name: "healthy, a year later", interval: 24 * time.Hour, nodes: func(t *testing.T) []node { return faultScenario(t) }, evals: []evalCase{
			{at: 300 * 24 * time.Hour},
			{at: 340 * 24 * time.Hour, fromReport: byInspect("CertctlCertificateExpiresWithin30Days", inspect.CodeExpiringSoon, func(d time.Duration) bool { return d > monitoring.CriticalWindow })},
			{at: 361 * 24 * time.Hour, fromReport: byInspect("CertctlCertificateExpiresWithin7Days", inspect.CodeExpiringSoon, func(d time.Duration) bool { return d <= monitoring.CriticalWindow })},
			// The day before and the second of expiry: within a week, then expired.
			{at: 364 * 24 * time.Hour, fromReport: byInspect("CertctlCertificateExpiresWithin7Days", inspect.CodeExpiringSoon, func(d time.Duration) bool { return d <= monitoring.CriticalWindow })},
			{at: 365 * 24 * time.Hour, fromReport: byInspect("CertctlCertificateExpired", inspect.CodeExpired, all)},
			{at: 366 * 24 * time.Hour, fromReport: byInspect("CertctlCertificateExpired", inspect.CodeExpired, all)},
		}},
		{name: "fault " + string(sandbox.FaultAPIServerNoLBSAN), nodes: func(t *testing.T) []node { return faultScenario(t, sandbox.FaultAPIServerNoLBSAN) },
			evals: []evalCase{{at: 2 * time.Hour, wants: []want{caseB}}}},
		{name: "fault " + string(sandbox.FaultAPIServerExpired), nodes: func(t *testing.T) []node { return faultScenario(t, sandbox.FaultAPIServerExpired) },
			evals: []evalCase{{at: 2 * time.Hour, wants: []want{caseC}}}},
		{name: "fault " + string(sandbox.FaultKubeletNoIPSANs), nodes: func(t *testing.T) []node { return faultScenario(t, sandbox.FaultKubeletNoIPSANs) },
			evals: []evalCase{{at: 2 * time.Hour, wants: []want{caseA}}}},
		{name: "fault " + string(sandbox.FaultStaleUserKubeconfig), nodes: func(t *testing.T) []node { return faultScenario(t, sandbox.FaultStaleUserKubeconfig) },
			evals: []evalCase{{at: 2 * time.Hour, wants: []want{stale}}}},
		{name: "all faults", nodes: func(t *testing.T) []node { return faultScenario(t, sandbox.AllFaults...) },
			evals: []evalCase{{at: 2 * time.Hour, wants: []want{caseA, caseB, caseC, stale}}}},
		{name: "CAs expire in half a year", nodes: oldCAScenario, evals: []evalCase{{at: 2 * time.Hour, wants: []want{
			expiryWant("CertctlCAExpiresWithinAYear", "ca"), expiryWant("CertctlCAExpiresWithinAYear", "etcd-ca"), expiryWant("CertctlCAExpiresWithinAYear", "front-proxy-ca"),
		}}}},
		{name: "served certificate stale (case D)", nodes: servedStaleScenario, evals: []evalCase{{at: 2 * time.Hour, wants: []want{
			findingWant("CertctlServedCertificateStale", "apiserver", inspect.CodeServedStale),
		}}}},
		{name: "last renewal failed", nodes: failedRunScenario, evals: []evalCase{{at: 2 * time.Hour, wants: []want{
			{alert: "CertctlScheduledRenewalFailed", metric: "certctl_last_run_success"},
		}}}},
		{name: "scheduled renewal did not run", nodes: scheduledScenario, evals: []evalCase{
			{at: 2 * time.Hour},
			{at: 3 * 24 * time.Hour, wants: []want{{alert: "CertctlScheduledRenewalOverdue", metric: "certctl_schedule_next_run_timestamp_seconds"}}},
		}},
		{name: "a private key deleted", nodes: keyDeletedScenario, evals: []evalCase{{at: 2 * time.Hour, wants: []want{
			findingWant("CertctlCertificateProblem", "front-proxy-client", inspect.CodeKeyMissing),
		}}}},
		{name: "CA rotation left after phase trust", nodes: rotationScenario, evals: []evalCase{
			{at: 2 * time.Hour},
			{at: 3 * 24 * time.Hour, wants: []want{{alert: "CertctlCARotationIncomplete", metric: "certctl_ca_rotation_phase_timestamp_seconds", match: map[string]string{"ca": "ca", "phase": "trust"}}}},
		}},
	}
	dir := t.TempDir()
	rules, err := monitoring.RulesFile()
	if err != nil {
		t.Fatal(err)
	}
	rulesPath := filepath.Join(dir, "certctl-rules.yaml")
	if err := os.WriteFile(rulesPath, rules, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", rulesPath).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	fired := map[string]bool{}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			nodes := sc.nodes(t)
			interval := sc.interval
			if interval == 0 {
				interval = time.Hour
			}
			test := promtoolTest{Name: sc.name, Interval: promDur(interval)}
			var last time.Duration
			for _, ev := range sc.evals {
				if ev.at%interval != 0 {
					t.Fatalf("eval at %s is not a multiple of the interval %s: promtool would find no sample there", ev.at, interval)
				}
				last = max(last, ev.at)
			}
			steps := int(last/interval) + 2
			bySeries := map[string][]series{}
			for _, n := range nodes {
				for _, s := range parseProm(t, n.prom) {
					s.labels["job"], s.labels["instance"] = job, n.instance
					bySeries[s.name] = append(bySeries[s.name], s)
					test.InputSeries = append(test.InputSeries, inputSeries{Series: selector(s), Values: fmt.Sprintf("%s+0x%d", strconv.FormatFloat(s.value, 'f', -1, 64), steps)})
				}
			}
			sort.Slice(test.InputSeries, func(i, j int) bool { return test.InputSeries[i].Series < test.InputSeries[j].Series })
			for _, ev := range sc.evals {
				wants := append([]want{}, ev.wants...)
				if ev.fromReport != nil {
					for _, n := range nodes {
						wants = append(wants, ev.fromReport(t, n, t0.Add(ev.at))...)
					}
				}
				for _, a := range monitoring.Alerts {
					at := alertTest{EvalTime: promDur(ev.at), Alertname: a.Name, ExpAlerts: []expAlert{}}
					for _, w := range wants {
						if w.alert != a.Name {
							continue
						}
						fired[a.Name] = true
						at.ExpAlerts = append(at.ExpAlerts, expected(t, a, w, bySeries))
					}
					test.AlertRuleTest = append(test.AlertRuleTest, at)
				}
			}
			file := promtoolFile{RuleFiles: []string{rulesPath}, EvaluationInterval: promDur(interval), Tests: []promtoolTest{test}}
			data, err := yaml.Marshal(file)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, strings.NewReplacer(" ", "-", "(", "", ")", "").Replace(sc.name)+"-test.yaml")
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			out, err := exec.Command(promtool, "test", "rules", path).CombinedOutput()
			if err != nil {
				t.Fatalf("promtool test rules %s: %v\n%s", path, err, out)
			}
			t.Logf("promtool test rules: %d series, %d alert checks, %s", len(test.InputSeries), len(test.AlertRuleTest), time.Since(start).Round(time.Millisecond))
		})
	}
	// Every alert is raised by some scenario: none is left untested.
	for _, a := range monitoring.Alerts {
		if !fired[a.Name] {
			t.Errorf("no scenario raises %s", a.Name)
		}
	}
}

// expected is the alert w as Prometheus would fire it: the labels of the series it comes from
// (for an expiry, with kind and remedy from certctl_certificate_info), the rule's severity, and
// the annotations rendered as Prometheus renders them ($labels in text/template).
func expected(t *testing.T, a monitoring.Alert, w want, bySeries map[string][]series) expAlert {
	t.Helper()
	src := pick(t, bySeries[w.metric], w)
	labels := map[string]string{}
	for k, v := range src.labels {
		labels[k] = v
	}
	if w.metric == "certctl_certificate_expiry_timestamp_seconds" {
		info := pick(t, bySeries["certctl_certificate_info"], want{match: map[string]string{"name": labels["name"], "instance": labels["instance"]}})
		labels["kind"], labels["remedy"] = info.labels["kind"], info.labels["remedy"]
	}
	if a.Severity != "" {
		labels["severity"] = a.Severity
	}
	for k, v := range labels {
		if v == "" { // an empty label is no label to Prometheus (the CAs' ca="")
			delete(labels, k)
		}
	}
	ann := map[string]string{}
	for k, tmpl := range map[string]string{"summary": a.Summary, "description": a.Description, "fix": a.Fix} {
		tp, err := template.New(k).Option("missingkey=zero").Parse("{{$labels := .Labels}}" + tmpl)
		if err != nil {
			t.Fatalf("%s %s: %v", a.Name, k, err)
		}
		var b bytes.Buffer
		if err := tp.Execute(&b, map[string]any{"Labels": labels}); err != nil {
			t.Fatalf("%s %s: %v", a.Name, k, err)
		}
		ann[k] = b.String()
	}
	if ann["fix"] == "" || !strings.Contains(ann["fix"], "certctl") {
		t.Errorf("%s for %v: the fix %q names no certctl command", a.Name, w.match, ann["fix"])
	}
	return expAlert{ExpLabels: labels, ExpAnnotations: ann}
}

func promDur(d time.Duration) string { return fmt.Sprintf("%dh", d/time.Hour) }

func pick(t *testing.T, list []series, w want) series {
	t.Helper()
	var found []series
	for _, s := range list {
		ok := true
		for k, v := range w.match {
			if s.labels[k] != v {
				ok = false
			}
		}
		if ok {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want exactly one %s series with %v in certctl's output, found %d", w.metric, w.match, len(found))
	}
	return found[0]
}

// selector is the series in promtool's notation: name{label="value",...}.
func selector(s series) string {
	keys := make([]string, 0, len(s.labels))
	for k := range s.labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + strconv.Quote(s.labels[k])
	}
	return s.name + "{" + strings.Join(parts, ",") + "}"
}

// requireTool finds a Prometheus binary; a missing one fails the test (never skips): Debian's
// prometheus package has both (apt-get install prometheus; .ci/run installs it).
func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is not installed: apt-get install prometheus (Debian's package has prometheus and promtool 2.42)", name)
	}
	return p
}

// The PrometheusRule carries exactly the rules file's groups, with the labels asked for.
func TestPrometheusRuleMatchesRulesFile(t *testing.T) {
	file, err := monitoring.RulesFile()
	if err != nil {
		t.Fatal(err)
	}
	pr, err := monitoring.PrometheusRule(monitoring.PrometheusRuleOptions{Namespace: "mon", Labels: map[string]string{"release": "kps"}})
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []monitoring.RuleGroup `json:"groups"`
	}
	var obj struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name      string            `json:"name"`
			Namespace string            `json:"namespace"`
			Labels    map[string]string `json:"labels"`
		} `json:"metadata"`
		Spec struct {
			Groups []monitoring.RuleGroup `json:"groups"`
		} `json:"spec"`
	}
	if err := yaml.UnmarshalStrict(file, &f); err != nil {
		t.Fatalf("rules file: %v", err)
	}
	if err := yaml.UnmarshalStrict(pr, &obj); err != nil {
		t.Fatalf("PrometheusRule: %v", err)
	}
	if obj.APIVersion != "monitoring.coreos.com/v1" || obj.Kind != "PrometheusRule" || obj.Metadata.Namespace != "mon" || obj.Metadata.Labels["release"] != "kps" {
		t.Errorf("PrometheusRule header: %+v", obj)
	}
	a, _ := yaml.Marshal(f.Groups)
	b, _ := yaml.Marshal(obj.Spec.Groups)
	if string(a) != string(b) || len(f.Groups) != 1 || len(f.Groups[0].Rules) != len(monitoring.Alerts) {
		t.Errorf("the PrometheusRule's groups differ from the rules file's:\n%s\n---\n%s", a, b)
	}
	for _, r := range f.Groups[0].Rules {
		if r.Annotations["fix"] == "" || r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
			t.Errorf("%s lacks an annotation: %v", r.Alert, r.Annotations)
		}
	}
}
