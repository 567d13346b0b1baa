package cli

import (
	"github.com/spf13/cobra"

	"github.com/certctl/certctl/pkg/flagvalue"
	"github.com/certctl/certctl/pkg/monitoring"
)

func newMonitoringCmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "monitoring",
		Short: "Prometheus alert rules and a Grafana dashboard on certctl's metrics",
	}
	cmd.AddCommand(newMonitoringRulesCmd(g), newMonitoringDashboardCmd(g))
	return cmd
}

func newMonitoringRulesCmd(g *Globals) *cobra.Command {
	var (
		output string
		o      monitoring.PrometheusRuleOptions
	)
	cmd := &cobra.Command{
		Use:   "rules",
		Short: "Print the alert rules: a Prometheus rules file or a PrometheusRule",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return g.write(monitoring.RulesAs(output, o))
		},
	}
	f := cmd.Flags()
	flagvalue.FormatVarP(f, &output, "output", "o", []string{"rules", "prometheusrule"}, "rules (a Prometheus rules file) or prometheusrule (the Prometheus operator's resource)")
	f.StringVar(&o.Namespace, "namespace", "monitoring", "namespace of the PrometheusRule")
	f.StringVar(&o.Name, "name", "certctl", "name of the PrometheusRule")
	f.StringToStringVar(&o.Labels, "label", nil, "KEY=VALUE label of the PrometheusRule, for the operator's ruleSelector (repeatable)")
	return cmd
}

func newMonitoringDashboardCmd(g *Globals) *cobra.Command {
	var output, namespace, dir string
	cmd := &cobra.Command{
		Use:   "dashboard",
		Short: "Print the Grafana dashboard (JSON, a provisioning file, or a ConfigMap)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return g.write(monitoring.DashboardAs(output, namespace, dir))
		},
	}
	f := cmd.Flags()
	flagvalue.FormatVarP(f, &output, "output", "o", []string{"json", "provider", "configmap"}, "json, provider or configmap")
	f.StringVar(&namespace, "namespace", "monitoring", "namespace of the ConfigMap (-o configmap)")
	f.StringVar(&dir, "dir", "/var/lib/grafana/dashboards/certctl", "directory Grafana loads the dashboard from (-o provider)")
	return cmd
}
