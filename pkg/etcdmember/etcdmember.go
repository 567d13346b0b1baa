// Package etcdmember tells, from one control-plane node, whether its etcd member can be
// restarted without costing the cluster its quorum, and hands the member's leadership to a
// healthy peer before it stops (etcdctl's `member list`, `endpoint status` and `move-leader`,
// through the etcd client library).
//
// A stacked kubeadm control plane runs one etcd member per control-plane node; each apiserver
// talks to its local member only. While a member restarts, the others must hold the quorum:
// with three members, one already down and this one stopped, etcd stops serving everywhere.
// And when the member that stops leads, every member is without a leader until the election
// timeout: every apiserver's writes and quorum reads fail meanwhile, not only this node's.
package etcdmember

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"k8s.io/client-go/util/cert"
)

// Config is how this node reaches its own member: its client URL and the credentials of an
// etcd client (kubeadm: etcd/ca.crt and etcd/healthcheck-client.crt/.key).
type Config struct {
	Endpoint string // https://127.0.0.1:2379
	CAFile   string
	CertFile string
	KeyFile  string
	// Timeout bounds each request to one member; default 5s.
	Timeout time.Duration
}

// Member is one etcd member as this node sees it.
type Member struct {
	ID         uint64   `json:"id"`
	Name       string   `json:"name"`
	ClientURLs []string `json:"clientURLs"`
	Learner    bool     `json:"learner,omitempty"`
	Local      bool     `json:"local,omitempty"` // the member this node runs
	Leader     bool     `json:"leader,omitempty"`
	Healthy    bool     `json:"healthy"`
	// Problem is why the member is not healthy ("" when it is).
	Problem string `json:"problem,omitempty"`
	// RaftIndex is the member's applied index, to pick the most up-to-date new leader.
	RaftIndex uint64 `json:"raftIndex,omitempty"`
}

// String names a member as an operator finds it: its name and client URL.
func (m Member) String() string {
	url := strings.Join(m.ClientURLs, ",")
	if m.Name == "" {
		return fmt.Sprintf("%x (%s)", m.ID, url)
	}
	return fmt.Sprintf("%s (%s)", m.Name, url)
}

// Cluster is every member, with the health of each, seen from the local member.
type Cluster struct {
	Members []Member `json:"members"`
}

// Local is the member this node runs.
func (c *Cluster) Local() (Member, bool) {
	i := slices.IndexFunc(c.Members, func(m Member) bool { return m.Local })
	if i < 0 {
		return Member{}, false
	}
	return c.Members[i], true
}

// Leader is the member that leads, as the healthy members report it.
func (c *Cluster) Leader() (Member, bool) {
	i := slices.IndexFunc(c.Members, func(m Member) bool { return m.Leader })
	if i < 0 {
		return Member{}, false
	}
	return c.Members[i], true
}

// UnhealthyPeersError refuses to stop the local member while another voting member is not
// healthy: the restart could cost the cluster its quorum.
type UnhealthyPeersError struct {
	Local     Member
	Unhealthy []Member
}

func (e *UnhealthyPeersError) Error() string {
	parts := make([]string, len(e.Unhealthy))
	for i, m := range e.Unhealthy {
		parts[i] = fmt.Sprintf("%s: %s", m, m.Problem)
	}
	return fmt.Sprintf("not restarting etcd member %s while other members are unhealthy (a restart now could cost the cluster its quorum): %s; bring them back first (etcdctl endpoint health --cluster)", e.Local, strings.Join(parts, "; "))
}

// LocalUnreachableError says the local member did not answer: nothing is known of the others.
type LocalUnreachableError struct {
	Endpoint string
	Err      error
}

func (e *LocalUnreachableError) Error() string {
	return fmt.Sprintf("etcd at %s does not answer: %v", e.Endpoint, e.Err)
}

func (e *LocalUnreachableError) Unwrap() error { return e.Err }

func (c Config) timeout() time.Duration {
	if c.Timeout <= 0 {
		return 5 * time.Second
	}
	return c.Timeout
}

func (c Config) tls() (*tls.Config, error) {
	pair, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("etcd client certificate %s / %s: %w", c.CertFile, c.KeyFile, err)
	}
	roots, err := cert.NewPool(c.CAFile)
	if err != nil {
		return nil, fmt.Errorf("etcd CA %s: %w", c.CAFile, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: roots, MinVersion: tls.VersionTLS12}, nil
}

func (c Config) client(ctx context.Context, tc *tls.Config, endpoints []string) (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{
		Endpoints: endpoints, TLS: tc, DialTimeout: c.timeout(), Context: ctx,
		// One endpoint per client, never synced: each member is asked about itself.
		Logger: zap.NewNop(),
	})
}

// Inspect lists the members through the local one and asks each for its status. An error of
// type *LocalUnreachableError means the local member did not answer.
func Inspect(ctx context.Context, c Config) (*Cluster, error) {
	tc, err := c.tls()
	if err != nil {
		return nil, err
	}
	local, err := c.client(ctx, tc, []string{c.Endpoint})
	if err != nil {
		return nil, &LocalUnreachableError{Endpoint: c.Endpoint, Err: err}
	}
	defer local.Close()
	rctx, cancel := context.WithTimeout(ctx, c.timeout())
	defer cancel()
	st, err := local.Status(rctx, c.Endpoint)
	if err != nil {
		return nil, &LocalUnreachableError{Endpoint: c.Endpoint, Err: err}
	}
	list, err := local.MemberList(rctx, clientv3.WithSerializable()) // answered without a quorum too
	if err != nil {
		return nil, &LocalUnreachableError{Endpoint: c.Endpoint, Err: fmt.Errorf("member list: %w", err)}
	}
	out := &Cluster{}
	for _, pm := range list.Members {
		m := Member{ID: pm.ID, Name: pm.Name, ClientURLs: pm.ClientURLs, Learner: pm.IsLearner, Local: pm.ID == st.Header.MemberId}
		if m.Local {
			status(&m, st.Leader, st.RaftAppliedIndex, st.Errors, nil)
		} else {
			m.status(ctx, c, tc)
		}
		out.Members = append(out.Members, m)
	}
	leader := uint64(0)
	for _, m := range out.Members {
		if m.Healthy && m.Local {
			leader = st.Leader
		}
	}
	for i := range out.Members {
		out.Members[i].Leader = leader != 0 && out.Members[i].ID == leader
	}
	return out, nil
}

// status asks the member itself (one of its client URLs) for its status.
func (m *Member) status(ctx context.Context, c Config, tc *tls.Config) {
	if len(m.ClientURLs) == 0 {
		m.Problem = "it has no client URL (not started yet?)"
		return
	}
	var errs []error
	for _, u := range m.ClientURLs {
		cl, err := c.client(ctx, tc, []string{u})
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", u, err))
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, c.timeout())
		st, err := cl.Status(rctx, u)
		cancel()
		cl.Close()
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("no answer within %s", c.timeout())
		}
		if err != nil {
			if len(m.ClientURLs) > 1 {
				err = fmt.Errorf("%s: %w", u, err)
			}
			errs = append(errs, err)
			continue
		}
		status(m, st.Leader, st.RaftAppliedIndex, st.Errors, nil)
		return
	}
	status(m, 0, 0, nil, errors.Join(errs...))
}

func status(m *Member, leader, index uint64, alarms []string, err error) {
	m.RaftIndex = index
	switch {
	case err != nil:
		m.Problem = err.Error()
	case len(alarms) > 0:
		m.Problem = "it reports " + strings.Join(alarms, ", ")
	case leader == 0:
		m.Problem = "it has no leader"
	default:
		m.Healthy = true
	}
}

// CheckRestart says whether the local member may stop now. It refuses with
// *UnhealthyPeersError when another voting member is not healthy while the cluster has a
// leader (the local member's stop could then cost the quorum). A cluster without a leader has
// already lost its quorum, and an unhealthy local member serves nobody: restarting them cannot
// make things worse, so they are allowed.
func (c *Cluster) CheckRestart() error {
	local, ok := c.Local()
	if !ok || !local.Healthy {
		return nil
	}
	if _, ok := c.Leader(); !ok {
		return nil
	}
	var bad []Member
	for _, m := range c.Members {
		if !m.Local && !m.Learner && !m.Healthy {
			bad = append(bad, m)
		}
	}
	if len(bad) > 0 {
		return &UnhealthyPeersError{Local: local, Unhealthy: bad}
	}
	return nil
}

// MoveLeaderAway hands the leadership to the most up-to-date healthy voting peer when the
// local member leads, and waits until that peer reports itself leader. moved is false when
// the local member does not lead or has no healthy peer (a single-member etcd).
func MoveLeaderAway(ctx context.Context, c Config, cl *Cluster) (to Member, moved bool, err error) {
	local, ok := cl.Local()
	if !ok || !local.Leader {
		return Member{}, false, nil
	}
	for _, m := range cl.Members {
		if !m.Local && !m.Learner && m.Healthy && (!moved || m.RaftIndex > to.RaftIndex) {
			to, moved = m, true
		}
	}
	if !moved {
		return Member{}, false, nil
	}
	tc, err := c.tls()
	if err != nil {
		return to, false, err
	}
	lc, err := c.client(ctx, tc, []string{c.Endpoint})
	if err != nil {
		return to, false, &LocalUnreachableError{Endpoint: c.Endpoint, Err: err}
	}
	defer lc.Close()
	rctx, cancel := context.WithTimeout(ctx, 2*c.timeout())
	defer cancel()
	if _, err := lc.MoveLeader(rctx, to.ID); err != nil {
		return to, false, fmt.Errorf("move the etcd leadership from %s to %s: %w", local, to, err)
	}
	// MoveLeader returns once the transfer is done; the new leader says so too.
	st, err := lc.Status(rctx, c.Endpoint)
	if err != nil {
		return to, true, fmt.Errorf("etcd status after moving the leadership to %s: %w", to, err)
	}
	if st.Leader != to.ID {
		return to, true, fmt.Errorf("moved the etcd leadership to %s, but %s now reports leader %x", to, local, st.Leader)
	}
	return to, true, nil
}
