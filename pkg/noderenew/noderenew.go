// Package noderenew is `certctl renew` on a node around the renewal itself (pkg/renew): the
// Lease it holds beside cluster renew and the scheduled CronJobs, the record of --san in
// kube-system/kubeadm-config, the restart of what was renewed (pkg/restart), and the Events on
// the Node after the run (pkg/monitoring).
package noderenew

import (
	"context"
	"fmt"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/certctl/certctl/pkg/kubeadmconfig"
	"github.com/certctl/certctl/pkg/kubeconfig"
	"github.com/certctl/certctl/pkg/lease"
	"github.com/certctl/certctl/pkg/monitoring"
	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/renew"
	"github.com/certctl/certctl/pkg/restart"
)

// Options are a renewal on a node and what goes with it.
type Options struct {
	renew.RunOptions
	// Where finds the API client of kubeadm-config (Flag, else admin.conf), of the Lease and
	// of the Events (Flag, else admin.conf, else in a pod its service account).
	Where kubeconfig.Where
	// Lease (NAMESPACE/NAME) is held while renewing, waiting up to LeaseWait for another holder.
	Lease     string
	LeaseWait time.Duration
	// SkipKubeadmConfig: do not record the SANs in kubeadm-config (kubeadm would drop them at
	// its next upgrade otherwise).
	SkipKubeadmConfig bool
	// Restart, when set, restarts what was renewed (refused before anything is renewed when
	// no kubelet runs the node's static pods).
	Restart *restart.Request
	// EventsNode: after the run, whatever its outcome, an Event on this Node for every warning
	// or critical finding of inspect (its warnings go to Log).
	EventsNode string
}

// Run renews on the node as o says.
func Run(ctx context.Context, l pki.Layout, o Options) (*renew.RunResult, error) {
	ro := o.RunOptions
	if o.Lease != "" {
		lo, err := o.leaseOptions()
		if err != nil {
			return nil, err
		}
		ro.Lease = lo
	}
	if len(ro.SANs) > 0 && !o.SkipKubeadmConfig {
		cs, err := kubeadmconfig.NewClientset(o.Where.AdminPath(), 0)
		ro.KubeadmConfig = &renew.KubeadmConfigOptions{Client: cs, ClientErr: err}
	}
	if o.Restart != nil {
		req := *o.Restart
		if !ro.DryRun && !ro.CSROnly {
			if _, err := restart.CheckNode(req); err != nil {
				return nil, fmt.Errorf("--restart: %w; nothing was renewed", err)
			}
		}
		ro.After = func(ctx context.Context, names []string, backupID string) error {
			_, err := restart.AfterRenew(ctx, req, names, backupID)
			return err
		}
	}
	res, err := renew.Run(ctx, l, ro)
	if o.EventsNode != "" && !ro.DryRun {
		monitoring.RecordNodeWith(ctx, o.Where.PodConfig, l, o.EventsNode, ro.Log)
	}
	return res, err
}

// leaseOptions is --lease: the Lease and a client for it.
func (o Options) leaseOptions() (*renew.LeaseOptions, error) {
	ns, name, err := lease.ParseRef(o.Lease)
	if err != nil {
		return nil, err
	}
	if o.LeaseWait < 0 {
		return nil, fmt.Errorf("--lease-wait %s: must not be negative", o.LeaseWait)
	}
	rc, err := o.Where.PodConfig()
	if err != nil {
		return nil, fmt.Errorf("--lease: %w", err)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("--lease: %w", err)
	}
	return &renew.LeaseOptions{Client: cs, Options: lease.Options{Namespace: ns, Name: name, Wait: o.LeaseWait}}, nil
}
