// Package monitoring is what certctl gives the monitoring operators already run: Prometheus
// alert rules (a rules file and a PrometheusRule) built on the metrics certctl exports, a
// Grafana dashboard, the node state those metrics need beside the certificates (CA rotations,
// the schedule's next run), and Kubernetes Events on the Node for every warning or critical
// finding. It never prints: it returns data or writes to an io.Writer. See docs/monitoring.md.
package monitoring
