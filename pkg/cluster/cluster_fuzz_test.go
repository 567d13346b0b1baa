package cluster_test

// Fuzz target for what `certctl cluster status` reads back from a node Job: the log, in which
// JSONFromLogs finds `certctl inspect -o json`'s result among stderr lines, then the decoded
// report rendered in the cluster table. The seed is a real node report: a sandbox node with
// every field-case fault (pkg/sandbox, ECDSA keys to stay fast), inspected as on the node.
// `make fuzz` runs it; without -fuzz the seeds and testdata/fuzz/FuzzX run as ordinary tests.

import (
	"encoding/json"
	"io"
	"testing"

	"github.com/certctl/certctl/pkg/cluster"
	"github.com/certctl/certctl/pkg/inspect"
	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/sandbox"
)

// FuzzJSONFromLogs: any Job log never panics JSONFromLogs; what it returns is one valid JSON
// object; decoded as a node report (when it is one) it renders in every format without a
// panic, and as JSON without an error.
func FuzzJSONFromLogs(f *testing.F) {
	l, err := sandbox.Create(sandbox.Options{Dir: f.TempDir(), KeyAlgorithm: pki.AlgECDSAP256, Faults: sandbox.AllFaults})
	if err != nil {
		f.Fatal(err)
	}
	rep := inspect.Diagnose(pki.Load(l, pki.Default()), inspect.Options{CheckSANs: []string{"10.2.1.139"}})
	out, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		f.Fatal(err)
	}
	js := string(out) + "\n"
	f.Add(js)
	f.Add("certctl: a renewal interrupted on 2026-12-02T16:22:14Z (certctl renew all) had not replaced any file yet: removed 2 staged files; apiserver unchanged\n" + js + "warning: something\n")
	f.Add("{\"a\":1}{\"b\":2}")
	f.Add("error: no kubeconfig\n")
	f.Add("\n{\n")
	f.Add("")
	f.Fuzz(func(t *testing.T, logs string) {
		raw, err := cluster.JSONFromLogs(logs)
		if err != nil {
			return
		}
		if !json.Valid(raw) || len(raw) == 0 || raw[0] != '{' {
			t.Fatalf("JSONFromLogs returned %q: not one JSON object", raw)
		}
		var r inspect.Report
		if err := json.Unmarshal(raw, &r); err != nil {
			return // status reports "decode the node's report"
		}
		st := &cluster.StatusReport{Nodes: []cluster.NodeReport{{Node: "master-1", ControlPlane: true, Ready: true, Ran: true, Report: &r}}}
		st.Worst()
		for _, format := range []string{"table", "wide", "yaml"} {
			_ = st.Render(io.Discard, format)
		}
		if err := st.Render(io.Discard, "json"); err != nil {
			t.Fatalf("a decoded report does not render as JSON: %v", err)
		}
	})
}
