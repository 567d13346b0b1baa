package schedule_test

import (
	"strings"
	"testing"

	"github.com/certctl/certctl/pkg/schedule"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

// Node names longer than a CronJob name allows, with a common prefix (the usual FQDNs of one
// cluster), must still get one CronJob each.
func TestCronJobNamesUniqueAndValid(t *testing.T) {
	long := "control-plane-node.datacenter-frankfurt-1.k8s.example.com"
	nodes := []string{long, strings.Replace(long, "frankfurt-1", "frankfurt-2", 1), long + "x", "cp-1", strings.Repeat("n", 253)}
	out, err := schedule.Manifests(schedule.ManifestOptions{Nodes: nodes, Image: "registry.example.com/certctl:v1"})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{}
	var names []string
	for _, doc := range strings.Split(string(out), "\n---\n") {
		var obj struct {
			Kind     string
			Metadata struct{ Name string }
		}
		if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
			t.Fatal(err)
		}
		if obj.Kind == "CronJob" {
			names = append(names, obj.Metadata.Name)
		}
	}
	if len(names) != len(nodes) {
		t.Fatalf("%d CronJobs for %d nodes", len(names), len(nodes))
	}
	for i, name := range names {
		if len(name) > 52 {
			t.Errorf("node %s: CronJob name %q has %d characters, more than 52", nodes[i], name, len(name))
		}
		if errs := validation.IsDNS1123Label(name + "-29012345"); len(errs) > 0 {
			t.Errorf("node %s: CronJob name %q makes invalid Job names: %v", nodes[i], name, errs)
		}
		if other, dup := seen[name]; dup {
			t.Errorf("nodes %s and %s share the CronJob name %q", other, nodes[i], name)
		}
		seen[name] = nodes[i]
	}
	if _, ok := seen["certctl-renew-cp-1"]; !ok {
		t.Errorf("short node names keep their readable name: got %v", seen)
	}
}
