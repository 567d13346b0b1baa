package monitoring_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/carotate"
	"github.com/certctl/certctl/pkg/inspect"
	"github.com/certctl/certctl/pkg/live"
	"github.com/certctl/certctl/pkg/monitoring"
	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/renew"
	"github.com/certctl/certctl/pkg/sandbox"
	"github.com/certctl/certctl/pkg/schedule"
	"github.com/certctl/certctl/pkg/txn"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// lbIP is the address the apiserver certificate must cover (inspect --check-san): the
// sandbox's load balancer.
const lbIP = "10.2.1.139"

// node is one node's state as certctl sees it and exports it.
type node struct {
	instance string
	layout   pki.Layout
	inv      *pki.Inventory
	report   *inspect.Report
	prom     string // inspect -o prometheus
}

// newTree writes a sandbox tree (ECDSA keys: the trees are many and RSA is slow).
func newTree(t *testing.T, o sandbox.Options) pki.Layout {
	t.Helper()
	o.Dir = t.TempDir()
	if o.KeyAlgorithm == "" {
		o.KeyAlgorithm = pki.AlgECDSAP256
	}
	l, err := sandbox.Create(o)
	if err != nil {
		t.Fatalf("sandbox: %v", err)
	}
	return l
}

// inspectNode is what `certctl inspect --check-san LB -o prometheus` does at now (the
// command's own code path: Diagnose, AddNodeState, RenderPrometheus), with live, when not
// nil, dialing the node's endpoints as --live does.
func inspectNode(t *testing.T, instance string, l pki.Layout, now time.Time, withLive bool) node {
	t.Helper()
	inv := pki.Load(l, pki.Default())
	rep := inspect.Diagnose(inv, inspect.Options{Now: now, CheckSANs: []string{lbIP}})
	if withLive {
		live.Check(context.Background(), inv, rep, 3*time.Second)
	}
	if errs := monitoring.AddNodeState(l, rep, nil); len(errs) > 0 {
		t.Fatalf("node state: %v", errs)
	}
	var b strings.Builder
	if err := inspect.RenderPrometheus(&b, rep); err != nil {
		t.Fatal(err)
	}
	return node{instance: instance, layout: l, inv: inv, report: rep, prom: b.String()}
}

// renewAt runs `certctl renew` on l at now, as the schedule does.
func renewAt(l pki.Layout, now time.Time, names []string, within time.Duration, lockTimeout time.Duration) error {
	_, err := renew.Run(context.Background(), l, renew.RunOptions{
		Options:     renew.Options{Names: names, Days: 365, IfExpiringWithin: within, Now: now},
		Command:     "certctl renew " + strings.Join(names, " ") + " --yes",
		LockTimeout: lockTimeout, Out: io.Discard, Log: io.Discard,
	})
	return err
}

// series is one sample series of certctl's output: its name and labels, and its value.
type series struct {
	name   string
	labels map[string]string
	value  float64
}

// parseProm reads an exposition with Prometheus' own parser.
func parseProm(t *testing.T, text string) []series {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("certctl's exposition does not parse: %v\n%s", err, text)
	}
	var out []series
	for name, f := range fams {
		for _, m := range f.Metric {
			s := series{name: name, labels: map[string]string{}}
			for _, lp := range m.Label {
				s.labels[lp.GetName()] = lp.GetValue()
			}
			switch {
			case m.Gauge != nil:
				s.value = m.Gauge.GetValue()
			case m.Counter != nil:
				s.value = m.Counter.GetValue()
			case m.Untyped != nil:
				s.value = m.Untyped.GetValue()
			}
			out = append(out, s)
		}
	}
	return out
}

// Scenarios: certctl's clock is the Unix epoch, which is where `promtool test rules` (2.42)
// starts its series and time(): evaluating at 340d is then the tree 340 days after certctl
// inspected it, with the series certctl exported at that moment.
var t0 = time.Unix(0, 0).UTC()

const year = 365 * 24 * time.Hour

// faultScenario is a tree with the sandbox's faults, inspected at t0.
func faultScenario(t *testing.T, faults ...sandbox.Fault) []node {
	return []node{inspectNode(t, "master-1", newTree(t, sandbox.Options{Now: t0, Faults: faults}), t0, false)}
}

// oldCAScenario: a cluster made 9.5 years ago whose leaves were renewed since; its CAs
// expire in half a year, its leaves in 100 days.
func oldCAScenario(t *testing.T) []node {
	made := t0.Add(-9*year - year/2)
	l := newTree(t, sandbox.Options{Now: made, LeafValidity: t0.Sub(made) + 100*24*time.Hour})
	return []node{inspectNode(t, "master-1", l, t0, false)}
}

// servedStaleScenario is case D: apiserver.crt renewed on disk while the apiserver (a TLS
// listener on loopback at the manifest's --secure-port) still serves the old one.
func servedStaleScenario(t *testing.T) []node {
	l := newTree(t, sandbox.Options{Now: t0})
	crt, key := filepath.Join(l.PKIDir, "apiserver.crt"), filepath.Join(l.PKIDir, "apiserver.key")
	old, err := tls.LoadX509KeyPair(crt, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := renewAt(l, t0, []string{"apiserver"}, 0, time.Second); err != nil {
		t.Fatalf("renew apiserver: %v", err)
	}
	port := testenv.FreePort(t, "127.0.0.1")
	closed := testenv.FreePort(t, "127.0.0.1") // etcd's: nothing listens there
	edit(t, filepath.Join(l.ManifestsDir, "kube-apiserver.yaml"), "--secure-port=6443", fmt.Sprintf("--secure-port=%d", port))
	edit(t, filepath.Join(l.ManifestsDir, "etcd.yaml"), "--listen-client-urls=https://127.0.0.1:2379", fmt.Sprintf("--listen-client-urls=https://127.0.0.1:%d", closed))
	testenv.ServeTLS(t, fmt.Sprintf("127.0.0.1:%d", port), old, tls.NoClientCert)
	return []node{inspectNode(t, "master-1", l, t0, true)}
}

func edit(t *testing.T, path, old, new string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), old) {
		t.Fatalf("%s has no %q", path, old)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(string(data), old, new, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
}

// failedRunScenario: the scheduled renewal (renew all --if-expiring-within 90d) finds the
// leaves due (60 days left) and fails: another certctl holds the node lock.
func failedRunScenario(t *testing.T) []node {
	l := newTree(t, sandbox.Options{Now: t0, LeafValidity: 60 * 24 * time.Hour})
	lock, err := txn.AcquireLock(l.StateDir(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	err = renewAt(l, t0, []string{"all"}, 90*24*time.Hour, 100*time.Millisecond)
	lock.Release()
	if err == nil {
		t.Fatal("the renewal ran although the node lock was held")
	}
	return []node{inspectNode(t, "master-1", l, t0, false)}
}

// scheduledScenario: a daily cron schedule installed just before t0, and its run at t0 (a
// no-op: nothing expires within 30 days). Evaluated days later, it has not run since.
func scheduledScenario(t *testing.T) []node {
	l := newTree(t, sandbox.Options{Now: t0})
	installSchedule(t, l, t0.Add(-time.Hour))
	if err := renewAt(l, t0, []string{"all"}, 30*24*time.Hour, time.Second); err != nil {
		t.Fatalf("scheduled renew: %v", err)
	}
	return []node{inspectNode(t, "master-1", l, t0, false)}
}

// installSchedule is `certctl schedule install --method cron --when daily` under the tree's
// root, installed at when.
func installSchedule(t *testing.T, l pki.Layout, when time.Time) {
	t.Helper()
	o := schedule.Options{Method: schedule.MethodCron, When: "daily"}
	o.Defaults()
	res, err := schedule.Install(context.Background(), l, o)
	if err != nil {
		t.Fatalf("schedule install: %v", err)
	}
	for _, f := range res.Files {
		if err := os.Chtimes(f, when, when); err != nil {
			t.Fatal(err)
		}
	}
}

// rotationScenario: `certctl ca rotate ca --phase trust --generate` at t0, and nothing since.
func rotationScenario(t *testing.T) []node {
	l := newTree(t, sandbox.Options{Now: t0})
	rotateTrust(t, l, t0)
	return []node{inspectNode(t, "master-1", l, t0, false)}
}

func rotateTrust(t *testing.T, l pki.Layout, now time.Time) {
	t.Helper()
	if _, err := carotate.Run(carotate.Options{Layout: l, Generate: true, Now: now, LockTimeout: time.Second}, []string{"ca"}, carotate.PhaseTrust, false); err != nil {
		t.Fatalf("ca rotate ca --phase trust: %v", err)
	}
}

// keyDeletedScenario: front-proxy-client.key deleted by hand; the certificate stays.
func keyDeletedScenario(t *testing.T) []node {
	l := newTree(t, sandbox.Options{Now: t0})
	if err := os.Remove(filepath.Join(l.PKIDir, "front-proxy-client.key")); err != nil {
		t.Fatal(err)
	}
	return []node{inspectNode(t, "master-1", l, t0, false)}
}
