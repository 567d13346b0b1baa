package monitoring

import (
	"fmt"
	"os"
	"time"

	"github.com/certctl/certctl/pkg/carotate"
	"github.com/certctl/certctl/pkg/inspect"
	"github.com/certctl/certctl/pkg/lastrun"
	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/schedule"
)

// AddNodeState fills in r what the certificate rows do not hold and the metrics and alerts
// need: the last renewal run (pkg/lastrun), the CA rotations whose state is on the node
// (pkg/carotate) and the installed schedule with the time its next run was due
// (pkg/schedule). analyze reads OnCalendar expressions that are not keywords (nil: such a
// schedule gets no next run). A part that cannot be read is left out and its error returned
// with the others, for the caller to print as a warning: the certificates still count.
func AddNodeState(l pki.Layout, r *inspect.Report, analyze schedule.CalendarAnalyzer) []error {
	var errs []error
	lr, err := lastrun.Read(l)
	if err != nil {
		errs = append(errs, err)
	}
	r.LastRun = lr
	r.CARotations = nil
	for _, ca := range carotate.CAs {
		st, err := carotate.LoadState(l, ca)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if st == nil {
			continue
		}
		rot := inspect.CARotation{CA: ca, Phase: st.Phase}
		if n := len(st.Steps); n > 0 {
			rot.Time = st.Steps[n-1].Time
		}
		r.CARotations = append(r.CARotations, rot)
	}
	s, err := scheduleState(l, lr, analyze)
	if err != nil {
		errs = append(errs, err)
	}
	r.Schedule = s
	return errs
}

// scheduleState is the installed schedule and when its run after the later of the last
// recorded run and the installation (the unit's or cron file's modification time) was due;
// nil when no schedule is installed.
func scheduleState(l pki.Layout, lr *lastrun.Record, analyze schedule.CalendarAnalyzer) (*inspect.Schedule, error) {
	st, err := schedule.GetStatus(l, time.Now(), analyze)
	if err != nil {
		return nil, err
	}
	if !st.Installed || st.When == "" || len(st.Files) == 0 {
		return nil, nil
	}
	fi, err := os.Stat(st.Files[0])
	if err != nil {
		return nil, fmt.Errorf("schedule: %w", err)
	}
	after := fi.ModTime()
	if lr != nil && lr.Time.After(after) {
		after = lr.Time
	}
	o := schedule.Options{Method: st.Method, When: st.When, Location: schedule.NodeLocation(l)}
	next, err := o.Next(after, analyze)
	if err != nil {
		return nil, fmt.Errorf("schedule %s: %w", st.Files[0], err)
	}
	return &inspect.Schedule{Method: st.Method, When: st.When, NextRun: next.UTC()}, nil
}
