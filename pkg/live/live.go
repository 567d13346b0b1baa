// Package live talks TLS to a node's endpoints: which certificate each component serves right
// now (to tell a component that still runs on an old certificate, case D), and a strict
// probe that verifies an endpoint the way kubeadm join does and explains failures (case B).
package live

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/certctl/certctl/pkg/manifest"
	"github.com/certctl/certctl/pkg/pki"
)

// Served dials addr and returns the certificate chain the server presents, without
// verifying it. clientCert, when not nil, is offered to servers that ask for one (etcd).
func Served(ctx context.Context, addr, serverName string, clientCert *tls.Certificate, timeout time.Duration) ([]*x509.Certificate, error) {
	var chain []*x509.Certificate
	cfg := &tls.Config{
		ServerName:         serverName,
		InsecureSkipVerify: true, //nolint:gosec // we only read the chain; Probe verifies.
		// Capture the chain during the handshake: servers that require a client
		// certificate may abort the handshake after sending theirs.
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			for _, r := range raw {
				c, err := x509.ParseCertificate(r)
				if err != nil {
					return err
				}
				chain = append(chain, c)
			}
			return nil
		},
	}
	if clientCert != nil {
		cfg.Certificates = []tls.Certificate{*clientCert}
	}
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: cfg}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := d.DialContext(cctx, "tcp", addr)
	if conn != nil {
		conn.Close()
	}
	if len(chain) > 0 {
		return chain, nil
	}
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return nil, fmt.Errorf("dial %s: no certificate presented", addr)
}

// Endpoint is a local component's TLS port and the inventory item it should serve.
type Endpoint struct {
	Component string
	Addr      string // host:port
	Item      string // inventory name of the certificate it serves from disk; "" when in memory only
}

// Endpoints derives the local endpoints from the static-pod manifests (apiserver
// --secure-port, etcd --listen-client-urls) with kubeadm's defaults for the rest.
func Endpoints(l pki.Layout) []Endpoint {
	apiPort := "6443"
	if p, err := manifest.LoadComponent(l.ManifestsDir, "apiserver"); err == nil {
		if v := p.Flags()["secure-port"]; v != "" {
			apiPort = v
		}
	}
	etcdAddr := "127.0.0.1:2379"
	if p, err := manifest.LoadComponent(l.ManifestsDir, "etcd"); err == nil {
		etcdAddr = pickURL(p.Flags()["listen-client-urls"], etcdAddr)
	}
	cm, sched := "127.0.0.1:10257", "127.0.0.1:10259"
	if p, err := manifest.LoadComponent(l.ManifestsDir, "controller-manager"); err == nil {
		if v := p.Flags()["secure-port"]; v != "" {
			cm = "127.0.0.1:" + v
		}
	}
	if p, err := manifest.LoadComponent(l.ManifestsDir, "scheduler"); err == nil {
		if v := p.Flags()["secure-port"]; v != "" {
			sched = "127.0.0.1:" + v
		}
	}
	return []Endpoint{
		{Component: pki.CompEtcd, Addr: etcdAddr, Item: "etcd-server"},
		{Component: pki.CompAPIServer, Addr: net.JoinHostPort("127.0.0.1", apiPort), Item: "apiserver"},
		{Component: pki.CompControllerManager, Addr: cm},
		{Component: pki.CompScheduler, Addr: sched},
		{Component: pki.CompKubelet, Addr: "127.0.0.1:10250", Item: "kubelet-serving"},
	}
}

// pickURL returns host:port of the first https URL in a comma-separated list, preferring a
// loopback one.
func pickURL(list, def string) string {
	var first string
	for _, s := range strings.Split(list, ",") {
		u, err := url.Parse(strings.TrimSpace(s))
		if err != nil || u.Scheme != "https" {
			continue
		}
		if ip := net.ParseIP(u.Hostname()); ip != nil && ip.IsLoopback() {
			return u.Host
		}
		if first == "" {
			first = u.Host
		}
	}
	if first != "" {
		return first
	}
	return def
}

// Fingerprint is a certificate's SHA-256 in the usual colon-free hex.
func Fingerprint(c *x509.Certificate) string {
	return fmt.Sprintf("%x", sha256Sum(c.Raw))
}

// ProbeResult is what Probe found.
type ProbeResult struct {
	Addr       string              `json:"addr"`
	ServerName string              `json:"serverName"`
	Chain      []*x509.Certificate `json:"-"`
	OK         bool                `json:"ok"`
	Problem    string              `json:"problem,omitempty"`
	Remedy     string              `json:"remedy,omitempty"`
	Subject    string              `json:"subject,omitempty"`
	Issuer     string              `json:"issuer,omitempty"`
	NotAfter   time.Time           `json:"notAfter,omitempty"`
	SANs       []string            `json:"sans,omitempty"`
}

// Probe dials addr and verifies what it serves against roots and the name or IP dialled
// (serverName, default the host of addr), like a strict client such as kubeadm join.
func Probe(ctx context.Context, addr, serverName string, roots *x509.CertPool, now time.Time, timeout time.Duration) (*ProbeResult, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("address %q: want HOST:PORT: %w", addr, err)
	}
	if serverName == "" {
		serverName = host
	}
	res := &ProbeResult{Addr: addr, ServerName: serverName}
	chain, err := Served(ctx, addr, serverName, nil, timeout)
	if err != nil {
		res.Problem = explainDial(addr, err)
		res.Remedy = "check that the component runs and listens on " + addr + " (and that no firewall or load balancer in between drops the connection)"
		return res, nil
	}
	res.Chain = chain
	leaf := chain[0]
	res.Subject, res.Issuer, res.NotAfter = leaf.Subject.String(), leaf.Issuer.String(), leaf.NotAfter.UTC()
	res.SANs = append(res.SANs, leaf.DNSNames...)
	for _, ip := range leaf.IPAddresses {
		res.SANs = append(res.SANs, ip.String())
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: serverName, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	if err == nil {
		res.OK = true
		return res, nil
	}
	res.Problem, res.Remedy = explainVerify(addr, serverName, leaf, err, now)
	return res, nil
}

func explainDial(addr string, err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Sprintf("nothing listens on %s (connection refused)", addr)
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		return fmt.Sprintf("%s did not answer in time (filtered, or the wrong address)", addr)
	}
	return fmt.Sprintf("could not complete a TLS handshake with %s: %v", addr, err)
}

func explainVerify(addr, name string, leaf *x509.Certificate, err error, now time.Time) (string, string) {
	var he x509.HostnameError
	var ua x509.UnknownAuthorityError
	var ci x509.CertificateInvalidError
	kind := "DNS name"
	if net.ParseIP(name) != nil {
		kind = "IP address"
	}
	sans := strings.Join(append(append([]string{}, leaf.DNSNames...), ipStrings(leaf.IPAddresses)...), ", ")
	if sans == "" {
		sans = "nothing"
	}
	switch {
	case errors.As(err, &he):
		return fmt.Sprintf("the certificate served at %s does not cover the %s %s; it covers %s. A strict client such as kubeadm join fails (it hangs in preflight, then times out)", addr, kind, name, sans),
			"certctl renew apiserver --san " + name + " (then certctl restart apiserver)"
	case errors.As(err, &ua):
		return fmt.Sprintf("the certificate served at %s is issued by %q, which is not the cluster CA: clients that trust the cluster CA reject it", addr, leaf.Issuer.String()),
			"the endpoint serves a certificate from another CA (another cluster, a load balancer terminating TLS, or a CA that was replaced): make it serve one signed by the cluster CA"
	case errors.As(err, &ci) && ci.Reason == x509.Expired:
		if now.After(leaf.NotAfter) {
			return fmt.Sprintf("the certificate served at %s expired on %s", addr, leaf.NotAfter.UTC().Format(time.RFC3339)),
				"certctl renew --days 365 (then certctl restart)"
		}
		return fmt.Sprintf("the certificate served at %s is not valid yet (from %s): check the clocks", addr, leaf.NotBefore.UTC().Format(time.RFC3339)), "fix the clock of the signing machine or of this one"
	case errors.As(err, &ci) && ci.Reason == x509.IncompatibleUsage:
		return fmt.Sprintf("the certificate served at %s is not allowed for server authentication (extended key usage)", addr), "re-issue it with serverAuth: certctl renew"
	}
	return fmt.Sprintf("the certificate served at %s does not verify: %v", addr, err), ""
}

func ipStrings(ips []net.IP) []string {
	out := make([]string, len(ips))
	for i, ip := range ips {
		out[i] = ip.String()
	}
	return out
}
