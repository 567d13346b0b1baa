package cluster_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/cluster"
	"github.com/certctl/certctl/pkg/inspect"
	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/sandbox"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

func TestNodeJob(t *testing.T) {
	j, err := cluster.NodeJob("worker-1", cluster.JobOptions{Image: "localhost/certctl:dev", Run: "r1", TTL: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	ps := j.Spec.Template.Spec
	c := ps.Containers[0]
	checks := []struct {
		what string
		ok   bool
	}{
		{"nodeName pinned", ps.NodeName == "worker-1"},
		{"tolerates every taint", len(ps.Tolerations) == 1 && ps.Tolerations[0].Operator == corev1.TolerationOpExists && ps.Tolerations[0].Key == "" && ps.Tolerations[0].Effect == ""},
		{"no service-account token", ps.AutomountServiceAccountToken != nil && !*ps.AutomountServiceAccountToken},
		{"host / read-only at /host", len(ps.Volumes) == 1 && ps.Volumes[0].HostPath != nil && ps.Volumes[0].HostPath.Path == "/" &&
			len(c.VolumeMounts) == 1 && c.VolumeMounts[0].MountPath == "/host" && c.VolumeMounts[0].ReadOnly},
		{"ttlSecondsAfterFinished", j.Spec.TTLSecondsAfterFinished != nil && *j.Spec.TTLSecondsAfterFinished == 300},
		{"never retried", j.Spec.BackoffLimit != nil && *j.Spec.BackoffLimit == 0 && ps.RestartPolicy == corev1.RestartPolicyNever},
		{"image", c.Image == "localhost/certctl:dev"},
		{"runs inspect on /host", strings.Join(append(c.Command, c.Args...), " ") == "/usr/local/bin/certctl --root /host inspect -o json"},
		{"read-only root fs", c.SecurityContext != nil && *c.SecurityContext.ReadOnlyRootFilesystem},
		{"labels", j.Labels[cluster.LabelNode] == "worker-1" && j.Labels[cluster.LabelRun] == "r1"},
	}
	for _, ck := range checks {
		if !ck.ok {
			t.Errorf("%s: %+v", ck.what, j)
		}
	}
	for _, bad := range []cluster.JobOptions{{Run: "r1"}, {Image: "x", Run: "Not_A_Label"}, {Image: "x"}} {
		if _, err := cluster.NodeJob("n", bad); err == nil {
			t.Errorf("NodeJob(%+v) accepted", bad)
		}
	}
}

func TestJobName(t *testing.T) {
	long := strings.Repeat("very-long-node-name.", 12) + "example.com"
	seen := map[string]bool{}
	for _, node := range []string{"master-1", "ip-10-2-1-151.eu-west-1.compute.internal", long, long + "x", "UPPER_case"} {
		n := cluster.JobName("r1", node)
		if errs := validation.IsDNS1123Label(n); len(errs) > 0 {
			t.Errorf("JobName(%q) = %q: %v", node, n, errs)
		}
		if seen[n] {
			t.Errorf("JobName(%q) = %q collides", node, n)
		}
		seen[n] = true
	}
}

// report renders a real inspect report of a sandbox node as the Job's log would hold it.
func report(t *testing.T, faults ...sandbox.Fault) []byte {
	t.Helper()
	l := testenv.SandboxNode(t, faults...)
	r := inspect.Diagnose(pki.Load(l, pki.Default()), inspect.Options{})
	var buf bytes.Buffer
	if err := inspect.Render(&buf, r, "json"); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestParseResult(t *testing.T) {
	healthy, faulty := report(t), report(t, sandbox.FaultAPIServerExpired)
	tests := []struct {
		name   string
		logs   []byte
		code   int
		state  string
		reason string
	}{
		{"healthy", healthy, 0, cluster.StateOK, ""},
		{"critical, exit 2", faulty, 2, cluster.StateCritical, ""},
		{"a warning line before the report", append([]byte("warning: last run record unreadable\n"), healthy...), 0, cluster.StateOK, ""},
		{"exit 3: an error", []byte("error: --root /host: no such file"), 3, cluster.StateNotRun, "exited 3"},
		{"not JSON", []byte("exec /usr/local/bin/certctl: no such file or directory"), 0, cluster.StateNotRun, "no report"},
		{"JSON but not a report", []byte(`{"kind":"Status"}`), 0, cluster.StateNotRun, "not an inspect report"},
		{"truncated", healthy[:len(healthy)/2], 0, cluster.StateNotRun, "not an inspect report"},
		{"empty", nil, 0, cluster.StateNotRun, "(empty)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := cluster.ParseResult("n1", tc.logs, tc.code)
			if r.State != tc.state || !strings.Contains(r.Reason, tc.reason) || r.Node != "n1" {
				t.Errorf("ParseResult = %+v, want state %s reason ~%q", r, tc.state, tc.reason)
			}
			if tc.state != cluster.StateNotRun && (r.Report == nil || r.Role != "control-plane") {
				t.Errorf("no report or role: %+v", r)
			}
		})
	}
}

func TestAggregate(t *testing.T) {
	tests := []struct {
		name   string
		states []string
		worst  string
	}{
		{"all ok", []string{"ok", "ok"}, "ok"},
		{"one warning", []string{"ok", "warning"}, "warning"},
		{"critical beats warning", []string{"warning", "critical", "ok"}, "critical"},
		{"a node not run is never ok", []string{"ok", "not-run"}, "not-run"},
		{"no nodes", nil, "ok"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var in []cluster.NodeResult
			for i, s := range tc.states {
				in = append(in, cluster.NodeResult{Node: string(rune('z' - i)), State: s})
			}
			st := cluster.Aggregate(in)
			if st.Worst != tc.worst {
				t.Errorf("worst %s, want %s", st.Worst, tc.worst)
			}
			total := 0
			for _, n := range st.Counts {
				total += n
			}
			if total != len(tc.states) || len(st.Nodes) != len(tc.states) {
				t.Errorf("counts %v for %d nodes", st.Counts, len(tc.states))
			}
			for i := 1; i < len(st.Nodes); i++ {
				if st.Nodes[i-1].Node > st.Nodes[i].Node {
					t.Errorf("nodes not sorted: %v", st.Nodes)
				}
			}
		})
	}
}
