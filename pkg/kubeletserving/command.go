package kubeletserving

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/certctl/certctl/pkg/kubeconfig"
	"github.com/certctl/certctl/pkg/restart"
)

// ApproveRun is certctl kubelet-serving approve: decide the CSRs once, or with Watch keep
// deciding them as they arrive (Serve), each decision written to Out in Output (text, json).
type ApproveRun struct {
	ServeOptions
	Watch       bool
	Output      string
	Out, ErrOut io.Writer
}

// Run decides; Client and Approve of ServeOptions say what with and how.
func (r ApproveRun) Run(ctx context.Context) error {
	if r.Output != "text" && r.Output != "json" {
		return fmt.Errorf("unknown output format %q (want text or json)", r.Output)
	}
	if (r.LeaderElect || r.MetricsAddr != "") && !r.Watch {
		return errors.New("--leader-elect and --metrics-addr go with --watch")
	}
	report := func(d Decision) {
		if err := WriteDecision(r.Out, r.Output, d); err != nil {
			fmt.Fprintf(r.ErrOut, "warning: %v\n", err)
		}
	}
	if r.Watch {
		r.Report = report
		r.Log = func(format string, a ...any) { fmt.Fprintf(r.ErrOut, format+"\n", a...) }
		return Serve(ctx, r.ServeOptions)
	}
	ds, err := Approve(ctx, r.Client, r.Approve)
	for _, d := range ds {
		report(d)
	}
	if err == nil && len(ds) == 0 && r.Output == "text" {
		fmt.Fprintln(r.Out, "no pending kubelet-serving CSR")
	}
	return err
}

// Render says what Issue wrote, and what stands between it and the kubelet serving it.
func (r *IssueResult) Render(w io.Writer) {
	fmt.Fprintf(w, "issued %s (and %s), valid until %s, backup %s\n", r.CertPath, r.KeyPath, r.Cert.NotAfter.UTC().Format(time.RFC3339), r.BackupID)
	if r.Capped {
		fmt.Fprintln(w, "note: the validity was cut at the cluster CA's expiry")
	}
	if r.BootstrapOn {
		fmt.Fprintln(w, "warning: serverTLSBootstrap is true in the kubelet config: the kubelet then ignores tlsCertFile; set it to false to use this certificate")
	}
}

// IssueAndLoad is certctl kubelet-serving issue: Issue, say what was written, then restart the
// kubelet so that it serves the certificate (with noRestart, say how to).
func IssueAndLoad(ctx context.Context, o IssueOptions, noRestart bool, out io.Writer) error {
	res, err := Issue(o)
	if err != nil {
		return err
	}
	res.Render(out)
	if noRestart {
		fmt.Fprintln(out, "restart the kubelet to load it: systemctl restart kubelet")
		return nil
	}
	if err := (restart.KubeletRestarter{Layout: o.Layout}).Restart(ctx); err != nil {
		return err
	}
	fmt.Fprintln(out, "kubelet restarted")
	return nil
}

// Fails reports whether metrics-server, verifying, fails on any node.
func (s *Status) Fails() bool {
	for _, n := range s.Nodes {
		if n.MetricsServerFails {
			return true
		}
	}
	return false
}

// EnableRun is certctl kubelet-serving enable: Enable with the admin's client where the node
// has one (a worker has none: the node's part only, the CSR approved elsewhere) and, with
// InstallApprover (and Cluster), the in-cluster approver of Image installed when it is not
// there.
type EnableRun struct {
	EnableOptions
	InstallApprover bool
	Image           string
}

// Run enables; client makes the API client, named says a kubeconfig was named (then it must
// be there).
func (r EnableRun) Run(ctx context.Context, client func() (kubernetes.Interface, error), named bool) error {
	cs, err := client()
	switch {
	case errors.Is(err, kubeconfig.ErrNotFound) && !r.Cluster && !named:
		cs = nil
	case err != nil:
		return err
	}
	r.Client = cs
	if r.InstallApprover {
		if !r.Cluster {
			return errors.New("--install-approver goes with --cluster")
		}
		if r.ApproverManifest, err = Manifest(ManifestOptions{Image: r.Image, DNSPatterns: r.Policy.DNSPatterns}); err != nil {
			return err
		}
	}
	_, err = Enable(ctx, r.EnableOptions)
	return err
}
