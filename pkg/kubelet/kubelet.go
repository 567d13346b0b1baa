// Package kubelet restarts the kubelet and waits until it is healthy and serves what it
// should. The kubelet is a systemd service on kubeadm nodes; where systemd does not run (a
// container, a copy of a node under --root), Restart says what to do instead.
package kubelet

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"time"

	"github.com/certctl/certctl/pkg/live"
)

// ErrNoSystemd is returned by Restart when the kubelet cannot be restarted from here.
var ErrNoSystemd = errors.New("no systemd on this node")

// Restarter restarts the kubelet. Tests and callers on other init systems plug in their own.
type Restarter interface {
	Restart(ctx context.Context) error
}

// Systemd restarts the kubelet through systemctl when systemd runs and root is "/".
type Systemd struct {
	Root string // the --root certctl works under; only "/" is this machine
}

// Restart runs `systemctl restart kubelet`.
func (s Systemd) Restart(ctx context.Context) error {
	if s.Root != "" && s.Root != "/" {
		return fmt.Errorf("%w: certctl works on %s, not on this machine's root: restart the kubelet on that node (systemctl restart kubelet)", ErrNoSystemd, s.Root)
	}
	if _, err := os.Stat("/run/systemd/system"); err != nil {
		return fmt.Errorf("%w (/run/systemd/system is missing): restart the kubelet with this node's init system (e.g. `service kubelet restart`, or kill it and let its supervisor start it), then rerun with --no-restart", ErrNoSystemd)
	}
	out, err := exec.CommandContext(ctx, "systemctl", "restart", "kubelet").CombinedOutput()
	if err != nil {
		return fmt.Errorf("systemctl restart kubelet: %v: %s", err, out)
	}
	return nil
}

// WaitOptions say what "healthy" means.
type WaitOptions struct {
	HealthzURL  string // default http://127.0.0.1:10248/healthz
	ServingAddr string // default 127.0.0.1:10250
	// Serving, when set, must accept the chain served on ServingAddr (signed by the cluster
	// CA and covering the node's addresses, say).
	Serving func(chain []*x509.Certificate) error
	Timeout time.Duration // default 2m
	Poll    time.Duration // default 500ms
}

// WaitHealthy polls the kubelet's healthz and its serving endpoint until both are as
// wanted or the deadline passes; the error then says what it last saw.
func WaitHealthy(ctx context.Context, o WaitOptions) error {
	if o.HealthzURL == "" {
		o.HealthzURL = "http://127.0.0.1:10248/healthz"
	}
	if o.ServingAddr == "" {
		o.ServingAddr = "127.0.0.1:10250"
	}
	if o.Timeout == 0 {
		o.Timeout = 2 * time.Minute
	}
	if o.Poll == 0 {
		o.Poll = 500 * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	var last error
	for {
		err := check(ctx, client, o)
		if err == nil {
			return nil
		}
		// A check cut short by the deadline says nothing: report the last one that finished.
		if ctx.Err() == nil || last == nil {
			last = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kubelet not ready after %s: %w", o.Timeout, last)
		case <-time.After(o.Poll):
		}
	}
}

func check(ctx context.Context, client *http.Client, o WaitOptions) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, o.HealthzURL, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("healthz: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthz: HTTP %d", resp.StatusCode)
	}
	chain, err := live.Served(ctx, o.ServingAddr, "", nil, 2*time.Second)
	if err != nil {
		return fmt.Errorf("serving endpoint: %w", err)
	}
	if o.Serving != nil {
		if err := o.Serving(chain); err != nil {
			return fmt.Errorf("serving certificate: %w", err)
		}
	}
	return nil
}
