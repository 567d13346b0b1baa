package live

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/certctl/certctl/pkg/inspect"
	"github.com/certctl/certctl/pkg/manifest"
	"github.com/certctl/certctl/pkg/pki"
)

// Check dials the node's endpoints and adds to r what they serve and, where it differs from
// the file on disk, a served-certificate-stale finding: the component still runs on the
// old certificate and needs a restart (case D).
func Check(ctx context.Context, inv *pki.Inventory, r *inspect.Report, timeout time.Duration) {
	eps := Endpoints(inv.Layout)
	var clientCert *tls.Certificate
	if hc := inv.Get("etcd-healthcheck-client"); hc != nil && hc.Cert() != nil {
		if c, err := tls.LoadX509KeyPair(hc.Path, hc.KeyPath); err == nil {
			clientCert = &c
		}
	}
	type result struct {
		ep    Endpoint
		chain []*x509.Certificate
		err   error
	}
	results := make([]result, len(eps))
	var wg sync.WaitGroup
	for i, ep := range eps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var cc *tls.Certificate
			if ep.Component == pki.CompEtcd {
				cc = clientCert
			}
			chain, err := Served(ctx, ep.Addr, "", cc, timeout)
			results[i] = result{ep: ep, chain: chain, err: err}
		}()
	}
	wg.Wait()
	for _, res := range results {
		ep := res.ep
		row := ep.Item
		if row == "" {
			row = map[string]string{pki.CompControllerManager: "controller-manager.conf", pki.CompScheduler: "scheduler.conf"}[ep.Component]
		}
		if res.err != nil {
			if expected(inv, ep.Component) {
				r.AddFinding(row, inspect.Finding{Severity: inspect.SevInfo, Code: inspect.CodeEndpointUnreachable,
					Message: fmt.Sprintf("%s endpoint %s did not answer: %v", ep.Component, ep.Addr, res.err),
					Remedy:  "check that the " + ep.Component + " runs (crictl ps, or the kubelet's log)"})
			}
			continue
		}
		if ep.Item == "" {
			continue
		}
		it := inv.Get(ep.Item)
		served := res.chain[0]
		c := r.Get(ep.Item)
		if c == nil || it == nil {
			continue
		}
		match := it.Cert() != nil && served.Equal(it.Cert())
		c.Served = &inspect.Served{Addr: ep.Addr, Serial: fmt.Sprintf("%x", served.SerialNumber), NotAfter: served.NotAfter.UTC(), Fingerprint: Fingerprint(served), MatchesDisk: match}
		if !match && it.Cert() != nil {
			r.AddFinding(ep.Item, inspect.Finding{Severity: inspect.SevCritical, Code: inspect.CodeServedStale,
				Message: fmt.Sprintf("%s on %s serves a certificate (serial %x, expires %s) that is not %s (serial %x, expires %s): the running %s has not picked up the file on disk",
					ep.Component, ep.Addr, served.SerialNumber, served.NotAfter.UTC().Format(time.RFC3339), filepath.Base(it.Path), it.Cert().SerialNumber, it.Cert().NotAfter.UTC().Format(time.RFC3339), ep.Component),
				Remedy: "certctl restart " + ep.Component})
		}
	}
}

// expected reports whether the node should run component: its manifest (or, for the
// kubelet, its config) is there.
func expected(inv *pki.Inventory, component string) bool {
	if component == pki.CompKubelet {
		_, err := os.Stat(filepath.Join(inv.Layout.KubeletDir, "config.yaml"))
		return err == nil
	}
	f, ok := manifest.Files[component]
	if !ok {
		return false
	}
	_, err := os.Stat(filepath.Join(inv.Layout.ManifestsDir, f))
	return err == nil
}
