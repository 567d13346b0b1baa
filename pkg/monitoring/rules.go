package monitoring

import (
	"bytes"
	"fmt"
	"strings"
	"time"

	"github.com/certctl/certctl/pkg/inspect"
	"sigs.k8s.io/yaml"
)

// Alert is one alerting rule. Its labels are the series' (job, instance, name, ...) plus
// severity; every alert has the annotations summary, description and fix, the certctl command
// that fixes it. Annotations use only $labels, so they render the same everywhere.
type Alert struct {
	Name string
	Expr string
	For  time.Duration
	// Severity is set on the alert; "" keeps the severity label of the finding series the
	// alert comes from (critical or warning, as inspect judged).
	Severity    string
	Summary     string
	Description string
	Fix         string
}

// Thresholds of the alerts, in seconds where PromQL compares them.
const (
	day = 86400
	// WarnWindow and CriticalWindow: a certificate expiring within 30 days warns (inspect's
	// expiring-soon), within 7 days pages.
	WarnWindow     = 30 * 24 * time.Hour
	CriticalWindow = 7 * 24 * time.Hour
	// RotationStale is how long a CA rotation may rest between two phases before it counts
	// as left half done: the phases of one rotation take minutes to hours (docs/ca-rotation.md).
	RotationStale = 24 * time.Hour
	// ScheduleGrace is how late the scheduled renewal may run (its random delay, --jitter,
	// is 1h by default; a timer catching up after boot) before it counts as not run.
	ScheduleGrace = 6 * time.Hour
)

// findingCodesWithAlert are the finding codes an alert of their own covers; every other
// warning or critical finding raises CertctlCertificateProblem.
var findingCodesWithAlert = []string{
	inspect.CodeExpired, inspect.CodeExpiringSoon, inspect.CodeCARotationDue,
	inspect.CodeSANMissing, inspect.CodeKubeletNoIPSANs, inspect.CodeKubeletIPMissing,
	inspect.CodeServedStale, inspect.CodeKubeconfigStale,
}

// kubeletNoIP is case A: the kubelet serving certificate without the node's IP.
var kubeletNoIP = inspect.CodeKubeletNoIPSANs + "|" + inspect.CodeKubeletIPMissing

// expiring is the residual time of every certificate (and kubeconfig) between lo and hi
// seconds (hi inclusive), with the certificate's kind and renewal command from
// certctl_certificate_info. A ~/.kube/config that is a stale copy of admin.conf has its own
// alert (CertctlKubeconfigStale, the same fix), so it does not also raise an expiry alert.
func expiring(sel string, hi, lo string) string {
	cond := "certctl_certificate_expiry_timestamp_seconds - time()"
	switch {
	case hi != "" && lo != "":
		cond = fmt.Sprintf("%s <= %s > %s", cond, hi, lo)
	case hi != "":
		cond = fmt.Sprintf("%s <= %s", cond, hi)
	}
	return fmt.Sprintf("(\n  (%s)\n  * on(job, instance, name) group_left(kind, remedy) certctl_certificate_info%s\n)\nunless on(job, instance, name) certctl_certificate_finding{code=%q}",
		cond, sel, inspect.CodeKubeconfigStale)
}

func finding(codeMatch string) string {
	return fmt.Sprintf("certctl_certificate_finding{code=~%q}", codeMatch)
}

// Alerts are certctl's alerting rules: the certificate states are disjoint (a certificate is
// in at most one of expired, within 7 days, within 30 days, a CA within a year), and each
// field case raises exactly one alert.
var Alerts = []Alert{
	{
		Name: "CertctlCertificateExpiresWithin30Days", For: time.Hour, Severity: "warning",
		Expr:        expiring("", fmt.Sprintf("%d * %d", 30, day), fmt.Sprintf("%d * %d", 7, day)),
		Summary:     "{{ $labels.name }} on {{ $labels.instance }} expires within 30 days",
		Description: "The {{ $labels.kind }} certificate {{ $labels.name }} ({{ $labels.path }}) on {{ $labels.instance }} expires within 30 days. The scheduled renewal renews what expires within its threshold (30d by default): if it did not, check 'certctl schedule status' on the node.",
		Fix:         "{{ $labels.remedy }}",
	},
	{
		Name: "CertctlCertificateExpiresWithin7Days", For: 10 * time.Minute, Severity: "critical",
		Expr:        expiring("", fmt.Sprintf("%d * %d", 7, day), "0"),
		Summary:     "{{ $labels.name }} on {{ $labels.instance }} expires within 7 days",
		Description: "The {{ $labels.kind }} certificate {{ $labels.name }} ({{ $labels.path }}) on {{ $labels.instance }} expires within a week; when an apiserver certificate expires, the API is down (case C).",
		Fix:         "{{ $labels.remedy }}",
	},
	{
		Name: "CertctlCertificateExpired", Severity: "critical",
		Expr:        expiring("", "0", ""),
		Summary:     "{{ $labels.name }} on {{ $labels.instance }} has expired",
		Description: "The {{ $labels.kind }} certificate {{ $labels.name }} ({{ $labels.path }}) on {{ $labels.instance }} has expired: whatever presents or verifies it fails (case C when it is the apiserver's).",
		Fix:         "{{ $labels.remedy }}",
	},
	{
		Name: "CertctlCAExpiresWithinAYear", For: time.Hour, Severity: "warning",
		Expr:        expiring(`{kind="ca"}`, fmt.Sprintf("%d * %d", 365, day), fmt.Sprintf("%d * %d", 30, day)),
		Summary:     "CA {{ $labels.name }} on {{ $labels.instance }} expires within a year",
		Description: "The CA {{ $labels.name }} ({{ $labels.path }}) on {{ $labels.instance }} expires within a year: every certificate it signed stops verifying then, and a CA cannot be renewed in place. Plan its rotation (three phases on every node).",
		Fix:         "{{ $labels.remedy }}",
	},
	{
		Name: "CertctlCARotationIncomplete", For: time.Hour, Severity: "warning",
		Expr:        fmt.Sprintf("time() - certctl_ca_rotation_phase_timestamp_seconds{phase!=\"drop\"} > %d", int(RotationStale.Seconds())),
		Summary:     "the rotation of CA {{ $labels.ca }} on {{ $labels.instance }} stopped after phase {{ $labels.phase }}",
		Description: "The rotation of CA {{ $labels.ca }} on {{ $labels.instance }} completed phase {{ $labels.phase }} more than a day ago and was not carried on: the node trusts two CAs (or signs with the new one while clients may trust only the old).",
		Fix:         "certctl ca rotate {{ $labels.ca }} --phase issue, then --phase drop (or --rollback), on every node; certctl cluster ca-rotate {{ $labels.ca }} does it cluster-wide (docs/ca-rotation.md)",
	},
	{
		Name: "CertctlServedCertificateStale", For: 10 * time.Minute,
		Expr:        finding(inspect.CodeServedStale),
		Summary:     "{{ $labels.name }} on {{ $labels.instance }} is served from an old certificate",
		Description: "A component on {{ $labels.instance }} serves another certificate than {{ $labels.name }} on disk (case D): it still runs on the old one and fails when that expires.",
		Fix:         "{{ $labels.remedy }}",
	},
	{
		Name: "CertctlAPIServerSANMissing", For: 10 * time.Minute,
		Expr:        finding(inspect.CodeSANMissing),
		Summary:     "the apiserver certificate on {{ $labels.instance }} does not cover the configured address",
		Description: "The apiserver certificate on {{ $labels.instance }} lacks an address clients dial (the load balancer, inspect --check-san): kubeadm join through it fails TLS verification (case B).",
		Fix:         "{{ $labels.remedy }}",
	},
	{
		Name: "CertctlKubeletServingCertificateWithoutNodeIP", For: 10 * time.Minute,
		Expr:        finding(kubeletNoIP),
		Summary:     "the kubelet serving certificate on {{ $labels.instance }} does not cover the node's IP",
		Description: "The kubelet on {{ $labels.instance }} serves a certificate without the node's IP (case A): metrics-server, kubectl logs and exec through a verifying apiserver fail with x509 errors.",
		Fix:         "{{ $labels.remedy }}",
	},
	{
		Name: "CertctlKubeconfigStale", For: time.Hour,
		Expr:        finding(inspect.CodeKubeconfigStale),
		Summary:     "{{ $labels.name }} on {{ $labels.instance }} holds an older client certificate than admin.conf",
		Description: "The user's ~/.kube/config on {{ $labels.instance }} is an old copy of admin.conf (its certificate may have expired): kubectl fails there while the cluster is fine.",
		Fix:         "{{ $labels.remedy }}",
	},
	{
		Name: "CertctlCertificateProblem", For: 10 * time.Minute,
		Expr: fmt.Sprintf("certctl_certificate_finding{severity=~\"warning|critical\",code!~%q}\nor\n(%s unless on(job, instance, name) %s)",
			strings.Join(append(append([]string{}, findingCodesWithAlert...), inspect.CodeKubeletSelfSigned), "|"),
			finding(inspect.CodeKubeletSelfSigned), finding(kubeletNoIP)),
		Summary:     "{{ $labels.name }} on {{ $labels.instance }}: {{ $labels.code }}",
		Description: "certctl inspect on {{ $labels.instance }} reports {{ $labels.code }} ({{ $labels.severity }}) for {{ $labels.name }}; docs/inspect.md explains every code.",
		Fix:         "{{ $labels.remedy }}",
	},
	{
		Name: "CertctlScheduledRenewalFailed", Severity: "warning",
		Expr:        "certctl_last_run_success == 0",
		Summary:     "the last certificate renewal on {{ $labels.instance }} failed",
		Description: "The last renewal run on {{ $labels.instance }} (scheduled or by hand) failed; /var/lib/certctl/renew.log on the node says why. Certificates it should have renewed keep ageing.",
		Fix:         "certctl schedule status on the node, then certctl renew all --if-expiring-within 30d",
	},
	{
		Name: "CertctlScheduledRenewalOverdue", Severity: "warning",
		Expr:        fmt.Sprintf("time() - certctl_schedule_next_run_timestamp_seconds > %d", int(ScheduleGrace.Seconds())),
		Summary:     "the scheduled certificate renewal on {{ $labels.instance }} did not run on time",
		Description: "The {{ $labels.method }} schedule on {{ $labels.instance }} was due to run more than 6 hours ago and left no run record since: the timer is disabled, cron does not run, or the machine was off.",
		Fix:         "certctl schedule status on the node (certctl schedule install to re-install it)",
	},
}

// Rule is one rule as Prometheus reads it.
type Rule struct {
	Alert       string            `json:"alert"`
	Expr        string            `json:"expr"`
	For         string            `json:"for,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations"`
}

// RuleGroup is a group of a rules file.
type RuleGroup struct {
	Name  string `json:"name"`
	Rules []Rule `json:"rules"`
}

// GroupName is the rule group's name.
const GroupName = "certctl"

// Groups are the alerts as Prometheus rule groups.
func Groups() []RuleGroup {
	g := RuleGroup{Name: GroupName}
	for _, a := range Alerts {
		r := Rule{Alert: a.Name, Expr: a.Expr, Annotations: map[string]string{
			"summary": a.Summary, "description": a.Description, "fix": a.Fix,
		}}
		if a.For > 0 {
			r.For = promDuration(a.For)
		}
		if a.Severity != "" {
			r.Labels = map[string]string{"severity": a.Severity}
		}
		g.Rules = append(g.Rules, r)
	}
	return []RuleGroup{g}
}

// promDuration writes d as Prometheus does (1h, 10m).
func promDuration(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return fmt.Sprintf("%ds", d/time.Second)
}

// RulesFile is a Prometheus rules file (rule_files:) with the alerts.
func RulesFile() ([]byte, error) {
	data, err := yaml.Marshal(map[string]any{"groups": Groups()})
	if err != nil {
		return nil, fmt.Errorf("render the rules: %w", err)
	}
	return append([]byte("# certctl's alert rules (certctl monitoring rules); docs/monitoring.md\n"), data...), nil
}

// PrometheusRuleOptions shape the PrometheusRule manifest.
type PrometheusRuleOptions struct {
	Name      string // default certctl
	Namespace string // default monitoring
	// Labels select the rule for the Prometheus operator's ruleSelector (kube-prometheus-stack:
	// release=<its release name>).
	Labels map[string]string
}

// PrometheusRule is the alerts as a monitoring.coreos.com/v1 PrometheusRule (the Prometheus
// operator, kube-prometheus-stack).
func PrometheusRule(o PrometheusRuleOptions) ([]byte, error) {
	if o.Name == "" {
		o.Name = "certctl"
	}
	if o.Namespace == "" {
		o.Namespace = "monitoring"
	}
	labels := map[string]string{"app.kubernetes.io/name": "certctl", "app.kubernetes.io/component": "monitoring"}
	for k, v := range o.Labels {
		labels[k] = v
	}
	obj := map[string]any{
		"apiVersion": "monitoring.coreos.com/v1",
		"kind":       "PrometheusRule",
		"metadata":   map[string]any{"name": o.Name, "namespace": o.Namespace, "labels": labels},
		"spec":       map[string]any{"groups": Groups()},
	}
	data, err := yaml.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("render the PrometheusRule: %w", err)
	}
	var buf bytes.Buffer
	buf.WriteString("# certctl's alert rules for the Prometheus operator (certctl monitoring rules -o prometheusrule); docs/monitoring.md\n")
	buf.Write(data)
	return buf.Bytes(), nil
}

// RulesAs is the alert rules in format "rules" (a Prometheus rules file) or "prometheusrule"
// (PrometheusRule).
func RulesAs(format string, o PrometheusRuleOptions) ([]byte, error) {
	switch format {
	case "rules":
		return RulesFile()
	case "prometheusrule":
		return PrometheusRule(o)
	}
	return nil, fmt.Errorf("unknown output format %q (want rules or prometheusrule)", format)
}
