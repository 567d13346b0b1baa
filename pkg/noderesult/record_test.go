package noderesult

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

type sample struct {
	Name  string   `json:"name"`
	Items []string `json:"items,omitempty"`
}

// TestReadRecord: the record is found among what else a Job's log holds (the recovery notes
// certctl writes to stderr, client-go's warnings), the last of its kind wins, and anything
// else is refused with a typed error rather than read.
func TestReadRecord(t *testing.T) {
	var rec bytes.Buffer
	if err := WriteRecord(&rec, KindInspect, sample{Name: "cp1\nwith a newline", Items: []string{"a"}}); err != nil {
		t.Fatal(err)
	}
	if strings.Count(rec.String(), "\n") != 1 {
		t.Fatalf("a record is one line: %q", rec.String())
	}
	for _, tc := range []struct {
		name, logs string
		want       string // the record's Name; "" when an error is wanted
		noRecord   bool
		version    string // a *RecordVersionError with this version
	}{
		{name: "alone", logs: rec.String(), want: "cp1\nwith a newline"},
		{name: "among other lines", logs: "recovered: put back /etc/kubernetes/manifests/etcd.yaml\n" + rec.String() + "W1203 warning\n", want: "cp1\nwith a newline"},
		{name: "CRLF", logs: strings.ReplaceAll(rec.String(), "\n", "\r\n"), want: "cp1\nwith a newline"},
		{name: "the last wins", logs: rec.String() + RecordVersion + ` inspect {"name":"later"}` + "\n", want: "later"},
		{name: "another kind only", logs: RecordVersion + ` ca-show {"name":"x"}` + "\n", noRecord: true},
		{name: "none", logs: "Error: unknown flag: --record\n", noRecord: true},
		{name: "empty", logs: "", noRecord: true},
		{name: "another version", logs: `certctl.io/node-record/v2 inspect {"name":"x"}` + "\n", version: "certctl.io/node-record/v2"},
		{name: "another version last", logs: rec.String() + `certctl.io/node-record/v2 inspect {"name":"x"}` + "\n", version: "certctl.io/node-record/v2"},
		{name: "not JSON", logs: RecordVersion + " inspect {\n"},
		{name: "the record's text in a person's line", logs: "the node said: " + rec.String(), noRecord: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got sample
			err := ReadRecord(tc.logs, KindInspect, &got)
			var ve *RecordVersionError
			switch {
			case tc.want != "":
				if err != nil || got.Name != tc.want {
					t.Errorf("got %+v, %v; want name %q", got, err, tc.want)
				}
			case tc.noRecord:
				if !errors.Is(err, ErrNoRecord) {
					t.Errorf("got %v, want ErrNoRecord", err)
				}
			case tc.version != "":
				if !errors.As(err, &ve) || ve.Got != tc.version || ve.Kind != KindInspect {
					t.Errorf("got %v, want a *RecordVersionError for %s", err, tc.version)
				}
			default:
				if err == nil || errors.Is(err, ErrNoRecord) || errors.As(err, &ve) {
					t.Errorf("got %v, want a decoding error", err)
				}
			}
		})
	}
}

// TestWriteRecordKind: a kind that would not read back as one word is refused.
func TestWriteRecordKind(t *testing.T) {
	for _, kind := range []string{"", "two words", "line\nbreak"} {
		if err := WriteRecord(&bytes.Buffer{}, kind, sample{}); err == nil {
			t.Errorf("kind %q accepted", kind)
		}
	}
}

// TestRecordLongLine: a node's whole report is one line of many kilobytes (more than
// bufio.Scanner's default 64 KiB), read back whole.
func TestRecordLongLine(t *testing.T) {
	items := make([]string, 20000)
	for i := range items {
		items[i] = "certificate"
	}
	var rec bytes.Buffer
	if err := WriteRecord(&rec, KindCAShow, sample{Name: "big", Items: items}); err != nil {
		t.Fatal(err)
	}
	var got sample
	if err := ReadRecord("before\n"+rec.String(), KindCAShow, &got); err != nil || len(got.Items) != len(items) || rec.Len() < 200000 {
		t.Fatalf("got %d items (record %d bytes), %v", len(got.Items), rec.Len(), err)
	}
}
