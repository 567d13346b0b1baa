package noderesult

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// A record is what a node command reports that is too large for a termination message (a
// node's whole inspect report, the CAs it holds): one line of the command's standard output,
//
//	certctl.io/node-record/v1 KIND JSON
//
// written when the orchestrator asks for it (--record). The orchestrator takes the last line
// of the Job's log that starts with the schema and the kind; every other line of the log is
// for people. A line of another version of the schema is refused, naming both.

// RecordVersion is the records' schema. A change that an older reader would misread gets a new
// one.
const RecordVersion = "certctl.io/node-record/v1"

// recordSchema is what every version of the schema starts with.
const recordSchema = "certctl.io/node-record/"

// The kinds of record.
const (
	KindInspect = "inspect" // an inspect.Report
	KindCAShow  = "ca-show" // a carotate.Shown
)

// WriteRecord writes v as the record line of kind to w.
func WriteRecord(w io.Writer, kind string, v any) error {
	if kind == "" || strings.ContainsAny(kind, " \n") {
		return fmt.Errorf("record kind %q: want one word", kind)
	}
	data, err := json.Marshal(v) // one line: encoding/json escapes control characters
	if err != nil {
		return fmt.Errorf("encode the %s record: %w", kind, err)
	}
	if _, err := fmt.Fprintf(w, "%s %s %s\n", RecordVersion, kind, data); err != nil {
		return fmt.Errorf("write the %s record: %w", kind, err)
	}
	return nil
}

// ErrNoRecord is returned by ReadRecord when the log holds no record of the kind.
var ErrNoRecord = errors.New("no certctl record in the node's output")

// RecordVersionError is a record of another version of the schema: a Job image of another
// certctl release than the orchestrator.
type RecordVersionError struct {
	Kind, Got string
}

func (e *RecordVersionError) Error() string {
	return fmt.Sprintf("the node's certctl wrote a %s record of version %q; this certctl reads %q: run the Jobs with an image of this certctl's release (--image)", e.Kind, e.Got, RecordVersion)
}

// ReadRecord decodes into v the last record of kind in logs (a Job's log: the record line
// among whatever else the command printed). It returns an error wrapping ErrNoRecord when there
// is none, a *RecordVersionError for a record of another version, and the decoding's error for
// a record that does not decode.
func ReadRecord(logs, kind string, v any) error {
	var found, other string
	sc := bufio.NewScanner(strings.NewReader(logs))
	sc.Buffer(nil, len(logs)+1) // a record is one line, however long
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if !strings.HasPrefix(line, recordSchema) {
			continue
		}
		version, rest, _ := strings.Cut(line, " ")
		k, data, _ := strings.Cut(rest, " ")
		if k != kind {
			continue
		}
		if version != RecordVersion {
			other = version
			continue
		}
		found, other = data, ""
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read the node's output: %w", err)
	}
	if other != "" {
		return &RecordVersionError{Kind: kind, Got: other}
	}
	if found == "" {
		return fmt.Errorf("%w (kind %s)", ErrNoRecord, kind)
	}
	if err := json.Unmarshal([]byte(found), v); err != nil {
		return fmt.Errorf("decode the node's %s record: %w", kind, err)
	}
	return nil
}
