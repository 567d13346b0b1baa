package schedule

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// Cron is a parsed cron expression, read as github.com/robfig/cron/v3's standard parser reads
// it (the parser of Kubernetes' CronJob controller), with cron's 7 for Sunday.
type Cron struct {
	expr  string // as given
	std   string // the same schedule as five fields every cron and a CronJob accept
	sched cron.Schedule
}

// CronError is a cron expression certctl refuses: Field names the field at fault ("minute",
// "hour", "day of month", "month", "day of week"), "" when the expression as a whole is wrong
// (the number of fields).
type CronError struct {
	Expr  string
	Field string
	Err   error
}

func (e *CronError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("cron expression %q: %v", e.Expr, e.Err)
	}
	i := slices.IndexFunc(cronFields[:], func(f cronField) bool { return f.name == e.Field })
	return fmt.Sprintf("cron expression %q, %s field (%s): %v", e.Expr, e.Field, cronFields[i].values, e.Err)
}

func (e *CronError) Unwrap() error { return e.Err }

type cronField struct {
	name   string
	values string // what the field takes, for messages
	opt    cron.ParseOption
}

var cronFields = [5]cronField{
	{"minute", "0-59", cron.Minute},
	{"hour", "0-23", cron.Hour},
	{"day of month", "1-31", cron.Dom},
	{"month", "1-12 or jan-dec", cron.Month},
	{"day of week", "0-7 or sun-sat, 0 and 7 are Sunday", cron.Dow},
}

// cronDescriptors are the shorthands cron and robfig/cron both know, as five fields (the
// cron.d entry and `schedule status` read five fields; staggering needs them).
var cronDescriptors = map[string]string{
	"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
	"@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
}

// ParseCron parses a five-field cron expression (minute hour day-of-month month day-of-week)
// with robfig/cron's standard parser: *, ?, numbers, names (jan-dec, sun-sat), ranges a-b,
// steps */n, a-b/n and a/n, lists; or one of @yearly, @annually, @monthly, @weekly, @daily,
// @midnight, @hourly. 7 is Sunday too, as in cron. Not taken: @every (not cron) and a TZ= or
// CRON_TZ= prefix (the schedule runs in the node's zone; a CronJob refuses it).
func ParseCron(expr string) (*Cron, error) {
	std := strings.TrimSpace(expr)
	if d, ok := cronDescriptors[std]; ok {
		std = d
	}
	fields := strings.Fields(std)
	if len(fields) != 5 {
		return nil, &CronError{Expr: expr, Err: fmt.Errorf("want 5 fields (minute hour day-of-month month day-of-week) or @yearly, @monthly, @weekly, @daily, @hourly; got %d", len(fields))}
	}
	// Each field alone first, so that the error names the field.
	for i, f := range fields {
		if bad := strings.Trim(f, "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ*?,/-"); bad != "" {
			return nil, &CronError{Expr: expr, Field: cronFields[i].name, Err: fmt.Errorf("unexpected %q in %q", bad[:1], f)}
		}
		f = strings.ReplaceAll(f, "?", "*") // robfig's "any"; cron.d knows only *
		if i == 4 {
			f = sundaySeven(f)
		}
		if _, err := cron.NewParser(cronFields[i].opt).Parse(f); err != nil {
			return nil, &CronError{Expr: expr, Field: cronFields[i].name, Err: err}
		}
		fields[i] = f
	}
	std = strings.Join(fields, " ")
	s, err := cron.ParseStandard(std)
	if err != nil {
		return nil, &CronError{Expr: expr, Err: err}
	}
	return &Cron{expr: expr, std: std, sched: s}, nil
}

// dowNames are robfig/cron's day names, by number.
var dowNames = []string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}

// sundaySeven rewrites the 7 (Sunday, as cron reads it) of a day-of-week field to the 0 that
// robfig/cron and a CronJob take: 7 and 7/n become 0, a-7 becomes a-6,0, a-7/n becomes
// a-6/n, with 0 added when the step lands on 7.
func sundaySeven(f string) string {
	parts := strings.Split(f, ",")
	for i, p := range parts {
		rng, step, hasStep := strings.Cut(p, "/")
		lo, hi, isRange := strings.Cut(rng, "-")
		switch {
		case !isRange && lo == "7":
			parts[i] = "0"
		case isRange && hi == "7":
			a, err := strconv.Atoi(lo)
			if err != nil {
				a = slices.Index(dowNames, strings.ToLower(lo))
			}
			n := 1
			if hasStep {
				n, err = strconv.Atoi(step)
			}
			if a < 0 || a > 7 || err != nil || n <= 0 {
				continue // left for robfig/cron to refuse, naming it
			}
			if a == 7 {
				parts[i] = "0"
				continue
			}
			parts[i] = lo + "-6"
			if hasStep {
				parts[i] += "/" + step
			}
			if (7-a)%n == 0 {
				parts[i] += ",0"
			}
		}
	}
	return strings.Join(parts, ",")
}

// Next returns the first time after t (minute resolution, t's location) the expression
// matches, the zero time if none within five years.
func (c *Cron) Next(t time.Time) time.Time { return c.sched.Next(t) }

// String is the expression as given.
func (c *Cron) String() string { return c.expr }

// Standard is the same schedule as five fields that cron.d and a CronJob both accept:
// shorthands spelt out, ? as *, Sunday as 0. Fields already so are kept as written.
func (c *Cron) Standard() string { return c.std }

// calendarKeywords are the OnCalendar shorthands certctl understands without systemd, with
// their cron equivalent (systemd.time(7)).
var calendarKeywords = map[string]string{
	"hourly":  "0 * * * *",
	"daily":   "0 0 * * *",
	"weekly":  "0 0 * * 1",
	"monthly": "0 0 1 * *",
}
