// Package apipoll is the labs' client of the API during a rollout: it asks one address (the
// balancer, or one node's apiserver) for one path at a fixed interval, each request on a new
// connection, and records what succeeded, what failed and the outages a client saw. The
// end-to-end tests hold certctl's rollouts to these figures.
package apipoll

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// Window is one outage as the poller saw it: from the first failed request to the next
// success. Node is for the caller (whose apiserver it was).
type Window struct {
	Node       string
	Start, End time.Time
}

// Length is how long the outage lasted.
func (w Window) Length() time.Duration { return w.End.Sub(w.Start) }

// Options say what to poll.
type Options struct {
	Addr  string           // host:port
	Path  string           // default /readyz
	Roots *x509.CertPool   // the served chain is verified against these; the name is not
	Cert  *tls.Certificate // a client certificate, for requests that need an identity
	// Interval between requests (default 50 ms); Max bounds the poller's life (default 20 min).
	Interval, Max time.Duration
}

// Poller polls until Stop (or Max).
type Poller struct {
	mu       sync.Mutex
	ok, fail int
	paused   int // failed requests in flight while the whole machine was paused (not counted)
	errs     []string
	windows  []Window
	down     *Window
	stop     context.CancelFunc
	done     chan struct{}
}

// Ready asks addr's /readyz once, as a poller does: nil when it answers 200.
func Ready(ctx context.Context, addr string, roots *x509.CertPool) error {
	return Get(ctx, newClient(roots, nil), "https://"+addr+"/readyz")
}

// newClient is a poller's client: a new connection for every request, the served chain
// verified against roots (not the name), cert as the client certificate when set.
func newClient(roots *x509.CertPool, cert *tls.Certificate) *http.Client {
	var certs []tls.Certificate
	if cert != nil {
		certs = []tls.Certificate{*cert}
	}
	return &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		DialContext:       (&net.Dialer{Timeout: time.Second}).DialContext,
		DisableKeepAlives: true, // every request a new connection through the balancer
		TLSClientConfig: &tls.Config{
			Certificates: certs,
			// The chain is verified below, against Roots; the name is not: before case B is
			// fixed the apiserver certificates do not cover the balancer's address.
			InsecureSkipVerify: true,
			VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
				inter := x509.NewCertPool()
				for _, r := range raw[1:] {
					if c, err := x509.ParseCertificate(r); err == nil {
						inter.AddCert(c)
					}
				}
				c, err := x509.ParseCertificate(raw[0])
				if err != nil {
					return err
				}
				_, err = c.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter})
				return err
			},
		},
	}}
}

// Start starts polling o.Addr's o.Path.
func Start(o Options) *Poller {
	if o.Path == "" {
		o.Path = "/readyz"
	}
	if o.Interval <= 0 {
		o.Interval = 50 * time.Millisecond
	}
	if o.Max <= 0 {
		o.Max = 20 * time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.Max)
	p := &Poller{stop: cancel, done: make(chan struct{})}
	client := newClient(o.Roots, o.Cert)
	go func() {
		defer close(p.done)
		tick := time.NewTicker(o.Interval)
		defer tick.Stop()
		for {
			start := time.Now()
			err := Get(ctx, client, "https://"+o.Addr+o.Path)
			if ctx.Err() != nil {
				return
			}
			end := time.Now()
			p.record(end, err, machinePause(start, end))
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return p
}

// PauseMin is the least step of the wall clock over the monotonic clock, during one request,
// that is a pause of the whole machine rather than a slow answer.
const PauseMin = 500 * time.Millisecond

// machinePause is how much longer the request from start to end took by the wall clock than by
// the monotonic clock. A virtual machine that the hypervisor pauses (a snapshot: the guest's
// kernel logs "crng reseeded due to virtual machine fork" on resume) stops its monotonic clock
// while the wall clock is stepped forward on resume: every process of the machine, the
// apiservers, etcd and the balancer included, was frozen, and a request in flight times out on
// resume through no fault of what it asks. Seen twice in one CI run, 21 s each, one request of
// every poller failing at once.
func machinePause(start, end time.Time) time.Duration {
	return end.Round(0).Sub(start.Round(0)) - end.Sub(start)
}

// record counts one request that ended at now; pause is how long the machine was paused
// during it (machinePause). A failure across a pause of PauseMin or more is not counted as a
// failure of what was polled: it is listed among the errors, said as such, and counted apart
// (Paused).
func (p *Poller) record(now time.Time, err error, pause time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil && pause >= PauseMin {
		p.paused++
		if len(p.errs) < 20 {
			p.errs = append(p.errs, fmt.Sprintf("%s not counted, the whole machine paused %s during this request (wall clock ahead of the monotonic clock): %v", now.Format("15:04:05.000"), pause.Round(time.Millisecond), err))
		}
		return
	}
	if err != nil {
		p.fail++
		if len(p.errs) < 20 {
			p.errs = append(p.errs, now.Format("15:04:05.000")+" "+err.Error())
		}
		if p.down == nil {
			p.down = &Window{Start: now}
		}
		return
	}
	p.ok++
	if p.down != nil {
		p.down.End = now
		p.windows = append(p.windows, *p.down)
		p.down = nil
	}
}

// Get is one GET of url: an error unless the answer is 200 OK.
func Get(ctx context.Context, c *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	return nil
}

// Windows are the outages seen so far (one still open ends now).
func (p *Poller) Windows() []Window {
	p.mu.Lock()
	defer p.mu.Unlock()
	w := slices.Clone(p.windows)
	if p.down != nil {
		w = append(w, Window{Start: p.down.Start, End: time.Now()})
	}
	return w
}

// Paused is how many failed requests were in flight while the whole machine was paused (a
// virtual machine's snapshot), not counted among the failures.
func (p *Poller) Paused() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.paused
}

// Stop ends the poller and returns its counts and the first failures (with the requests a pause
// of the machine failed, said as such, not counted in fail).
func (p *Poller) Stop() (ok, fail int, errs []string) {
	p.stop()
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ok, p.fail, p.errs
}

// Text is the outages for a log line: 15:04:05.000-15:04:05.120 (120ms), ...
func Text(ws []Window) string {
	var out []string
	for _, w := range ws {
		out = append(out, fmt.Sprintf("%s-%s (%s)", w.Start.Format("15:04:05.000"), w.End.Format("15:04:05.000"), w.Length().Round(time.Millisecond)))
	}
	return strings.Join(out, ", ")
}

// Longest is the longest outage (0 when none).
func Longest(ws []Window) time.Duration {
	var m time.Duration
	for _, w := range ws {
		m = max(m, w.Length())
	}
	return m
}

// Overlaps returns the pairs of outages of different nodes that overlap in time: two
// apiservers down at once, which a rollout one node at a time must never cause.
func Overlaps(ws []Window) [][2]Window {
	var out [][2]Window
	for i := range ws {
		for j := i + 1; j < len(ws); j++ {
			a, b := ws[i], ws[j]
			if a.Node != b.Node && a.Start.Before(b.End) && b.Start.Before(a.End) {
				out = append(out, [2]Window{a, b})
			}
		}
	}
	return out
}
