package apipoll

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestRecordPause: a failed request across a pause of the whole machine is listed as such and
// counted apart, neither a failure nor an outage; a request that succeeds across one is a
// success; a failure with no pause (or one shorter than PauseMin) is a failure.
func TestRecordPause(t *testing.T) {
	timeout := errors.New("context deadline exceeded (Client.Timeout exceeded while awaiting headers)")
	tests := []struct {
		name             string
		err              error
		pause            time.Duration
		ok, fail, paused int
		windows          bool // an outage opened
		errText          string
	}{
		{name: "success", ok: 1},
		{name: "success across a pause", pause: 21 * time.Second, ok: 1},
		{name: "failure", err: timeout, fail: 1, windows: true, errText: "Client.Timeout"},
		{name: "failure, a step under PauseMin", err: timeout, pause: PauseMin - time.Millisecond, fail: 1, windows: true, errText: "Client.Timeout"},
		{name: "failure across a pause", err: timeout, pause: 21 * time.Second, paused: 1, errText: "not counted, the whole machine paused 21s"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := &Poller{}
			p.record(time.Now(), tc.err, tc.pause)
			if p.ok != tc.ok || p.fail != tc.fail || p.Paused() != tc.paused {
				t.Errorf("ok %d fail %d paused %d; want %d %d %d", p.ok, p.fail, p.Paused(), tc.ok, tc.fail, tc.paused)
			}
			if got := len(p.Windows()) > 0; got != tc.windows {
				t.Errorf("an outage opened: %v, want %v", got, tc.windows)
			}
			if tc.errText != "" && (len(p.errs) != 1 || !strings.Contains(p.errs[0], tc.errText)) {
				t.Errorf("errs %q, want one with %q", p.errs, tc.errText)
			}
		})
	}
}
