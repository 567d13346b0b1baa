// Package apiretry keeps a cluster-wide command going while the apiserver its kubeconfig names
// restarts: certctl's own rollouts restart apiservers, and a command whose kubeconfig points at
// one node (not a load balancer) loses its API for the seconds that node's apiserver takes to
// come back. Requests that cannot have reached the apiserver are sent again until it answers
// or the wait is over; everything else is left to client-go and the caller.
package apiretry

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"

	"k8s.io/client-go/rest"
)

// Options say how long to wait and where to say so.
type Options struct {
	// Wait bounds how long one request is retried: past it, the request fails with the last
	// error (the API is not restarting, it is gone).
	Wait time.Duration
	// Logf, when set, is told once when the API stops answering and once when it answers
	// again (or the wait ran out).
	Logf func(format string, a ...any)
	// Backoff between attempts: doubling from Backoff.First to Backoff.Max. Defaults 250ms, 2s.
	First, Max time.Duration
}

// Wrap makes rc's requests wait for the API as Options say (rest.Config.WrapTransport, on top
// of any wrapper rc had).
func Wrap(rc *rest.Config, o Options) {
	prev := rc.WrapTransport
	rc.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		if prev != nil {
			rt = prev(rt)
		}
		return New(rt, o)
	}
}

// New wraps rt.
func New(rt http.RoundTripper, o Options) http.RoundTripper {
	if o.First <= 0 {
		o.First = 250 * time.Millisecond
	}
	if o.Max <= 0 {
		o.Max = 2 * time.Second
	}
	return &transport{next: rt, o: o}
}

type transport struct {
	next http.RoundTripper
	o    Options

	mu   sync.Mutex
	down time.Time // when the current outage was first seen; zero while the API answers
}

// Retryable says whether err, returned for a request with method, means the request cannot
// have been acted on and may be sent again: the connection was never made (refused, no route,
// dial timeout), for any method; or, for a read (GET, HEAD), the connection broke or timed out.
// A write whose connection broke after it was sent is not retried: it may have been applied.
func Retryable(method string, err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	if method != http.MethodGet && method != http.MethodHead {
		return false
	}
	var ne net.Error
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.As(err, &ne) && ne.Timeout()
}

// GaveUpError is a request given up after waiting Options.Wait for the API: it did not answer
// (or not ready) all along. Err is the last reason.
type GaveUpError struct {
	Host   string
	Waited time.Duration
	Err    error
}

func (e *GaveUpError) Error() string {
	return fmt.Sprintf("the API at %s did not answer for %s: %v", e.Host, e.Waited.Round(100*time.Millisecond), e.Err)
}

func (e *GaveUpError) Unwrap() error { return e.Err }

// NotReadyError is a request answered by an apiserver whose /readyz said it was not ready:
// not the API's answer (while it starts, an apiserver answers 403 until its authorizer has
// synced).
type NotReadyError struct {
	Method, URL string
	StatusCode  int
}

func (e *NotReadyError) Error() string {
	if e.StatusCode == 0 {
		return fmt.Sprintf("%s %s: the apiserver is not ready", e.Method, e.URL)
	}
	return fmt.Sprintf("%s %s: %d from an apiserver that is not ready", e.Method, e.URL, e.StatusCode)
}

// suspect says whether an answer with code may come from an apiserver that is starting rather
// than from the API: refused (401, 403: rejected before anything was done, so a write may be
// sent again) or, for a read, unavailable (500, 503). Other answers are the API's.
func suspect(method string, code int) bool {
	switch code {
	case http.StatusUnauthorized, http.StatusForbidden:
		return true
	case http.StatusInternalServerError, http.StatusServiceUnavailable:
		return method == http.MethodGet || method == http.MethodHead
	}
	return false
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	replayable := req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
	w := &waiter{t: t, req: req, start: time.Now(), backoff: t.o.First}
	resp, err := t.next.RoundTrip(req)
	for {
		if err == nil {
			if !suspect(req.Method, resp.StatusCode) || !replayable {
				w.answered()
				return resp, nil
			}
			// Ask the apiserver whether it is ready: if it is, this is its answer.
			if ready, perr := t.ready(req); ready || perr != nil && !Retryable(http.MethodGet, perr) {
				w.answered()
				return resp, nil
			}
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
			err = &NotReadyError{Method: req.Method, URL: req.URL.Redacted(), StatusCode: resp.StatusCode}
		} else if !replayable || !Retryable(req.Method, err) {
			return nil, err
		}
		if err := w.untilReady(err); err != nil {
			return nil, err
		}
		r, err2 := rewind(req)
		if err2 != nil {
			return nil, err2
		}
		resp, err = t.next.RoundTrip(r)
	}
}

// waiter is one request's wait for its apiserver.
type waiter struct {
	t       *transport
	req     *http.Request
	start   time.Time
	backoff time.Duration
	waited  bool
}

// answered: the request has the API's answer. One that waited for it ends the outage (another
// request may have been answered by a server about to stop while this one waited).
func (w *waiter) answered() {
	if w.waited {
		w.t.up()
	}
}

// untilReady waits, backing off, until the apiserver's /readyz says it is ready (nil), the
// request's Wait is over or its context done (the last reason, cause at first), or the
// apiserver answers in a way that is no outage (a certificate the client refuses).
func (w *waiter) untilReady(cause error) error {
	t := w.t
	for {
		left := t.o.Wait - time.Since(w.start)
		if left <= 0 {
			t.gaveUp(cause)
			return &GaveUpError{Host: w.req.URL.Host, Waited: time.Since(w.start), Err: cause}
		}
		t.isDown(w.req, cause)
		w.waited = true
		timer := time.NewTimer(min(w.backoff, left))
		select {
		case <-w.req.Context().Done():
			timer.Stop()
			return cause
		case <-timer.C:
		}
		w.backoff = min(2*w.backoff, t.o.Max)
		// An apiserver that listens again is not yet one that serves: the request goes again
		// only once its /readyz says it is ready.
		ready, perr := t.ready(w.req)
		switch {
		case ready:
			return nil
		case perr != nil && !Retryable(http.MethodGet, perr):
			return perr
		case perr != nil:
			cause = perr
		default:
			cause = &NotReadyError{Method: w.req.Method, URL: w.req.URL.Redacted()}
		}
	}
}

// ready asks the apiserver of req whether it is ready (GET /readyz, which the apiserver lets
// anyone ask: --authorization-always-allow-paths). A server without /readyz there (404: a
// proxy in front, a path prefix) counts as ready: there is nothing better to ask.
func (t *transport) ready(req *http.Request) (bool, error) {
	u := *req.URL
	u.Path, u.RawPath, u.RawQuery, u.Fragment = "/readyz", "", "", ""
	probe, err := http.NewRequestWithContext(req.Context(), http.MethodGet, u.String(), nil)
	if err != nil {
		return false, err
	}
	probe.Header.Set("User-Agent", req.Header.Get("User-Agent"))
	resp, err := t.next.RoundTrip(probe)
	if err != nil {
		return false, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusNotFound, nil
}

// rewind is req again with a fresh body.
func rewind(req *http.Request) (*http.Request, error) {
	r := req.Clone(req.Context())
	if req.Body == nil || req.Body == http.NoBody {
		return r, nil
	}
	body, err := req.GetBody()
	if err != nil {
		return nil, fmt.Errorf("send %s %s again: %w", req.Method, req.URL, err)
	}
	r.Body = body
	return r, nil
}

func (t *transport) isDown(req *http.Request, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.down.IsZero() {
		return
	}
	t.down = time.Now()
	if t.o.Logf != nil {
		t.o.Logf("the API at %s does not answer (%v): an apiserver restarting? retrying for up to %s", req.URL.Host, err, t.o.Wait)
	}
}

func (t *transport) up() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.down.IsZero() {
		return
	}
	if t.o.Logf != nil {
		t.o.Logf("the API answers again, after %s", time.Since(t.down).Round(100*time.Millisecond))
	}
	t.down = time.Time{}
}

func (t *transport) gaveUp(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.o.Logf != nil && !t.down.IsZero() {
		t.o.Logf("the API has not answered for %s: giving up (%v)", time.Since(t.down).Round(100*time.Millisecond), err)
	}
	t.down = time.Time{}
}
