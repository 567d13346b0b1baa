// Package templates holds the files certctl renders with text/template: the sandbox's
// static-pod manifests and kubelet config, and (for scheduled renewal) systemd units, cron
// entries and Kubernetes manifests; and monitoring/dashboard.json, the Grafana dashboard, read
// as is (it is not a template: Grafana's legends use {{...}} themselves). They are embedded in
// the binary.
package templates

import (
	"bytes"
	"embed"
	"fmt"
	"io/fs"
	"text/template"
)

//go:embed all:sandbox all:schedule all:approver all:monitoring
var files embed.FS

// FS exposes the embedded templates.
func FS() fs.FS { return files }

// Render executes the template at path with data.
func Render(path string, data any) ([]byte, error) {
	raw, err := fs.ReadFile(files, path)
	if err != nil {
		return nil, fmt.Errorf("template %s: %w", path, err)
	}
	t, err := template.New(path).Option("missingkey=error").Parse(string(raw))
	if err != nil {
		return nil, fmt.Errorf("parse template %s: %w", path, err)
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, data); err != nil {
		return nil, fmt.Errorf("render template %s: %w", path, err)
	}
	return buf.Bytes(), nil
}
