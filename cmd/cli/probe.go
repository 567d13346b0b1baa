package cli

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/certctl/certctl/pkg/live"
	"github.com/certctl/certctl/pkg/pki"
	"github.com/spf13/cobra"
)

type probeOptions struct {
	*Globals
	CAFile     string
	ServerName string
	Timeout    time.Duration
	Output     string
}

func newProbeCmd(g *Globals) *cobra.Command {
	o := &probeOptions{Globals: g}
	cmd := &cobra.Command{
		Use:   "probe HOST:PORT",
		Short: "Check an endpoint the way a strict client (kubeadm join) does",
		Long: `probe dials HOST:PORT, verifies the certificate it serves against the cluster CA and
the name or IP dialled, exactly as kubeadm join or kubectl would, and explains a failure in
plain words with the command that fixes it.

Exit codes: 0 the endpoint verifies, 2 it does not, 3 error.`,
		Example: `  # joining through the load balancer hangs? (case B)
  certctl probe 10.2.1.139:6443
  # another CA file, or a name instead of the dialled address
  certctl probe 10.2.1.151:6443 --ca /etc/kubernetes/pki/ca.crt --server-name kubernetes.default`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return o.run(cmd.Context(), args[0]) },
	}
	f := cmd.Flags()
	f.StringVar(&o.CAFile, "ca", "", "CA bundle to verify against (default: the cluster CA, ca.crt in the PKI dir)")
	f.StringVar(&o.ServerName, "server-name", "", "name or IP to verify (default: the host dialled)")
	f.DurationVar(&o.Timeout, "timeout", 5*time.Second, "dial timeout")
	f.StringVarP(&o.Output, "output", "o", "text", "output format: text or json")
	return cmd
}

func (o *probeOptions) run(ctx context.Context, addr string) error {
	if o.Output != "text" && o.Output != "json" {
		return withCode(ExitError, fmt.Errorf("unknown output format %q (want text or json)", o.Output))
	}
	caFile := o.CAFile
	if caFile == "" {
		caFile = filepath.Join(o.Layout().PKIDir, "ca.crt")
	} else {
		caFile = pki.UnderRoot(o.Layout().Root, caFile)
	}
	data, err := os.ReadFile(caFile)
	if err != nil {
		return withCode(ExitError, fmt.Errorf("read CA %s: %w (give --ca)", caFile, err))
	}
	cas, err := pki.ParseCertificates(caFile, data)
	if err != nil {
		return withCode(ExitError, err)
	}
	roots := x509.NewCertPool()
	for _, c := range cas {
		roots.AddCert(c)
	}
	if ctx == nil {
		ctx = context.Background()
	}
	res, err := live.Probe(ctx, addr, o.ServerName, roots, time.Now(), o.Timeout)
	if err != nil {
		return withCode(ExitError, err)
	}
	w := o.Streams.Out
	if o.Output == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return withCode(ExitError, err)
		}
	} else {
		if res.Subject != "" {
			fmt.Fprintf(w, "endpoint:  %s (verifying as %s)\nsubject:   %s\nissuer:    %s\nexpires:   %s\nSANs:      %s\n",
				res.Addr, res.ServerName, res.Subject, res.Issuer, res.NotAfter.Format(time.RFC3339), strings.Join(res.SANs, ", "))
		}
		if res.OK {
			fmt.Fprintf(w, "OK: %s serves a certificate that verifies against %s for %s\n", res.Addr, filepath.Base(caFile), res.ServerName)
		} else {
			fmt.Fprintf(w, "PROBLEM: %s\n", res.Problem)
			if res.Remedy != "" {
				fmt.Fprintf(w, "fix: %s\n", res.Remedy)
			}
		}
	}
	if !res.OK {
		return withCode(ExitCritical, nil)
	}
	return nil
}
