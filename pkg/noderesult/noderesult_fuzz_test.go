package noderesult

// Fuzz target for the result record a node Job leaves in its termination message, which the
// orchestrator reads from the pod's status through the API. Seeds: records as `kubeconfig
// set-server` and `ca rotate` write them, and their neighbours. `make fuzz` runs it; without
// -fuzz the seeds and testdata/fuzz/FuzzX run as ordinary tests.

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// FuzzParse: any termination message never panics Parse; a record it accepts is of this
// version, and written again by Write (when it fits a termination message) parses back equal.
func FuzzParse(f *testing.F) {
	f.Add(`{"version":"certctl.io/node-result/v1","command":"kubeconfig set-server","components":["kubelet"],"kubeletRestarted":true}`)
	f.Add(`{"version":"certctl.io/node-result/v1","command":"ca rotate","components":["apiserver","controller-manager","scheduler","etcd"],"kubeletRestarted":false}`)
	f.Add(`{"version":"certctl.io/node-result/v2","command":"ca rotate"}`)
	f.Add(`{"version":"certctl.io/node-result/v1","components":null}`)
	f.Add(`Error: exit status 1`)
	f.Add(``)
	f.Fuzz(func(t *testing.T, msg string) {
		r, err := Parse(msg)
		if err != nil {
			return
		}
		if r.Version != Version {
			t.Fatalf("accepted a record of version %q", r.Version)
		}
		r.Touches("kubelet")
		p := filepath.Join(t.TempDir(), "termination-log")
		if err := Write(p, *r); err != nil {
			return // more than a termination message keeps
		}
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		again, err := Parse(string(data))
		if err != nil {
			t.Fatalf("a record Write wrote does not parse: %v\n%s", err, data)
		}
		if len(r.Components) == 0 {
			r.Components = nil // omitempty
		}
		if !reflect.DeepEqual(r, again) {
			t.Fatalf("record changed in a round trip:\n%+v\n%+v", r, again)
		}
	})
}

// FuzzReadRecord: any Job log never panics ReadRecord; a record it reads, written again,
// reads back equal.
func FuzzReadRecord(f *testing.F) {
	f.Add(RecordVersion + ` inspect {"name":"cp1","items":["a","b"]}` + "\n")
	f.Add("recovered\n" + RecordVersion + ` inspect {"name":"cp1"}` + "\r\nW1203 x\n")
	f.Add(`certctl.io/node-record/v2 inspect {"name":"x"}`)
	f.Add(RecordVersion + " inspect")
	f.Add(RecordVersion + " inspect {")
	f.Add("")
	f.Fuzz(func(t *testing.T, logs string) {
		var got sample
		if err := ReadRecord(logs, KindInspect, &got); err != nil {
			return
		}
		var buf bytes.Buffer
		if err := WriteRecord(&buf, KindInspect, got); err != nil {
			t.Fatal(err)
		}
		var again sample
		if err := ReadRecord(buf.String(), KindInspect, &again); err != nil {
			t.Fatalf("a record WriteRecord wrote does not read: %v\n%s", err, buf.String())
		}
		if a, b := fmt.Sprintf("%q", got), fmt.Sprintf("%q", again); len(got.Items) > 0 && a != b || got.Name != again.Name {
			t.Fatalf("record changed in a round trip:\n%s\n%s", a, b)
		}
	})
}
