package restart

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/certctl/certctl/pkg/etcdmember"
	"github.com/certctl/certctl/pkg/manifest"
	"github.com/certctl/certctl/pkg/pki"
)

// DefaultPeerWait is how long a node's etcd restart waits for the other members to be healthy
// (the member restarted on the node before this one catching up) before it refuses.
const DefaultPeerWait = 60 * time.Second

// etcdConfig is how certctl reaches the node's own etcd member: its client URL on this node
// (the manifest's), its CA (--trusted-ca-file) and kubeadm's health-check client (the
// apiserver's etcd client when the tree has none).
func etcdConfig(l pki.Layout) (etcdmember.Config, error) {
	c, err := load(l, pki.CompEtcd)
	if err != nil {
		return etcdmember.Config{}, err
	}
	if c.servedAt == "" {
		return etcdmember.Config{}, fmt.Errorf("%s: no https URL in --listen-client-urls", c.manifest)
	}
	pod, err := manifest.Load(c.manifest)
	if err != nil {
		return etcdmember.Config{}, err
	}
	ca := pod.Flags()["trusted-ca-file"]
	if ca == "" {
		return etcdmember.Config{}, fmt.Errorf("%s: no --trusted-ca-file: cannot verify etcd", c.manifest)
	}
	cfg := etcdmember.Config{Endpoint: "https://" + c.servedAt, CAFile: pki.UnderRoot(l.Root, ca)}
	for _, base := range []string{"etcd/healthcheck-client", "apiserver-etcd-client"} {
		crt, key := filepath.Join(l.PKIDir, base+".crt"), filepath.Join(l.PKIDir, base+".key")
		if _, err := os.Stat(crt); err == nil {
			cfg.CertFile, cfg.KeyFile = crt, key
			return cfg, nil
		}
	}
	return etcdmember.Config{}, fmt.Errorf("no etcd client certificate in %s (etcd/healthcheck-client.crt or apiserver-etcd-client.crt): cannot ask the etcd members whether this one may restart", l.PKIDir)
}

// CheckEtcdRestart says whether the node's etcd member may restart now: every other voting
// member healthy (waiting up to wait for them), else *etcdmember.UnhealthyPeersError naming
// them. A member that does not answer itself may restart (nil, with the cluster nil); so may
// one of a cluster that has already lost its quorum.
func CheckEtcdRestart(ctx context.Context, l pki.Layout, wait time.Duration, p *Progress) (*etcdmember.Cluster, error) {
	cfg, err := etcdConfig(l)
	if err != nil {
		return nil, err
	}
	if p == nil {
		p = NewProgress(io.Discard, false)
	}
	start, first := time.Now(), true
	for {
		cl, err := etcdmember.Inspect(ctx, cfg)
		var unreachable *etcdmember.LocalUnreachableError
		if errors.As(err, &unreachable) {
			p.Line(pki.CompEtcd, "this node's member does not answer (%v): its restart cannot cost the others anything", unreachable.Err)
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		err = cl.CheckRestart()
		if err == nil || time.Since(start) >= wait {
			return cl, err
		}
		if first {
			p.Line(pki.CompEtcd, "waiting up to %s for the other members to be healthy: %v", wait, err)
			first = false
		}
		p.Tick(pki.CompEtcd, "waiting for the other etcd members to be healthy", time.Since(start))
		select {
		case <-ctx.Done():
			return cl, errors.Join(err, ctx.Err())
		case <-time.After(time.Second):
		}
	}
}

// beforeEtcdStop is the last check before the node's etcd member stops: the other members
// healthy, and the leadership handed to one of them when this member leads (else every
// member is without a leader until the election timeout, and every apiserver's requests that
// need etcd fail meanwhile).
func (o *Options) beforeEtcdStop(ctx context.Context) error {
	cl, err := CheckEtcdRestart(ctx, o.Layout, o.PeerWait, o.Progress)
	if err != nil || cl == nil {
		return err
	}
	cfg, err := etcdConfig(o.Layout)
	if err != nil {
		return err
	}
	to, moved, err := etcdmember.MoveLeaderAway(ctx, cfg, cl)
	switch {
	case err != nil:
		// Not a reason to stop: the restart then costs an election, as without certctl.
		o.Progress.Line(pki.CompEtcd, "could not hand the leadership away (%v): the members elect a new leader when it stops", err)
	case moved:
		o.Progress.Line(pki.CompEtcd, "this member led: handed the leadership to %s", to)
	}
	return nil
}
