// Package schedule installs certctl's scheduled renewal: a systemd service and timer or a
// cron.d entry on a node, or CronJobs that run it inside the cluster. It renders them from
// the embedded templates, validates the schedule, and says when the next run is.
package schedule

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/certctl/certctl/pkg/fsutil"
	"github.com/certctl/certctl/pkg/inspect"
	"github.com/certctl/certctl/pkg/lastrun"
	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/render"
	"github.com/certctl/certctl/templates"
)

// Methods.
const (
	MethodSystemd = "systemd"
	MethodCron    = "cron"
)

// Node paths of the installed files.
const (
	ServicePath = "/etc/systemd/system/certctl-renew.service"
	TimerPath   = "/etc/systemd/system/certctl-renew.timer"
	CronPath    = "/etc/cron.d/certctl"
	TimerUnit   = "certctl-renew.timer"
)

// Options describe the scheduled run.
type Options struct {
	Method      string        // systemd (default) or cron
	When        string        // hourly|daily|weekly|monthly, an OnCalendar expression (systemd) or a cron expression (cron); default weekly
	Threshold   string        // renew what expires within this, default 30d
	Days        int           // validity of renewed certificates, default 365
	Restart     bool          // pass --restart
	CertctlPath string        // default /usr/local/bin/certctl
	Jitter      time.Duration // random delay, default 1h
	// Location is the node's time zone, in which cron and systemd read the schedule (nil:
	// time.Local). NodeLocation finds it.
	Location *time.Location
}

// Defaults fills empty fields.
func (o *Options) Defaults() {
	if o.Method == "" {
		o.Method = MethodSystemd
	}
	if o.When == "" {
		o.When = "weekly"
	}
	if o.Threshold == "" {
		o.Threshold = "30d"
	}
	if o.Days == 0 {
		o.Days = 365
	}
	if o.CertctlPath == "" {
		o.CertctlPath = "/usr/local/bin/certctl"
	}
	if o.Jitter == 0 {
		o.Jitter = time.Hour
	}
}

// Validate checks the options; analyze validates OnCalendar expressions that are not
// keywords (systemd-analyze calendar), nil when it is not available.
func (o *Options) Validate(analyze CalendarAnalyzer) error {
	switch o.Method {
	case MethodSystemd, MethodCron:
	default:
		return fmt.Errorf("--method %q: want systemd or cron", o.Method)
	}
	th, err := inspect.ParseDuration(o.Threshold)
	if err != nil || th <= 0 {
		return fmt.Errorf("--threshold %q: want a positive duration such as 30d", o.Threshold)
	}
	if o.Days <= 0 || o.Days > 36500 {
		return fmt.Errorf("--days %d: want 1 to 36500", o.Days)
	}
	if th >= time.Duration(o.Days)*24*time.Hour {
		return fmt.Errorf("--threshold %s is not shorter than the validity (--days %d): every run would renew everything", o.Threshold, o.Days)
	}
	if o.Jitter < 0 || o.Jitter > 24*time.Hour {
		return fmt.Errorf("--jitter %s: want 0 to 24h", o.Jitter)
	}
	if !filepath.IsAbs(o.CertctlPath) {
		return fmt.Errorf("--certctl-path %q: want an absolute path (units and cron do not search PATH reliably)", o.CertctlPath)
	}
	_, err = o.Next(time.Now(), analyze)
	return err
}

// CalendarAnalyzer returns the next elapse of an OnCalendar expression after now, reading the
// expression in now's location (the node's time zone).
type CalendarAnalyzer func(expr string, now time.Time) (time.Time, error)

// SystemdAnalyze is a CalendarAnalyzer backed by `systemd-analyze calendar`, or nil when
// systemd-analyze is not installed.
func SystemdAnalyze() CalendarAnalyzer {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		return nil
	}
	return func(expr string, now time.Time) (time.Time, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		run := func(args ...string) ([]byte, error) {
			cmd := exec.CommandContext(ctx, "systemd-analyze", args...)
			if name := now.Location().String(); name != "Local" {
				// systemd-analyze reads the expression in its own local time, as PID 1 does
				// in the node's: give it the node's zone.
				cmd.Env = append(os.Environ(), "TZ="+name)
			}
			return cmd.CombinedOutput()
		}
		out, err := run("calendar", "--base-time=@"+strconv.FormatInt(now.Unix(), 10), expr)
		if err != nil {
			// Older systemd has no --base-time: the next elapse is then relative to now.
			out, err = run("calendar", expr)
		}
		if err != nil {
			return time.Time{}, fmt.Errorf("OnCalendar %q: %s", expr, strings.TrimSpace(string(out)))
		}
		m := regexp.MustCompile(`\(in UTC\): \w+ (\S+ \S+) UTC`).FindStringSubmatch(string(out))
		if m == nil {
			m = regexp.MustCompile(`Next elapse: \w+ (\S+ \S+) UTC`).FindStringSubmatch(string(out))
		}
		if m == nil {
			return time.Time{}, fmt.Errorf("OnCalendar %q: no next elapse in %q", expr, out)
		}
		next, err := time.ParseInLocation("2006-01-02 15:04:05", m[1], time.UTC)
		return next.In(now.Location()), err
	}
}

// Next is when the schedule runs next after now (before the random delay), in the node's
// time zone (o.Location): cron and systemd read "30 3 * * *" or "daily" in local time.
func (o *Options) Next(now time.Time, analyze CalendarAnalyzer) (time.Time, error) {
	loc := o.Location
	if loc == nil {
		loc = time.Local
	}
	now = now.In(loc)
	if cronExpr, ok := calendarKeywords[o.When]; ok {
		c, _ := ParseCron(cronExpr)
		return c.Next(now), nil
	}
	if o.Method == MethodCron {
		c, err := ParseCron(o.When)
		if err != nil {
			return time.Time{}, fmt.Errorf("--when: %w", err)
		}
		return c.Next(now), nil
	}
	if analyze == nil {
		return time.Time{}, fmt.Errorf("--when %q: cannot check an OnCalendar expression without systemd-analyze: use hourly, daily, weekly or monthly, or --method cron with a cron expression", o.When)
	}
	return analyze(o.When, now)
}

// NodeLocation is the time zone cron and systemd use on the node at l: $TZ when set (as for
// any program), else the node's /etc/localtime (resolved under the root, so a container
// with the host at /host reads the host's zone), else time.Local.
func NodeLocation(l pki.Layout) *time.Location {
	if tz, ok := os.LookupEnv("TZ"); ok {
		if loc, err := time.LoadLocation(strings.TrimPrefix(tz, ":")); err == nil {
			return loc
		}
	}
	if l.Root != "" && l.Root != "/" {
		p := l.Resolve("/etc/localtime")
		if data, err := os.ReadFile(p); err == nil {
			// The zone's name, for systemd-analyze and the output, from the link's target
			// (/etc/localtime -> /usr/share/zoneinfo/Europe/Berlin).
			name := "Local"
			if _, after, ok := strings.Cut(p, "/zoneinfo/"); ok {
				name = after
			}
			if loc, err := time.LoadLocationFromTZData(name, data); err == nil {
				return loc
			}
		}
	}
	return time.Local
}

// Command is the exact command the schedule runs.
func (o *Options) Command() string {
	c := fmt.Sprintf("%s renew all --if-expiring-within %s --days %d", o.CertctlPath, o.Threshold, o.Days)
	if o.Restart {
		c += " --restart"
	}
	return c + " --yes"
}

// Render returns the files to install, by node path.
func (o *Options) Render() (map[string][]byte, error) {
	data := map[string]any{
		"Threshold": o.Threshold, "Command": o.Command(), "JitterSeconds": int(o.Jitter.Seconds()),
		"OnCalendar": o.When, "Description": o.When, "Cron": o.When,
	}
	if c, ok := calendarKeywords[o.When]; ok {
		data["Cron"] = c
	} else if o.Method == MethodCron {
		c, err := ParseCron(o.When)
		if err != nil {
			return nil, fmt.Errorf("--when: %w", err)
		}
		data["Cron"] = c.Standard() // five fields: cron.d takes them, and status reads them back
	}
	out := map[string][]byte{}
	switch o.Method {
	case MethodSystemd:
		for path, tmpl := range map[string]string{ServicePath: "schedule/certctl-renew.service", TimerPath: "schedule/certctl-renew.timer"} {
			b, err := templates.Render(tmpl, data)
			if err != nil {
				return nil, err
			}
			out[path] = b
		}
	case MethodCron:
		b, err := templates.Render("schedule/cron", data)
		if err != nil {
			return nil, err
		}
		out[CronPath] = b
	}
	return out, nil
}

// InstallResult says what Install did.
type InstallResult struct {
	Files   []string // written, under the root
	Enabled bool     // systemctl enable --now ran
	// Todo is what the operator still has to run (no systemd here, or cron to reload).
	Todo string
}

// Render says what Install wrote for o, what it runs and when next (now on, analyze as for
// Next), and what is left to do.
func (r *InstallResult) Render(w io.Writer, o *Options, now time.Time, analyze CalendarAnalyzer) {
	for _, f := range r.Files {
		fmt.Fprintln(w, "wrote", f)
	}
	fmt.Fprintln(w, "runs:", o.Command())
	if next, err := o.Next(now, analyze); err == nil {
		fmt.Fprintf(w, "next run: %s (plus up to %s of random delay)\n", next.Format(NextRunFormat), o.Jitter)
	}
	if r.Enabled {
		fmt.Fprintln(w, "enabled", TimerUnit)
	}
	if r.Todo != "" {
		fmt.Fprintln(w, r.Todo)
	}
}

// systemdRuns reports whether certctl may drive systemd: the real root, systemd booted.
func systemdRuns(l pki.Layout) bool {
	if l.Root != "/" {
		return false
	}
	_, err := os.Stat("/run/systemd/system")
	return err == nil
}

// Install writes the files (atomically) and, with systemd, enables the timer. An installed
// schedule of the other method is removed, so there is never two.
func Install(ctx context.Context, l pki.Layout, o Options) (*InstallResult, error) {
	files, err := o.Render()
	if err != nil {
		return nil, err
	}
	res := &InstallResult{}
	for _, p := range []string{ServicePath, TimerPath, CronPath} {
		if _, keep := files[p]; !keep {
			if err := os.Remove(pki.UnderRoot(l.Root, p)); err == nil {
				res.Files = append(res.Files, "removed "+pki.UnderRoot(l.Root, p))
			}
		}
	}
	for p, data := range files {
		full := pki.UnderRoot(l.Root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return res, fmt.Errorf("create %s: %w", filepath.Dir(full), err)
		}
		if err := fsutil.WriteFileAtomic(full, data, 0o644); err != nil {
			return res, fmt.Errorf("write %s: %w", full, err)
		}
		res.Files = append(res.Files, full)
	}
	switch {
	case o.Method == MethodCron:
		res.Todo = "cron picks up " + CronPath + " by itself; make sure cron runs (systemctl status cron)"
	case systemdRuns(l):
		for _, args := range [][]string{{"daemon-reload"}, {"enable", "--now", TimerUnit}} {
			if out, err := exec.CommandContext(ctx, "systemctl", args...).CombinedOutput(); err != nil {
				return res, fmt.Errorf("systemctl %s: %v: %s", strings.Join(args, " "), err, out)
			}
		}
		res.Enabled = true
	default:
		res.Todo = "systemd does not run here (or --root is not /): on the node run\n  systemctl daemon-reload && systemctl enable --now " + TimerUnit
	}
	return res, nil
}

// RenderRemoved says what Remove removed (or that nothing was installed), even when it then
// failed, on w.
func RenderRemoved(w io.Writer, removed []string, err error) error {
	for _, f := range removed {
		fmt.Fprintln(w, "removed", f)
	}
	if err == nil && len(removed) == 0 {
		fmt.Fprintln(w, "no scheduled renewal was installed")
	}
	return err
}

// Remove deletes the installed files (and disables the timer with systemd).
func Remove(ctx context.Context, l pki.Layout) ([]string, error) {
	if systemdRuns(l) {
		if _, err := os.Stat(TimerPath); err == nil {
			if out, err := exec.CommandContext(ctx, "systemctl", "disable", "--now", TimerUnit).CombinedOutput(); err != nil {
				return nil, fmt.Errorf("systemctl disable --now %s: %v: %s", TimerUnit, err, out)
			}
		}
	}
	var removed []string
	for _, p := range []string{TimerPath, ServicePath, CronPath} {
		full := pki.UnderRoot(l.Root, p)
		err := os.Remove(full)
		switch {
		case err == nil:
			removed = append(removed, full)
		case !errors.Is(err, fs.ErrNotExist):
			return removed, fmt.Errorf("remove %s: %w", full, err)
		}
	}
	if systemdRuns(l) && len(removed) > 0 {
		_ = exec.CommandContext(ctx, "systemctl", "daemon-reload").Run()
	}
	return removed, nil
}

// Status is what is installed and how the last run went.
type Status struct {
	Installed bool            `json:"installed"`
	Method    string          `json:"method,omitempty"`
	When      string          `json:"when,omitempty"`
	Command   string          `json:"command,omitempty"`
	Next      *time.Time      `json:"next,omitempty"`
	Files     []string        `json:"files"`
	LastRun   *lastrun.Record `json:"lastRun,omitempty"`
}

// NextRunFormat shows a next run in the node's local time with its offset and zone
// abbreviation.
const NextRunFormat = time.RFC3339 + " MST"

// Render writes st as text or JSON.
func (st *Status) Render(w io.Writer, format string) error {
	if ok, err := render.Machine(w, format, st); ok {
		return err
	}
	if !st.Installed {
		fmt.Fprintln(w, "no scheduled renewal installed (certctl schedule install)")
	} else {
		fmt.Fprintf(w, "installed: %s (%s)\nwhen:      %s\ncommand:   %s\n", st.Method, strings.Join(st.Files, ", "), st.When, st.Command)
		if st.Next != nil {
			fmt.Fprintf(w, "next run:  %s\n", st.Next.Format(NextRunFormat))
		}
	}
	if st.LastRun == nil {
		fmt.Fprintln(w, "last run:  none recorded")
	} else {
		fmt.Fprintf(w, "last run:  %s\n", st.LastRun.Summary())
	}
	return nil
}

var (
	onCalendarLine = regexp.MustCompile(`(?m)^OnCalendar=(.+)$`)
	execStartLine  = regexp.MustCompile(`(?m)^ExecStart=(.+)$`)
	cronLine       = regexp.MustCompile(`(?m)^((?:\S+\s+){5})root\s+(.+?) --random-delay`)
)

// GetStatus reads what is installed under l and the last run record.
func GetStatus(l pki.Layout, now time.Time, analyze CalendarAnalyzer) (*Status, error) {
	st := &Status{Files: []string{}}
	rec, err := lastrun.Read(l)
	if err != nil {
		return nil, err
	}
	st.LastRun = rec
	if timer, err := os.ReadFile(pki.UnderRoot(l.Root, TimerPath)); err == nil {
		st.Installed, st.Method = true, MethodSystemd
		st.Files = append(st.Files, pki.UnderRoot(l.Root, TimerPath))
		if m := onCalendarLine.FindStringSubmatch(string(timer)); m != nil {
			st.When = strings.TrimSpace(m[1])
		}
		if svc, err := os.ReadFile(pki.UnderRoot(l.Root, ServicePath)); err == nil {
			st.Files = append(st.Files, pki.UnderRoot(l.Root, ServicePath))
			if m := execStartLine.FindStringSubmatch(string(svc)); m != nil {
				st.Command = strings.TrimSpace(m[1])
			}
		}
	} else if cron, err := os.ReadFile(pki.UnderRoot(l.Root, CronPath)); err == nil {
		st.Installed, st.Method = true, MethodCron
		st.Files = append(st.Files, pki.UnderRoot(l.Root, CronPath))
		if m := cronLine.FindStringSubmatch(string(cron)); m != nil {
			st.When, st.Command = strings.TrimSpace(m[1]), m[2]
		}
	}
	if st.Installed && st.When != "" {
		o := Options{Method: st.Method, When: st.When, Location: NodeLocation(l)}
		if next, err := o.Next(now, analyze); err == nil {
			st.Next = &next
		}
	}
	return st, nil
}
