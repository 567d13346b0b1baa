package restart

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/certctl/certctl/pkg/etcdmember"
	"github.com/certctl/certctl/pkg/failpoint"
	"github.com/certctl/certctl/pkg/live"
	"github.com/certctl/certctl/pkg/manifest"
	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/txn"
	"k8s.io/apimachinery/pkg/util/wait"
)

// Options drive Run.
type Options struct {
	Layout pki.Layout
	Steps  []Step
	// Undo: the components restart on the files from before a change one of them did not
	// come back on (a rollback); etcd's restart then does not wait for the node's apiserver
	// when that restarts after it (undoAPIAfter).
	Undo bool
	// Timeout bounds each wait (stopping, coming back healthy), default 3m.
	Timeout time.Duration
	// ReloadTimeout bounds how long a verify step waits for a component to pick up its file
	// by itself before restarting it, default 30s.
	ReloadTimeout time.Duration
	Poll          time.Duration // default 100ms
	// Node is the kubelet that runs the manifests dir's static pods; nil: Run finds it
	// (FindNode) and refuses at once when there is none.
	Node *Node
	Proc string // the process table, default /proc
	// Stopper speeds up stopping (CRI StopContainer); nil waits for the kubelet.
	Stopper Stopper
	// Rollback restores the backup (every file the run's renewal changed) when a component
	// does not come back healthy with its new certificate; Run then restarts, on the restored
	// files, that component and every component it restarted before it.
	Rollback func(component string) error
	// LockTimeout bounds the wait for the node lock (held by a renewal, a restore or another
	// restart), default 30s. Run holds the lock throughout.
	LockTimeout time.Duration
	Progress    *Progress
	// Drain, when set, takes the apiserver out of the load balancer before it, or the etcd
	// member it talks to, is stopped (see Drain), and lets it back in once it is healthy
	// again (after an etcd restart: ready, with its etcd, on /readyz).
	Drain *Drain
	// PeerWait bounds the wait for the other etcd members to be healthy before this node's
	// member restarts, default DefaultPeerWait; then the restart is refused
	// (*etcdmember.UnhealthyPeersError).
	PeerWait time.Duration
	// CrashExits: with a Stopper that is an ExitWatcher, the exits of the component's new
	// container after which it is taken as not coming back (*CrashLoopError), default
	// DefaultCrashExits.
	CrashExits int
}

// Stopper stops a component's running container right after its manifest moved out.
type Stopper interface {
	Stop(ctx context.Context, component string) error
}

// ExitWatcher is a Stopper that can also tell which attempts of the component's container the
// kubelet made since an instant (CRIStopper: from the container runtime). With one, a
// component that keeps exiting after its manifest went back is given up on after
// Options.CrashExits ended attempts instead of at Options.Timeout.
type ExitWatcher interface {
	Attempts(ctx context.Context, component string, since time.Time) (Attempts, error)
}

// Attempts are the container attempts of a component seen since an instant.
type Attempts struct {
	Seen    bool
	Sandbox string // the pod sandbox of the newest attempt; the others counted are in it too
	// First and Newest are the kubelet's attempt numbers (restartCount) of the oldest and
	// newest attempts seen in Sandbox.
	First, Newest int
	NewestID      string
	// NewestExited: the newest attempt has ended while its sandbox stays ready (the kubelet
	// will start it again in that pod: a crash, not the pod stopped).
	NewestExited bool
	ExitCode     *int32 // the newest's, when it ended and the runtime told it
}

// DefaultCrashExits: the first attempt that ends after the manifest went back and the
// component is taken as not coming back. A control-plane component that exits right after
// its start does so on its files and flags (a key that does not match its certificate, a
// flag it does not know); and waiting for a second attempt waits for the kubelet's crash-loop
// back-off, which grows with the pod's history (10 s after a first crash, up to 5 minutes: on
// the lab, 75 s and more after an earlier failed restart of the same manifest).
const DefaultCrashExits = 1

// CrashLoopError: the component's container exited Exits times since its manifest went back.
type CrashLoopError struct {
	Component string
	Exits     int
	ExitCode  *int32 // of the last exit; nil: not known
	After     time.Duration
}

func (e *CrashLoopError) Error() string {
	times := "once"
	if e.Exits > 1 {
		times = fmt.Sprintf("%d times", e.Exits)
	}
	code := ""
	if e.ExitCode != nil {
		code = fmt.Sprintf(" (exit code %d)", *e.ExitCode)
	}
	return fmt.Sprintf("its container exited %s%s %s after its manifest went back: it does not start with these files", times, code, e.After.Round(100*time.Millisecond))
}

// crashCount counts the attempts of a component that ended since its manifest went back,
// from what an ExitWatcher shows at each look: the pod the kubelet runs it in (a new sandbox
// starts the count again), the first attempt seen in it, and the newest attempt once seen
// ended. That one counts when it is still the newest and ended at the next look (a second or
// more later), so that a container stopped with its pod (the kubelet stops the containers,
// then the sandbox) is never taken for a crash.
type crashCount struct {
	sandbox, exited string
	first           int
}

// observe takes one look and returns the attempts ended so far.
func (c *crashCount) observe(a Attempts) int {
	if a.Sandbox != c.sandbox {
		c.sandbox, c.first, c.exited = a.Sandbox, a.First, ""
	} else if a.First < c.first {
		c.first = a.First
	}
	ended := a.Newest - c.first
	switch {
	case !a.NewestExited:
		c.exited = ""
	case a.NewestID == c.exited:
		ended++
	default:
		c.exited = a.NewestID
	}
	return ended
}

// Result is what happened to one component.
type Result struct {
	Component  string        `json:"component"`
	Action     string        `json:"action"`    // what the plan said
	Restarted  bool          `json:"restarted"` // a verify step falls back to a restart
	Downtime   time.Duration `json:"downtime"`  // health endpoint first failing to first healthy again
	Served     string        `json:"served,omitempty"`
	RolledBack bool          `json:"rolledBack"`
	// RollbackRestarted are the components restarted on the restored files after this one
	// failed (in restart order; this one included).
	RollbackRestarted []string `json:"rollbackRestarted,omitempty"`
	Error             string   `json:"error,omitempty"`
}

// component is what Run knows of one static pod.
type component struct {
	name     string
	manifest string
	health   *url.URL // the kubelet's probe
	// securePort is the apiserver's --secure-port (what the load balancer forwards to).
	securePort int
	servedAt   string // TLS endpoint serving certFile; "" when the certificate is in memory only
	certFile   string
	// pairs are the certificate and key files the component loads by itself when they change
	// (its flags): a verify step checks that each loads before it takes the reload as done.
	pairs [][2]string
	flags map[string]string // the manifest's flags
	// apiAfter (etcd, in a rollback): the node's apiserver restarts after it in the same run,
	// on the files put back; etcd's restart does not wait for it (undoAPIAfter).
	apiAfter bool
}

// undoAPIAfter marks etcd in comps, a run restarting components on the files from before a
// change one of them did not come back on, when the apiserver restarts after it: that apiserver
// may still run the files that broke it (crash-looping, yet answering now and then), and what
// puts it right (its old manifest, pending until its own restart) comes only with its restart
// after etcd's; waited for with etcd, it never becomes ready (seen on the lab, 2026-12-06: a
// rollback of phase trust on cp2 waited 3 minutes for it and failed). Its own restart verifies
// it.
func undoAPIAfter(comps []*component) {
	for i, c := range comps {
		if c.name == pki.CompEtcd {
			c.apiAfter = slices.ContainsFunc(comps[i+1:], func(a *component) bool { return a.name == pki.CompAPIServer })
		}
	}
}

func load(l pki.Layout, name string) (*component, error) {
	file, ok := manifest.Files[name]
	if !ok {
		return nil, fmt.Errorf("unknown component %q (want etcd, apiserver, controller-manager or scheduler)", name)
	}
	c := &component{name: name, manifest: filepath.Join(l.ManifestsDir, file)}
	pod, err := manifest.Load(c.manifest)
	if err != nil {
		return nil, fmt.Errorf("%s: %w (is this a control-plane node?)", name, err)
	}
	ep, err := pod.HealthEndpoint()
	if err != nil {
		return nil, fmt.Errorf("cannot tell when %s is healthy: %w", name, err)
	}
	if ep.Host == "" {
		ep.Host = "127.0.0.1"
	}
	c.health = &url.URL{Scheme: ep.Scheme, Host: net.JoinHostPort(ep.Host, strconv.Itoa(ep.Port)), Path: ep.Path}
	flags := pod.Flags()
	c.flags = flags
	switch name {
	case pki.CompAPIServer:
		port := flags["secure-port"]
		if port == "" {
			port = "6443"
		}
		if c.securePort, err = strconv.Atoi(port); err != nil || c.securePort < 1 || c.securePort > 65535 {
			return nil, fmt.Errorf("%s: --secure-port=%s is not a port number", c.manifest, port)
		}
		c.servedAt, c.certFile = net.JoinHostPort("127.0.0.1", port), flags["tls-cert-file"]
	case pki.CompEtcd:
		for _, u := range strings.Split(flags["listen-client-urls"], ",") {
			if pu, err := url.Parse(strings.TrimSpace(u)); err == nil && pu.Scheme == "https" {
				if c.servedAt == "" || net.ParseIP(pu.Hostname()).IsLoopback() {
					c.servedAt = pu.Host
				}
			}
		}
		c.certFile = flags["cert-file"]
	}
	if c.certFile != "" {
		c.certFile = pki.UnderRoot(l.Root, c.certFile)
	}
	for _, p := range reloadedPairs[name] {
		if flags[p[0]] != "" && flags[p[1]] != "" {
			c.pairs = append(c.pairs, [2]string{pki.UnderRoot(l.Root, flags[p[0]]), pki.UnderRoot(l.Root, flags[p[1]])})
		}
	}
	return c, nil
}

// reloadedPairs are the flags naming the certificate and key pairs a component loads again by
// itself (plan.go's reloads).
var reloadedPairs = map[string][][2]string{
	pki.CompAPIServer: {{"tls-cert-file", "tls-private-key-file"}, {"kubelet-client-certificate", "kubelet-client-key"},
		{"proxy-client-cert-file", "proxy-client-key-file"}, {"etcd-certfile", "etcd-keyfile"}},
	pki.CompEtcd: {{"cert-file", "key-file"}, {"peer-cert-file", "peer-key-file"}},
}

// BrokenPairError: a pair the component would load again by itself does not load (a key that
// does not match its certificate, a file that holds no PEM): the component keeps what it has
// in memory, and would not start on these files.
type BrokenPairError struct {
	Cert, Key string
	Err       error
}

func (e *BrokenPairError) Error() string {
	return fmt.Sprintf("the pair %s / %s does not load (%v): the component keeps its old one in memory and would not start on these files", e.Cert, e.Key, e.Err)
}

func (e *BrokenPairError) Unwrap() error { return e.Err }

// checkPairs loads each pair the component reloads by itself.
func (c *component) checkPairs() error {
	for _, p := range c.pairs {
		if _, err := tls.LoadX509KeyPair(p[0], p[1]); err != nil {
			return &BrokenPairError{Cert: p[0], Key: p[1], Err: err}
		}
	}
	return nil
}

// Run executes the steps one at a time in their order, holding the node lock. It first finds
// the kubelet that runs the layout's manifests dir and refuses at once when there is none. It
// stops at the first component that does not come back; with Rollback, the backup is restored
// and that component and every component restarted before it are restarted on the old files.
func Run(ctx context.Context, o Options) ([]Result, error) {
	if o.Timeout == 0 {
		o.Timeout = 3 * time.Minute
	}
	if o.ReloadTimeout == 0 {
		o.ReloadTimeout = 30 * time.Second
	}
	if o.Poll == 0 {
		o.Poll = 100 * time.Millisecond
	}
	if o.LockTimeout == 0 {
		o.LockTimeout = 30 * time.Second
	}
	if o.PeerWait == 0 {
		o.PeerWait = DefaultPeerWait
	}
	if o.CrashExits == 0 {
		o.CrashExits = DefaultCrashExits
	}
	if o.Progress == nil {
		o.Progress = NewProgress(io.Discard, false)
	}
	// Check every manifest before touching any.
	comps := make([]*component, len(o.Steps))
	for i, st := range o.Steps {
		c, err := load(o.Layout, st.Component)
		if err != nil {
			return nil, err
		}
		comps[i] = c
	}
	if len(comps) == 0 {
		return nil, nil
	}
	if o.Undo {
		undoAPIAfter(comps)
	}
	// An etcd restart that could cost the quorum is refused before anything is touched.
	for _, st := range o.Steps {
		if st.Component == pki.CompEtcd && st.Action == ActionRestart {
			if _, err := CheckEtcdRestart(ctx, o.Layout, o.PeerWait, o.Progress); err != nil {
				return nil, fmt.Errorf("%s: %w", pki.CompEtcd, err)
			}
		}
	}
	if o.Node == nil {
		n, err := FindNode(o.Proc, o.Layout.ManifestsDir)
		if err != nil {
			return nil, err
		}
		o.Node = n
	}
	if err := o.Node.CheckNetNS(o.Proc); err != nil {
		return nil, err
	}
	lock, err := txn.AcquireLock(o.Layout.StateDir(), o.LockTimeout)
	if err != nil {
		return nil, err
	}
	defer lock.Release()
	var results []Result
	var restarted []*component
	for i, st := range o.Steps {
		c := comps[i]
		res := Result{Component: c.name, Action: st.Action}
		err := o.one(ctx, c, st.Action, &res)
		if res.Restarted {
			restarted = append(restarted, c)
		}
		if err != nil && ctx.Err() != nil {
			// Interrupted (SIGTERM, SIGINT): no rollback, whose restarts would take the
			// component down again with no time left to bring it back. Its manifest is back
			// (restartNow puts it back on every path), so the kubelet runs it on the new files.
			o.Progress.Line(c.name, "interrupted (%v): its manifest is back, nothing rolled back, not verified", ctx.Err())
			res.Error = err.Error()
			results = append(results, res)
			return results, &InterruptedError{Component: c.name, Err: ctx.Err()}
		}
		if unsafe := new(*etcdmember.UnhealthyPeersError); errors.As(err, unsafe) {
			// Refused before it stopped: nothing to roll back for it; what restarted before
			// it serves the new files.
			res.Error = err.Error()
			results = append(results, res)
			return results, fmt.Errorf("%s: %w", c.name, err)
		}
		if err != nil && o.Rollback != nil {
			res.Error = err.Error()
			rerr := o.rollback(ctx, c, restarted, &res, err)
			results = append(results, res)
			return results, rerr
		}
		if err != nil {
			res.Error = err.Error()
			results = append(results, res)
			return results, &FailedError{Component: c.name, Restarted: namesOf(onNewFiles(c, restarted)), Err: err}
		}
		results = append(results, res)
	}
	return results, nil
}

// FailedError: Component did not come back healthy on its new files (or did not stop), with no
// rollback asked; Restarted are the components on the new files when it failed, in restart
// order, Component included (as a RolledBackError's): what an undo must restart. The caller
// that changed the files decides what to undo.
type FailedError struct {
	Component string
	Restarted []string
	Err       error
}

func (e *FailedError) Error() string { return fmt.Sprintf("%s: %v", e.Component, e.Err) }

func (e *FailedError) Unwrap() error { return e.Err }

// onNewFiles are the components a run leaves on the new files when failed does not come back:
// those it restarted, in order, and failed last (once).
func onNewFiles(failed *component, restarted []*component) []*component {
	if n := len(restarted); n > 0 && restarted[n-1].name == failed.name {
		return restarted
	}
	return append(slices.Clone(restarted), failed)
}

func namesOf(cs []*component) []string {
	var names []string
	for _, c := range cs {
		names = append(names, c.name)
	}
	return names
}

// InterruptedError: the run's context ended (SIGTERM, SIGINT) while Component restarted. Its
// manifest is back in place, so the kubelet runs it on the new files, but nothing verified
// that it came back, and the components after it were not restarted.
type InterruptedError struct {
	Component string
	Err       error
}

func (e *InterruptedError) Error() string {
	return fmt.Sprintf("interrupted while restarting %s (%v): its manifest is back and the kubelet starts it on the new files, unverified, and the components after it still run on the old ones; run the same command again (or certctl restart) to finish", e.Component, e.Err)
}

func (e *InterruptedError) Unwrap() error { return e.Err }

// RolledBackError: Component did not come back healthy with its new files (Cause), the backup
// was restored and Restarted (in restart order, Component included) are healthy again on the
// old files.
type RolledBackError struct {
	Component string
	Cause     error
	Restarted []string
}

func (e *RolledBackError) Error() string {
	verb := "is"
	if len(e.Restarted) > 1 {
		verb = "are"
	}
	return fmt.Sprintf("%s did not come back healthy with its new certificate (%v): rolled back to the backup, %s %s healthy again on the old files; fix the certificate and rerun", e.Component, e.Cause, strings.Join(e.Restarted, ", "), verb)
}

func (e *RolledBackError) Unwrap() error { return e.Cause }

// rollback restores the backup and restarts, on the restored files, every component that
// restarted in this run (failed included): the backup holds all of the renewal's files, so
// every component that loaded one of them must go back to the old ones, and only those.
func (o *Options) rollback(ctx context.Context, failed *component, restarted []*component, res *Result, cause error) error {
	restarted = onNewFiles(failed, restarted)
	names := namesOf(restarted)
	list := strings.Join(names, ", ")
	o.Progress.Line(failed.name, "did not come back with its new certificate (%v): restoring the backup and restarting %s on the old files", cause, list)
	if err := o.Rollback(failed.name); err != nil {
		return fmt.Errorf("%s: %w; and the rollback failed: %w", failed.name, cause, err)
	}
	res.RolledBack, res.RollbackRestarted = true, names
	undoAPIAfter(restarted)
	for _, c := range restarted {
		var again Result
		if err := o.one(ctx, c, ActionRestart, &again); err != nil {
			return fmt.Errorf("%s: %w; rolled back to the backup (restarting %s), but %s did not come back on the old files either: %w", failed.name, cause, list, c.name, err)
		}
	}
	return &RolledBackError{Component: failed.name, Cause: cause, Restarted: names}
}

// one handles a component: a verify step waits for the reload and restarts only if needed.
func (o *Options) one(ctx context.Context, c *component, action string, res *Result) error {
	if action == ActionVerify && c.servedAt != "" {
		// A reload is the component starting on the new files: a before-start failpoint
		// fires here too (and is gone by the restart, if one follows).
		o.beforeStart(c, "")
		// A pair that does not load is never picked up, and a restart on it would fail: the
		// caller rolls back (the component still runs, on what it had in memory).
		if err := c.checkPairs(); err != nil {
			o.Progress.Line(c.name, "%v", err)
			return err
		}
		o.Progress.Line(c.name, "waiting for it to serve the renewed %s by itself", filepath.Base(c.certFile))
		fp, err := o.waitServed(ctx, c, o.ReloadTimeout)
		if err == nil {
			res.Served = fp
			o.Progress.Done(c.name, "serves the renewed %s (reloaded without a restart)", filepath.Base(c.certFile))
			return nil
		}
		o.Progress.Line(c.name, "did not reload it by itself (%v): restarting", err)
	}
	res.Restarted = true
	down, fp, err := o.restart(ctx, c)
	res.Downtime, res.Served = down, fp
	return err
}

// releaseLeader releases the stopped component's leader Lease when this node's instance held it
// (leader.go); a failure costs only the Lease's wait, so it is reported, not returned.
func (o *Options) releaseLeader(ctx context.Context, c *component) {
	host, _ := os.Hostname() // what the component names its leader identity after
	r, err := releaseLeader(ctx, o.Layout, c, host)
	switch {
	case err != nil:
		o.Progress.Line(c.name, "leader Lease not released (the others wait it out): %v", err)
	case r != nil && r.Released:
		o.Progress.Line(c.name, "released its leader Lease %s (held by %s, stopped): another instance leads at once", r.Lease, r.Holder)
	}
}

// beforeStart fires the node's before-start failpoint of the component, whose manifest about
// to go back is staged ("" in a reload), in a build with -tags failpoints; nothing otherwise.
func (o *Options) beforeStart(c *component, staged string) {
	if f, err := failpoint.BeforeStart(o.Layout, c.name, staged); err != nil {
		o.Progress.Line(c.name, "failpoint: %v", err)
	} else if f != nil {
		o.Progress.Line(c.name, "failpoint %s %s %s %v fired (a build with -tags failpoints)", f.Point, f.Component, f.Action, f.Args)
	}
}

func (o *Options) restart(ctx context.Context, c *component) (down time.Duration, fp string, err error) {
	if c.name == pki.CompEtcd {
		if err := o.beforeEtcdStop(ctx); err != nil {
			return 0, "", err
		}
	}
	// The apiserver this node's load balancer entry reaches: its own, or the one that talks
	// only to the etcd member about to stop (a stacked control plane).
	var api *component
	switch {
	case o.Drain == nil:
	case c.name == pki.CompAPIServer:
		api = c
	case c.name == pki.CompEtcd:
		if a, lerr := load(o.Layout, pki.CompAPIServer); lerr == nil {
			api = a
		}
	}
	// The apiserver is waited for with the restarted etcd unless it is down already: one that
	// accepts no connection before etcd stops (the component of a rollback that did not come
	// back, restarted after etcd in the same run) cannot be ready with etcd until its own
	// restart, which verifies it. One that answers, even not ready, is waited for.
	apiDown := false
	if api != nil && api != c {
		switch u := api.readyz(); {
		case c.apiAfter:
			apiDown = true
			o.Progress.Line(c.name, "the apiserver restarts after %s in this rollback, on the files put back: not waited for with %s (its own restart verifies it)", c.name, c.name)
		case refused(u.Host):
			apiDown = true
			o.Progress.Line(c.name, "the apiserver accepts no connection on %s before %s stops: not waited for with it after", u.Host, c.name)
		}
	}
	if api != nil {
		port := api.securePort
		o.Progress.Line(c.name, "refusing new connections from other machines to the apiserver's port %d for %s, so that the load balancer takes it out", port, o.Drain.Wait)
		d := *o.Drain
		d.Record = drainRecordPath(o.Layout)
		end, derr := d.Begin(ctx, port)
		if derr != nil {
			return 0, "", derr
		}
		defer func() {
			if err == nil && api != c && !apiDown {
				// Back in only once the apiserver answers with its etcd again.
				err = o.poll(ctx, c.name, "for the apiserver to be ready with it", o.Timeout, func() (bool, string) {
					return o.probe(ctx, api.readyz())
				})
			}
			if eerr := end(); eerr != nil {
				err = errors.Join(err, eerr)
				return
			}
			if err == nil {
				o.Progress.Line(c.name, "accepting connections from other machines to the apiserver again")
			}
		}()
	}
	return o.restartNow(ctx, c)
}

func (o *Options) restartNow(ctx context.Context, c *component) (time.Duration, string, error) {
	if err := ctx.Err(); err != nil {
		return 0, "", err // a manifest moved out now would have no one to put it back
	}
	if _, err := failpoint.BeforeRestart(ctx, o.Layout, c.name); err != nil {
		return 0, "", err
	}
	start := time.Now()
	staged, err := stage(o.Layout, c.manifest)
	if err != nil {
		return 0, "", err
	}
	putBack := func() error { return unstage(o.Layout, c.manifest, staged) }
	// A new manifest written for this restart goes back in the old one's place.
	if took, err := takePending(o.Layout, c.manifest, staged); err != nil {
		if perr := putBack(); perr != nil {
			return 0, "", errors.Join(err, perr)
		}
		return 0, "", err
	} else if took {
		o.Progress.Line(c.name, "the %s certctl wrote for this restart goes in with it", filepath.Base(c.manifest))
	}
	if o.Stopper != nil {
		if err := o.Stopper.Stop(ctx, c.name); err != nil {
			o.Progress.Line(c.name, "could not stop it early (%v): waiting for the kubelet to stop it", err)
		}
	}
	o.Progress.Line(c.name, "manifest moved out; waiting for it to stop")
	var downSince time.Time
	err = o.poll(ctx, c.name, "to stop", o.Timeout, func() (bool, string) {
		ok, why := o.healthy(ctx, c)
		if !ok && downSince.IsZero() {
			downSince = time.Now()
		}
		// Gone means its port refuses connections: the old process exited and released it.
		return !ok && refused(c.health.Host), why
	})
	if err != nil {
		if perr := putBack(); perr != nil {
			return 0, "", fmt.Errorf("%v; and putting the manifest back failed: %w", err, perr)
		}
		return 0, "", fmt.Errorf("it did not stop: %w", err)
	}
	if downSince.IsZero() {
		downSince = start
	}
	o.releaseLeader(ctx, c)
	o.beforeStart(c, staged)
	if err := putBack(); err != nil {
		return 0, "", err
	}
	backAt := time.Now()
	o.Progress.Line(c.name, "stopped; manifest back; waiting until healthy")
	var upAt, askedAt time.Time
	var crash *CrashLoopError
	ew, _ := o.Stopper.(ExitWatcher)
	var crashes crashCount
	err = o.poll(ctx, c.name, "to be healthy", o.Timeout, func() (bool, string) {
		ok, why := o.healthy(ctx, c)
		if ok && upAt.IsZero() {
			upAt = time.Now()
		}
		if !ok && ew != nil && time.Since(askedAt) >= time.Second {
			askedAt = time.Now()
			if a, err := ew.Attempts(ctx, c.name, backAt); err == nil && a.Seen {
				if ended := crashes.observe(a); ended >= o.CrashExits {
					crash = &CrashLoopError{Component: c.name, Exits: ended, ExitCode: a.ExitCode, After: time.Since(backAt)}
					return true, ""
				}
			}
		}
		return ok, why
	})
	if crash != nil {
		return time.Since(downSince), "", crash
	}
	if err != nil && ctx.Err() != nil {
		return time.Since(downSince), "", fmt.Errorf("manifest back, not yet healthy: %w", err)
	}
	if err != nil {
		return time.Since(downSince), "", fmt.Errorf("not healthy after %s: %w", o.Timeout, err)
	}
	down := upAt.Sub(downSince)
	fp := ""
	if c.servedAt != "" {
		if fp, err = o.waitServed(ctx, c, o.Timeout); err != nil {
			return down, "", err
		}
	}
	o.Progress.Done(c.name, "healthy%s after %s down", servedNote(c, fp), down.Round(10*time.Millisecond))
	return down, fp, nil
}

func servedNote(c *component, fp string) string {
	if fp == "" {
		return ""
	}
	return fmt.Sprintf(", serving %s as on disk (sha256 %s…)", filepath.Base(c.certFile), fp[:16])
}

// waitServed polls until the component serves the certificate file on disk.
func (o *Options) waitServed(ctx context.Context, c *component, timeout time.Duration) (string, error) {
	data, err := os.ReadFile(c.certFile)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", c.certFile, err)
	}
	certs, err := pki.ParseCertificates(c.certFile, data)
	if err != nil {
		return "", err
	}
	want := certs[0]
	var got *x509.Certificate
	err = o.poll(ctx, c.name, "to serve "+filepath.Base(c.certFile), timeout, func() (bool, string) {
		chain, err := live.Served(ctx, c.servedAt, "", nil, 2*time.Second)
		if err != nil {
			return false, err.Error()
		}
		got = chain[0]
		if !got.Equal(want) {
			return false, fmt.Sprintf("serves serial %x, the file has %x", got.SerialNumber, want.SerialNumber)
		}
		return true, ""
	})
	if err != nil {
		return "", err
	}
	return live.Fingerprint(got), nil
}

// healthy probes the endpoint the kubelet probes, as the kubelet does (no verification).
func (o *Options) healthy(ctx context.Context, c *component) (bool, string) {
	return o.probe(ctx, c.health)
}

// readyz is the apiserver's readiness endpoint (its etcd included), on its probe's address.
func (c *component) readyz() *url.URL {
	u := *c.health
	u.Path = "/readyz"
	return &u
}

// probe asks u as the kubelet's probes do (no verification): 200 is healthy.
func (o *Options) probe(ctx context.Context, u *url.URL) (bool, string) {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // a liveness probe, as the kubelet's
		DisableKeepAlives: true,
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return false, err.Error()
	}
	resp, err := client.Do(req)
	if err != nil {
		return false, err.Error()
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Sprintf("%s answers HTTP %d", u, resp.StatusCode)
	}
	return true, ""
}

func refused(hostport string) bool {
	conn, err := net.DialTimeout("tcp", hostport, time.Second)
	if err == nil {
		conn.Close()
		return false
	}
	var op *net.OpError
	return errors.As(err, &op)
}

// poll calls cond every o.Poll until it is true or timeout passes, reporting progress.
func (o *Options) poll(ctx context.Context, comp, what string, timeout time.Duration, cond func() (bool, string)) error {
	start := time.Now()
	var last string
	err := wait.PollUntilContextTimeout(ctx, o.Poll, timeout, true, func(context.Context) (bool, error) {
		ok, why := cond()
		if !ok {
			last = why
			o.Progress.Tick(comp, "waiting "+what, time.Since(start))
		}
		return ok, nil
	})
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if last == "" {
		last = "no answer"
	}
	return fmt.Errorf("waited %s %s: %s", timeout, what, last)
}
