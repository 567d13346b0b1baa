// Package manifest reads kubeadm's static-pod manifests: a component's command-line flags
// and its probes, which say where it listens and how the kubelet checks its health.
package manifest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"
)

// Pod is the part of a static-pod manifest certctl reads.
type Pod struct {
	Path     string
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Spec struct {
		Containers []Container `yaml:"containers"`
	} `yaml:"spec"`
}

// Container is one container of the pod.
type Container struct {
	Name           string   `yaml:"name"`
	Image          string   `yaml:"image"`
	Command        []string `yaml:"command"`
	Args           []string `yaml:"args"`
	LivenessProbe  *Probe   `yaml:"livenessProbe"`
	ReadinessProbe *Probe   `yaml:"readinessProbe"`
	StartupProbe   *Probe   `yaml:"startupProbe"`
}

// Probe is an HTTP(S) probe.
type Probe struct {
	HTTPGet *struct {
		Host   string `yaml:"host"`
		Path   string `yaml:"path"`
		Port   any    `yaml:"port"`
		Scheme string `yaml:"scheme"`
	} `yaml:"httpGet"`
}

// File names of kubeadm's static pods by component.
var Files = map[string]string{
	"etcd":               "etcd.yaml",
	"apiserver":          "kube-apiserver.yaml",
	"controller-manager": "kube-controller-manager.yaml",
	"scheduler":          "kube-scheduler.yaml",
}

// Load parses a manifest file.
func Load(path string) (*Pod, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	var p Pod
	if err := yaml.Unmarshal(data, &p); err != nil {
		return nil, fmt.Errorf("%s: not a valid pod manifest: %w", path, err)
	}
	if len(p.Spec.Containers) == 0 {
		return nil, fmt.Errorf("%s: pod has no containers", path)
	}
	p.Path = path
	return &p, nil
}

// LoadComponent loads the manifest of component from dir.
func LoadComponent(dir, component string) (*Pod, error) {
	f, ok := Files[component]
	if !ok {
		return nil, fmt.Errorf("unknown component %q", component)
	}
	return Load(filepath.Join(dir, f))
}

// Flags returns the --name=value flags of the pod's first container (command and args).
// A flag given twice keeps its last value, as the component's flag parser would.
func (p *Pod) Flags() map[string]string {
	out := map[string]string{}
	c := p.Spec.Containers[0]
	args := append(append([]string{}, c.Command...), c.Args...)
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "--") {
			continue
		}
		name, val, ok := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !ok && i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
			val = args[i+1]
			i++
		}
		out[name] = val
	}
	return out
}

// HealthEndpoint returns the scheme, host, port and path the kubelet would probe: the
// startup probe, else liveness, else readiness.
func (p *Pod) HealthEndpoint() (scheme, host, port, path string, ok bool) {
	c := p.Spec.Containers[0]
	for _, pr := range []*Probe{c.StartupProbe, c.LivenessProbe, c.ReadinessProbe} {
		if pr == nil || pr.HTTPGet == nil {
			continue
		}
		h := pr.HTTPGet
		scheme = strings.ToLower(h.Scheme)
		if scheme == "" {
			scheme = "http"
		}
		return scheme, h.Host, fmt.Sprint(h.Port), h.Path, true
	}
	return "", "", "", "", false
}
