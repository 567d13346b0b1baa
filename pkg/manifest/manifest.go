// Package manifest reads kubeadm's static-pod manifests: a component's command-line flags
// and its probes, which say where it listens and how the kubelet checks its health.
package manifest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
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
	Ports          []Port   `yaml:"ports"`
	LivenessProbe  *Probe   `yaml:"livenessProbe"`
	ReadinessProbe *Probe   `yaml:"readinessProbe"`
	StartupProbe   *Probe   `yaml:"startupProbe"`
}

// Port is one of a container's named ports. kubeadm 1.34 and later name the port its probes
// use (`ports: [{name: probe-port, containerPort: 2381}]`, probes `port: probe-port`).
type Port struct {
	Name          string `yaml:"name"`
	ContainerPort int    `yaml:"containerPort"`
	HostPort      int    `yaml:"hostPort"`
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
	return Parse(path, data)
}

// Parse parses the manifest data read from path (named in errors).
func Parse(path string, data []byte) (*Pod, error) {
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

// Endpoint is where the kubelet probes a component's health.
type Endpoint struct {
	Scheme string // "http" or "https"
	Host   string // "" when the probe names none (the pod's IP: the node's, for host-network pods)
	Port   int
	Path   string
}

// ErrNoHTTPProbe is returned by HealthEndpoint for a container without an HTTP probe.
var ErrNoHTTPProbe = errors.New("no HTTP probe")

// HealthEndpoint returns where the kubelet would probe the first container: its startup
// probe, else liveness, else readiness. A probe's port is a number or the name of one of the
// container's ports (kubeadm 1.34 and later write `port: probe-port`), resolved as the kubelet
// resolves it; a name the container does not declare is an error naming the manifest.
func (p *Pod) HealthEndpoint() (Endpoint, error) {
	c := p.Spec.Containers[0]
	for _, pr := range []*Probe{c.StartupProbe, c.LivenessProbe, c.ReadinessProbe} {
		if pr == nil || pr.HTTPGet == nil {
			continue
		}
		h := pr.HTTPGet
		e := Endpoint{Scheme: strings.ToLower(h.Scheme), Host: h.Host, Path: h.Path}
		if e.Scheme == "" {
			e.Scheme = "http"
		}
		port, err := c.resolvePort(h.Port)
		if err != nil {
			return Endpoint{}, fmt.Errorf("%s: container %s: probe port: %w", p.Path, c.Name, err)
		}
		e.Port = port
		return e, nil
	}
	return Endpoint{}, fmt.Errorf("%s: container %s: %w", p.Path, c.Name, ErrNoHTTPProbe)
}

// resolvePort turns a probe's port (an int, or a port name: YAML gives either) into a number.
func (c Container) resolvePort(v any) (int, error) {
	switch port := v.(type) {
	case int:
		if port < 1 || port > 65535 {
			return 0, fmt.Errorf("%d is not a port number", port)
		}
		return port, nil
	case string:
		if n, err := strconv.Atoi(port); err == nil {
			return c.resolvePort(n)
		}
		for _, cp := range c.Ports {
			if cp.Name == port && cp.ContainerPort > 0 {
				return c.resolvePort(cp.ContainerPort)
			}
		}
		return 0, fmt.Errorf("%q names none of the container's ports (%s); certctl does not recognise this manifest's shape", port, c.portNames())
	case nil:
		return 0, errors.New("missing")
	default:
		return 0, fmt.Errorf("%v (%T) is neither a number nor a port name; certctl does not recognise this manifest's shape", v, v)
	}
}

func (c Container) portNames() string {
	if len(c.Ports) == 0 {
		return "it declares none"
	}
	names := make([]string, 0, len(c.Ports))
	for _, cp := range c.Ports {
		names = append(names, fmt.Sprintf("%s=%d", cp.Name, cp.ContainerPort))
	}
	return strings.Join(names, ", ")
}

// FlagChange is one flag SetFlags rewrote.
type FlagChange struct {
	Flag string // without the dashes: client-ca-file
	Old  string
	New  string
}

// SetFlags sets the value of flags (name without dashes -> value) written as --name=value in
// the first container's command or args. Flags the manifest does not carry are left out (not
// added: the caller decides which flags a component has). yaml.v3's node tree locates each
// item and only that item's text is replaced, so comments, order and the rest of the file
// stay byte for byte; the result is parsed again and checked. It returns the new content and
// the flags that changed (none: data is returned as is).
func SetFlags(data []byte, flags map[string]string) ([]byte, []FlagChange, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, nil, fmt.Errorf("not valid YAML: %w", err)
	}
	c := firstContainer(&doc)
	if c == nil {
		return nil, nil, fmt.Errorf("not a pod manifest with a container")
	}
	var edits []ScalarEdit
	var changes []FlagChange
	for _, key := range []string{"command", "args"} {
		seq := MapValue(c, key)
		if seq == nil || seq.Kind != yaml.SequenceNode {
			continue
		}
		for _, item := range seq.Content {
			if item.Kind != yaml.ScalarNode || !strings.HasPrefix(item.Value, "--") {
				continue
			}
			name, old, ok := strings.Cut(strings.TrimPrefix(item.Value, "--"), "=")
			val, want := flags[name]
			if !ok || !want || old == val {
				continue
			}
			edits = append(edits, ScalarEdit{Node: item, Value: "--" + name + "=" + val})
			changes = append(changes, FlagChange{Flag: name, Old: old, New: val})
		}
	}
	if len(changes) == 0 {
		return data, nil, nil
	}
	out, err := EditScalars(data, edits)
	if err != nil {
		return nil, nil, err
	}
	var p Pod
	if err := yaml.Unmarshal(out, &p); err != nil || len(p.Spec.Containers) == 0 {
		return nil, nil, fmt.Errorf("edit check: the result is not a pod manifest: %v", err)
	}
	got := p.Flags()
	for _, ch := range changes {
		if got[ch.Flag] != ch.New {
			return nil, nil, fmt.Errorf("edit check: --%s is %q after the edit, want %q", ch.Flag, got[ch.Flag], ch.New)
		}
	}
	return out, changes, nil
}

func firstContainer(doc *yaml.Node) *yaml.Node {
	if len(doc.Content) == 0 {
		return nil
	}
	spec := MapValue(doc.Content[0], "spec")
	if spec == nil {
		return nil
	}
	cs := MapValue(spec, "containers")
	if cs == nil || cs.Kind != yaml.SequenceNode || len(cs.Content) == 0 || cs.Content[0].Kind != yaml.MappingNode {
		return nil
	}
	return cs.Content[0]
}

// MapValue returns the value node of key in the mapping node m, or nil.
func MapValue(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// ScalarEdit replaces the text of one scalar node of a document parsed with yaml.v3.
type ScalarEdit struct {
	Node  *yaml.Node
	Value string
}

// EditScalars replaces each edit's scalar in data (the text its node was parsed from) by its
// new value, in the node's quoting style, and leaves every other byte alone. It refuses a
// scalar whose text is not exactly its value on one line (escapes, folding, block scalars)
// and a value that would need quoting in plain style.
func EditScalars(data []byte, edits []ScalarEdit) ([]byte, error) {
	lines := strings.SplitAfter(string(data), "\n")
	type span struct {
		line, col int
		old, new  string
	}
	var spans []span
	for _, e := range edits {
		n := e.Node
		if n.Kind != yaml.ScalarNode {
			return nil, fmt.Errorf("line %d: not a scalar", n.Line)
		}
		if strings.ContainsAny(e.Value, "'\"\\\n#,[]{}") || strings.Contains(e.Value, ": ") {
			return nil, fmt.Errorf("value %q needs quoting; refusing to write it", e.Value)
		}
		q := ""
		switch n.Style {
		case 0, yaml.FlowStyle:
		case yaml.DoubleQuotedStyle:
			q = `"`
		case yaml.SingleQuotedStyle:
			q = "'"
		default:
			return nil, fmt.Errorf("line %d: %q is written in a YAML style certctl does not edit; write it as a plain scalar", n.Line, n.Value)
		}
		// The scalar's text must be exactly its value: then replacing that span changes this
		// scalar and nothing else.
		old := q + n.Value + q
		i, col := n.Line-1, n.Column-1
		if i >= len(lines) || col+len(old) > len(lines[i]) || lines[i][col:col+len(old)] != old {
			return nil, fmt.Errorf("line %d: %q is written across lines or with escapes; write it as a plain scalar", n.Line, n.Value)
		}
		spans = append(spans, span{i, col, old, q + e.Value + q})
	}
	// Right to left within a line, so earlier columns stay valid.
	slices.SortFunc(spans, func(a, b span) int {
		if a.line != b.line {
			return a.line - b.line
		}
		return b.col - a.col
	})
	for _, s := range spans {
		l := lines[s.line]
		lines[s.line] = l[:s.col] + s.new + l[s.col+len(s.old):]
	}
	out := []byte(strings.Join(lines, ""))
	if err := checkEdits(data, out, edits); err != nil {
		return nil, err
	}
	return out, nil
}

// checkEdits parses the document before and after EditScalars and checks that the edited
// scalars read back as their new values and that nothing else changed: the same tree, every
// other scalar the same. It catches what the text checks above cannot see: a value that
// plain style reads otherwise (" ", "*x", "- x"), lines yaml.v3 breaks where "\n" does not
// ("\r", U+2028), columns it counts in characters, not bytes.
func checkEdits(before, after []byte, edits []ScalarEdit) error {
	var a, b yaml.Node
	if err := yaml.Unmarshal(before, &a); err != nil {
		return fmt.Errorf("edit check: %w", err)
	}
	if err := yaml.Unmarshal(after, &b); err != nil {
		return fmt.Errorf("edit check: the edited document is not valid YAML: %w", err)
	}
	want := map[[2]int]string{}
	for _, e := range edits {
		want[[2]int{e.Node.Line, e.Node.Column}] = e.Value
	}
	var walk func(x, y *yaml.Node) error
	walk = func(x, y *yaml.Node) error {
		if x.Kind != y.Kind || len(x.Content) != len(y.Content) {
			return fmt.Errorf("edit check: line %d: the edit changes the document's structure; write the value as a plain scalar", x.Line)
		}
		if x.Kind == yaml.ScalarNode {
			v, edited := want[[2]int{x.Line, x.Column}]
			if !edited {
				v = x.Value
			}
			if y.Value != v {
				return fmt.Errorf("edit check: line %d: %q would read back as %q; refusing to write it", x.Line, v, y.Value)
			}
		}
		for i := range x.Content {
			if err := walk(x.Content[i], y.Content[i]); err != nil {
				return err
			}
		}
		return nil
	}
	return walk(&a, &b)
}
