package cluster_test

// Fuzz target for what `certctl cluster status` reads back from a node Job: the log, in which
// JobResult.Record finds `certctl --record inspect`'s record among stderr lines, then the
// decoded report rendered in the cluster table. The seed is a real node report: a sandbox node with
// every field-case fault (pkg/sandbox, ECDSA keys to stay fast), inspected as on the node.
// `make fuzz` runs it; without -fuzz the seeds and testdata/fuzz/FuzzX run as ordinary tests.

import (
	"io"
	"strings"
	"testing"

	"github.com/certctl/certctl/pkg/cluster"
	"github.com/certctl/certctl/pkg/inspect"
	"github.com/certctl/certctl/pkg/noderesult"
	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/sandbox"
)

// FuzzStatusRecord: any Job log never panics JobResult.Record; a node report it decodes renders
// in every format without a panic, and as JSON without an error.
func FuzzStatusRecord(f *testing.F) {
	l, err := sandbox.Create(sandbox.Options{Dir: f.TempDir(), KeyAlgorithm: pki.AlgECDSAP256, Faults: sandbox.AllFaults})
	if err != nil {
		f.Fatal(err)
	}
	rep := inspect.Diagnose(pki.Load(l, pki.Default()), inspect.Options{CheckSANs: []string{"10.2.1.139"}})
	var rec strings.Builder
	if err := noderesult.WriteRecord(&rec, noderesult.KindInspect, rep); err != nil {
		f.Fatal(err)
	}
	f.Add(rec.String())
	f.Add("certctl: a renewal interrupted on 2026-12-02T16:22:14Z (certctl renew all) had not replaced any file yet: removed 2 staged files; apiserver unchanged\n" + rec.String() + "warning: something\n")
	f.Add(noderesult.RecordVersion + " inspect {\"certificates\":[{}],\"a\":1}{\"b\":2}")
	f.Add("error: no kubeconfig\n")
	f.Add(noderesult.RecordVersion + " inspect \n{\n")
	f.Add("")
	f.Fuzz(func(t *testing.T, logs string) {
		var r inspect.Report
		if err := (cluster.JobResult{Logs: logs}).Record(noderesult.KindInspect, &r); err != nil {
			return // status reports the error as the node's problem
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
