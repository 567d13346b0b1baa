package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"

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
		labels []string
	)
	cmd := &cobra.Command{
		Use:   "rules",
		Short: "Print the alert rules: a Prometheus rules file or a PrometheusRule",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			var (
				out []byte
				err error
			)
			switch output {
			case "rules":
				out, err = monitoring.RulesFile()
			case "prometheusrule":
				if o.Labels, err = parseLabels(labels); err != nil {
					return fmt.Errorf("--label: %w", err)
				}
				out, err = monitoring.PrometheusRule(o)
			default:
				return fmt.Errorf("unknown output format %q (want rules or prometheusrule)", output)
			}
			if err != nil {
				return err
			}
			_, err = g.Streams.Out.Write(out)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVarP(&output, "output", "o", "rules", "rules (a Prometheus rules file) or prometheusrule (the Prometheus operator's resource)")
	f.StringVar(&o.Namespace, "namespace", "monitoring", "namespace of the PrometheusRule")
	f.StringVar(&o.Name, "name", "certctl", "name of the PrometheusRule")
	f.StringSliceVar(&labels, "label", nil, "KEY=VALUE label of the PrometheusRule, for the operator's ruleSelector (repeatable)")
	return cmd
}

func newMonitoringDashboardCmd(g *Globals) *cobra.Command {
	var output, namespace, dir string
	cmd := &cobra.Command{
		Use:   "dashboard",
		Short: "Print the Grafana dashboard (JSON, a provisioning file, or a ConfigMap)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			var (
				out []byte
				err error
			)
			switch output {
			case "json":
				out, err = monitoring.Dashboard()
			case "provider":
				out, err = monitoring.DashboardProvider(dir)
			case "configmap":
				out, err = monitoring.DashboardConfigMap(namespace)
			default:
				return fmt.Errorf("unknown output format %q (want json, provider or configmap)", output)
			}
			if err != nil {
				return err
			}
			_, err = g.Streams.Out.Write(out)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVarP(&output, "output", "o", "json", "json, provider or configmap")
	f.StringVar(&namespace, "namespace", "monitoring", "namespace of the ConfigMap (-o configmap)")
	f.StringVar(&dir, "dir", "/var/lib/grafana/dashboards/certctl", "directory Grafana loads the dashboard from (-o provider)")
	return cmd
}

// parseLabels reads KEY=VALUE pairs.
func parseLabels(list []string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range list {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("%q: want KEY=VALUE", kv)
		}
		out[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return out, nil
}

// recordNodeEvents inspects the node and records its warning and critical findings as Events
// on the Node named node (renew --events-node, the CronJobs), with the client --lease uses
// (--kubeconfig, else the pod's service account, else the node's admin.conf). A failure is a
// warning: the renewal's outcome stands.
func recordNodeEvents(ctx context.Context, g *Globals, kubeconfig, node string) {
	rc, err := g.where(kubeconfig).PodConfig()
	var evs []monitoring.NodeEvent
	if err == nil {
		var cs kubernetes.Interface
		if cs, err = kubernetes.NewForConfig(rc); err == nil {
			evs, err = monitoring.RecordNode(ctx, cs, g.Layout(), node)
		}
	}
	if err != nil {
		fmt.Fprintf(g.Streams.ErrOut, "warning: events on node %s: %v\n", node, err)
		return
	}
	fmt.Fprintf(g.Streams.ErrOut, "recorded %d event(s) on node %s\n", len(evs), node)
}
