package monitoring

import (
	"encoding/json"
	"fmt"
	"io/fs"

	"github.com/certctl/certctl/templates"
	"sigs.k8s.io/yaml"
)

// DashboardFile is the dashboard's file name, in templates/ and where Grafana reads it.
const DashboardFile = "certctl.json"

// Dashboard is the Grafana dashboard (JSON): every node's certificates by residual time, the
// nearest expiry per cluster, findings by kind, scheduled runs, CA rotations and the kubelet
// serving CSR approver's decisions.
func Dashboard() ([]byte, error) {
	data, err := fs.ReadFile(templates.FS(), "monitoring/dashboard.json")
	if err != nil {
		return nil, fmt.Errorf("read the dashboard: %w", err)
	}
	if !json.Valid(data) {
		return nil, fmt.Errorf("templates/monitoring/dashboard.json is not valid JSON")
	}
	return data, nil
}

// Query is one PromQL expression of the dashboard: a panel's target or a variable's query.
type Query struct {
	Panel string // the panel's title, or "variable NAME"
	RefID string
	Expr  string
}

// Queries lists every query of the dashboard, in panel order.
func Queries() ([]Query, error) {
	data, err := Dashboard()
	if err != nil {
		return nil, err
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				RefID string `json:"refId"`
				Expr  string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, fmt.Errorf("templates/monitoring/dashboard.json: %w", err)
	}
	var out []Query
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		q, _ := v.Query.(map[string]any)
		expr, _ := q["query"].(string)
		out = append(out, Query{Panel: "variable " + v.Name, RefID: v.Name, Expr: expr})
	}
	for _, p := range d.Panels {
		for _, t := range p.Targets {
			out = append(out, Query{Panel: p.Title, RefID: t.RefID, Expr: t.Expr})
		}
	}
	return out, nil
}

// DashboardProvider is a Grafana provisioning file (provisioning/dashboards/certctl.yaml)
// that loads the dashboards in dir, where DashboardFile goes.
func DashboardProvider(dir string) ([]byte, error) {
	if dir == "" {
		dir = "/var/lib/grafana/dashboards/certctl"
	}
	p := map[string]any{
		"apiVersion": 1,
		"providers": []map[string]any{{
			"name": "certctl", "folder": "Kubernetes", "type": "file", "disableDeletion": true,
			"allowUiUpdates": false, "updateIntervalSeconds": 60,
			"options": map[string]any{"path": dir, "foldersFromFilesStructure": false},
		}},
	}
	data, err := yaml.Marshal(p)
	if err != nil {
		return nil, err
	}
	return append([]byte("# Grafana dashboard provisioning for certctl: put "+DashboardFile+" (certctl monitoring dashboard) in "+dir+"\n"), data...), nil
}

// DashboardConfigMap is the dashboard in a ConfigMap labelled grafana_dashboard=1, which
// kube-prometheus-stack's Grafana sidecar provisions by itself.
func DashboardConfigMap(namespace string) ([]byte, error) {
	if namespace == "" {
		namespace = "monitoring"
	}
	d, err := Dashboard()
	if err != nil {
		return nil, err
	}
	cm := map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": "certctl-dashboard", "namespace": namespace,
			"labels": map[string]string{"grafana_dashboard": "1", "app.kubernetes.io/name": "certctl", "app.kubernetes.io/component": "monitoring"}},
		"data": map[string]string{DashboardFile: string(d)},
	}
	data, err := yaml.Marshal(cm)
	if err != nil {
		return nil, err
	}
	return append([]byte("# certctl's Grafana dashboard for the kube-prometheus-stack Grafana sidecar (label grafana_dashboard=1); docs/monitoring.md\n"), data...), nil
}

// DashboardAs is the dashboard in format "json" (Dashboard), "provider" (DashboardProvider of
// dir) or "configmap" (DashboardConfigMap in namespace).
func DashboardAs(format, namespace, dir string) ([]byte, error) {
	switch format {
	case "json":
		return Dashboard()
	case "provider":
		return DashboardProvider(dir)
	case "configmap":
		return DashboardConfigMap(namespace)
	}
	return nil, fmt.Errorf("unknown output format %q (want json, provider or configmap)", format)
}
