package cli

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/certctl/certctl/pkg/inspect"
	"github.com/certctl/certctl/pkg/lease"
)

// TestExitCodes: the one place the exit code is decided, from the command's error as typed:
// a verdict (wrapped or not) is its severity's code, an abort and every other failure 3; what
// is said on stderr is the error, except for a silent verdict or an abort (the command has
// printed its answer).
func TestExitCodes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		err    error
		code   int
		stderr string
	}{
		{"done", nil, ExitOK, ""},
		{"healthy verdict", verdict(inspect.SevInfo, nil), ExitOK, ""},
		{"warnings", verdict(inspect.SevWarning, nil), ExitWarning, ""},
		{"critical", verdict(inspect.SevCritical, nil), ExitCritical, ""},
		{"critical, said", verdict(inspect.SevCritical, errors.New("node cp2 failed")), ExitCritical, "error: node cp2 failed\n"},
		{"a verdict wrapped", fmt.Errorf("cluster: %w", verdict(inspect.SevWarning, errors.New("expiring"))), ExitWarning, "error: cluster: expiring\n"},
		{"a failure", &lease.HeldError{}, ExitError, "error: "},
		{"an error of no severity", verdict(inspect.SevInfo, errors.New("bad flag")), ExitError, "error: bad flag\n"},
		{"aborted", errAborted, ExitError, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			if code := finish(tc.err, &stderr); code != tc.code || !bytes.HasPrefix(stderr.Bytes(), []byte(tc.stderr)) || (tc.stderr == "") != (stderr.Len() == 0) {
				t.Errorf("exit %d, stderr %q; want %d, %q", code, stderr.String(), tc.code, tc.stderr)
			}
		})
	}
}
