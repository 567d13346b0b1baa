package kubeletserving

import (
	"fmt"
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"
)

// Field is a top-level key of a KubeletConfiguration and the YAML scalar to set it to.
type Field struct {
	Key   string
	Value string // as written in YAML: true, /var/lib/kubelet/pki/x.crt
}

// EditConfig sets fields in a KubeletConfiguration document and reports whether anything
// changed. yaml.v3's node tree locates each key; the edit replaces only that value in the
// original text (or appends the key at the end of the top-level mapping), so comments, key
// order, quoting and indentation of everything else stay byte for byte. The result is parsed
// again and compared with the input: only the named keys may differ.
func EditConfig(data []byte, fields ...Field) ([]byte, bool, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, false, fmt.Errorf("not valid YAML: %w", err)
	}
	if len(doc.Content) == 0 {
		doc = yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{{Kind: yaml.MappingNode}}}
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, false, fmt.Errorf("not a KubeletConfiguration: the document is not a mapping")
	}
	if root.Style&yaml.FlowStyle != 0 {
		return nil, false, fmt.Errorf("the configuration is a flow mapping ({...}): rewrite it in block style first")
	}
	lines := strings.SplitAfter(string(data), "\n")
	var appended []string
	changed := false
	for _, f := range fields {
		val := findKey(root, f.Key)
		switch {
		case val == nil:
			appended = append(appended, fmt.Sprintf("%s: %s\n", f.Key, f.Value))
			changed = true
		case val.Kind != yaml.ScalarNode:
			return nil, false, fmt.Errorf("%s is not a scalar in the configuration", f.Key)
		case sameScalar(val, f.Value):
			// already set
		default:
			// yaml.v3 also breaks lines at a lone \r, U+0085, U+2028 and U+2029: then its
			// line numbers are not the "\n" lines here (and indexing them panicked). An edit
			// of the wrong line that stays in bounds is caught by onlyChanged.
			i, col := val.Line-1, val.Column-1
			if i >= len(lines) || col > len(lines[i]) {
				return nil, false, fmt.Errorf("%s (line %d): the document breaks lines with something other than \\n (a lone \\r, U+0085, U+2028 or U+2029), which certctl does not edit; rewrite it with \\n line ends", f.Key, val.Line)
			}
			line := lines[i]
			eol := ""
			if strings.HasSuffix(line, "\n") {
				eol = "\n"
			}
			rest := ""
			if val.LineComment != "" {
				rest = " " + val.LineComment
			}
			lines[i] = line[:val.Column-1] + f.Value + rest + eol
			changed = true
		}
	}
	if !changed {
		return data, false, nil
	}
	out := strings.Join(lines, "")
	if len(appended) > 0 {
		if out != "" && !strings.HasSuffix(out, "\n") {
			out += "\n"
		}
		out += strings.Join(appended, "")
	}
	if err := onlyChanged(data, []byte(out), fields); err != nil {
		return nil, false, fmt.Errorf("edit check: %w", err)
	}
	return []byte(out), true, nil
}

func findKey(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func sameScalar(n *yaml.Node, value string) bool {
	var want yaml.Node
	if err := yaml.Unmarshal([]byte(value), &want); err != nil || len(want.Content) == 0 {
		return false
	}
	w := want.Content[0]
	return n.Value == w.Value && n.ShortTag() == w.ShortTag()
}

// onlyChanged decodes both documents and checks that they differ in the named keys only and
// that those keys now have the requested values.
func onlyChanged(before, after []byte, fields []Field) error {
	var a, b map[string]any
	if err := yaml.Unmarshal(before, &a); err != nil {
		return err
	}
	if err := yaml.Unmarshal(after, &b); err != nil {
		return fmt.Errorf("result is not valid YAML: %w", err)
	}
	if a == nil {
		a = map[string]any{}
	}
	for _, f := range fields {
		var v any
		if err := yaml.Unmarshal([]byte(f.Value), &v); err != nil {
			return err
		}
		if !reflect.DeepEqual(b[f.Key], v) {
			return fmt.Errorf("%s is %v after the edit, want %v", f.Key, b[f.Key], v)
		}
		delete(a, f.Key)
		delete(b, f.Key)
	}
	if !reflect.DeepEqual(a, b) {
		return fmt.Errorf("other keys changed")
	}
	return nil
}

// HasValue reports whether the document sets key to value.
func HasValue(data []byte, key, value string) bool {
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil || len(doc.Content) == 0 {
		return false
	}
	v := findKey(doc.Content[0], key)
	return v != nil && v.Kind == yaml.ScalarNode && sameScalar(v, value)
}
