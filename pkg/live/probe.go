package live

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/render"
)

// ProbeOptions are a `certctl probe`.
type ProbeOptions struct {
	Addr       string        // HOST:PORT
	CAFile     string        // node path of the CA bundle (under the root); default the cluster CA
	ServerName string        // name or IP to verify; default the host dialled
	Timeout    time.Duration // dial timeout
	Now        time.Time     // zero: now
}

// ProbeReport is a probe's result with the CA it verified against.
type ProbeReport struct {
	*ProbeResult
	CAFile string `json:"caFile"`
}

// ProbeEndpoint reads the CA bundle of the node at l and probes o.Addr against it.
func ProbeEndpoint(ctx context.Context, l pki.Layout, o ProbeOptions) (*ProbeReport, error) {
	caFile := filepath.Join(l.PKIDir, "ca.crt")
	if o.CAFile != "" {
		caFile = o.CAFile
	}
	caFile = l.Resolve(caFile)
	data, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("read CA %s: %w (give --ca)", caFile, err)
	}
	cas, err := pki.ParseCertificates(caFile, data)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	for _, c := range cas {
		roots.AddCert(c)
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	res, err := Probe(ctx, o.Addr, o.ServerName, roots, o.Now, o.Timeout)
	if err != nil {
		return nil, err
	}
	return &ProbeReport{ProbeResult: res, CAFile: caFile}, nil
}

// Render writes the report as text or json.
func (r *ProbeReport) Render(w io.Writer, format string) error {
	switch format {
	case "json":
		return render.JSON(w, r)
	case "text":
	default:
		return fmt.Errorf("unknown output format %q (want text or json)", format)
	}
	if r.Subject != "" {
		fmt.Fprintf(w, "endpoint:  %s (verifying as %s)\nsubject:   %s\nissuer:    %s\nexpires:   %s\nSANs:      %s\n",
			r.Addr, r.ServerName, r.Subject, r.Issuer, r.NotAfter.Format(time.RFC3339), strings.Join(r.SANs, ", "))
	}
	if r.OK {
		fmt.Fprintf(w, "OK: %s serves a certificate that verifies against %s for %s\n", r.Addr, filepath.Base(r.CAFile), r.ServerName)
		return nil
	}
	fmt.Fprintf(w, "PROBLEM: %s\n", r.Problem)
	if r.Remedy != "" {
		fmt.Fprintf(w, "fix: %s\n", r.Remedy)
	}
	return nil
}
