package inspect

import (
	"fmt"
	"io"
	"sort"
	"strings"
)

// RenderPrometheus writes r in the Prometheus text exposition format, for node_exporter's
// textfile collector (docs/monitoring.md has every metric and the alert rules built on them):
//
//	certctl_certificate_expiry_timestamp_seconds{name,path,ca}   NotAfter, Unix seconds
//	certctl_certificate_info{name,kind,path,ca,remedy}           1 per certificate; remedy renews it
//	certctl_certificate_finding{name,code,severity,remedy}       1 per finding
//	certctl_findings{severity}                                   count per severity
//	certctl_inspect_timestamp_seconds                            when inspect ran
//	certctl_last_run_timestamp_seconds, certctl_last_run_success  the last renewal run
//	certctl_ca_rotation_phase_timestamp_seconds{ca,phase}        a CA rotation's last phase
//	certctl_key_pair_written_timestamp_seconds{name,path}         when sa.pub was written (its age)
//	certctl_schedule_next_run_timestamp_seconds{method}          when the schedule was due next
func RenderPrometheus(w io.Writer, r *Report) error {
	var b strings.Builder
	b.WriteString("# HELP certctl_certificate_expiry_timestamp_seconds When the certificate expires (NotAfter), in seconds since the epoch.\n")
	b.WriteString("# TYPE certctl_certificate_expiry_timestamp_seconds gauge\n")
	for _, c := range r.Certificates {
		if c.NotAfter == nil {
			continue
		}
		fmt.Fprintf(&b, "certctl_certificate_expiry_timestamp_seconds{name=%s,path=%s,ca=%s} %d\n", q(c.Name), q(c.Path), q(c.CA), c.NotAfter.Unix())
	}
	// An info metric (value 1), joined by name where an alert needs the kind or the command
	// that renews the certificate: the expiry series keep their labels.
	b.WriteString("# HELP certctl_certificate_info Each certificate with an expiry: its kind (ca, leaf, kubeconfig, kubelet-serving, kubelet-client) and the certctl command that renews it (remedy).\n")
	b.WriteString("# TYPE certctl_certificate_info gauge\n")
	for _, c := range r.Certificates {
		if c.NotAfter == nil {
			continue
		}
		fmt.Fprintf(&b, "certctl_certificate_info{name=%s,kind=%s,path=%s,ca=%s,remedy=%s} 1\n", q(c.Name), q(c.Kind), q(c.Path), q(c.CA), q(RenewRemedy(c.Name)))
	}
	b.WriteString("# HELP certctl_certificate_finding A finding of certctl inspect (1 while it holds), with the command that fixes it (remedy); see docs/inspect.md for the codes.\n")
	b.WriteString("# TYPE certctl_certificate_finding gauge\n")
	counts := map[Severity]int{SevInfo: 0, SevWarning: 0, SevCritical: 0}
	seen := map[string]bool{}
	for _, c := range r.Certificates {
		for _, f := range c.Findings {
			counts[f.Severity]++
			line := fmt.Sprintf("certctl_certificate_finding{name=%s,code=%s,severity=%s,remedy=%s} 1\n", q(c.Name), q(f.Code), q(string(f.Severity)), q(f.Remedy))
			if !seen[line] { // the same finding twice on one row is one series
				seen[line] = true
				b.WriteString(line)
			}
		}
	}
	b.WriteString("# HELP certctl_findings Number of findings by severity.\n")
	b.WriteString("# TYPE certctl_findings gauge\n")
	sevs := []string{}
	for s := range counts {
		sevs = append(sevs, string(s))
	}
	sort.Strings(sevs)
	for _, s := range sevs {
		fmt.Fprintf(&b, "certctl_findings{severity=%s} %d\n", q(s), counts[Severity(s)])
	}
	b.WriteString("# HELP certctl_inspect_timestamp_seconds When certctl inspect produced these metrics.\n")
	b.WriteString("# TYPE certctl_inspect_timestamp_seconds gauge\n")
	fmt.Fprintf(&b, "certctl_inspect_timestamp_seconds %d\n", r.GeneratedAt.Unix())
	if lr := r.LastRun; lr != nil {
		success := 0
		if lr.Success() {
			success = 1
		}
		b.WriteString("# HELP certctl_last_run_timestamp_seconds When the last renewal run (scheduled or applied) happened.\n")
		b.WriteString("# TYPE certctl_last_run_timestamp_seconds gauge\n")
		fmt.Fprintf(&b, "certctl_last_run_timestamp_seconds %d\n", lr.Time.Unix())
		b.WriteString("# HELP certctl_last_run_success 1 if the last renewal run succeeded (renewed or nothing to do), 0 if it failed.\n")
		b.WriteString("# TYPE certctl_last_run_success gauge\n")
		fmt.Fprintf(&b, "certctl_last_run_success %d\n", success)
		b.WriteString("# HELP certctl_last_run_renewed_certificates How many certificates the last renewal run renewed.\n")
		b.WriteString("# TYPE certctl_last_run_renewed_certificates gauge\n")
		fmt.Fprintf(&b, "certctl_last_run_renewed_certificates %d\n", len(lr.Renewed))
	}
	if len(r.CARotations) > 0 {
		b.WriteString("# HELP certctl_ca_rotation_phase_timestamp_seconds When the CA rotation on this node completed its last phase (phase: trust, issue, drop); a rotation is finished at drop.\n")
		b.WriteString("# TYPE certctl_ca_rotation_phase_timestamp_seconds gauge\n")
		for _, rot := range r.CARotations {
			fmt.Fprintf(&b, "certctl_ca_rotation_phase_timestamp_seconds{ca=%s,phase=%s} %d\n", q(rot.CA), q(rot.Phase), rot.Time.Unix())
		}
	}
	var pairs []Certificate
	for _, c := range r.Certificates {
		if c.KeyWritten != nil {
			pairs = append(pairs, c)
		}
	}
	if len(pairs) > 0 {
		b.WriteString("# HELP certctl_key_pair_written_timestamp_seconds When a key pair without a certificate (the service-account key, sa) was written: nothing expires it, its age is what a rotation policy checks.\n")
		b.WriteString("# TYPE certctl_key_pair_written_timestamp_seconds gauge\n")
		for _, c := range pairs {
			fmt.Fprintf(&b, "certctl_key_pair_written_timestamp_seconds{name=%s,path=%s} %d\n", q(c.Name), q(c.Path), c.KeyWritten.Unix())
		}
	}
	if s := r.Schedule; s != nil {
		b.WriteString("# HELP certctl_schedule_next_run_timestamp_seconds When the scheduled renewal installed on this node was due to run after its last recorded run (or its installation).\n")
		b.WriteString("# TYPE certctl_schedule_next_run_timestamp_seconds gauge\n")
		fmt.Fprintf(&b, "certctl_schedule_next_run_timestamp_seconds{method=%s} %d\n", q(s.Method), s.NextRun.Unix())
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// q quotes a label value as the exposition format wants (\\, \", \n escaped).
func q(s string) string {
	s = strings.ReplaceAll(s, `\`, `\\`)
	s = strings.ReplaceAll(s, `"`, `\"`)
	s = strings.ReplaceAll(s, "\n", `\n`)
	return `"` + s + `"`
}
