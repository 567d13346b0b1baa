package etcdmember

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certctl/certctl/internal/testenv"
	"k8s.io/apimachinery/pkg/util/wait"
)

// On a real three-member etcd (the PKI a real kubeadm wrote): the members, their health and
// leader as each member sees them; the leadership handed away; a restart refused while a peer
// is down, naming it, and allowed again once the quorum is already lost or the peer is back.
func TestMembersOfARealCluster(t *testing.T) {
	tree := testenv.KubeadmTree(t, testenv.TreeOptions{})
	ec := testenv.StartEtcdCluster(t, tree.Layout.PKIDir, 3)
	caFile, certFile, keyFile := ec.Client()
	cfg := func(m *testenv.EtcdMember) Config {
		return Config{Endpoint: m.ClientURL, CAFile: caFile, CertFile: certFile, KeyFile: keyFile, Timeout: 2 * time.Second}
	}
	ctx := context.Background()
	byURL := map[string]*testenv.EtcdMember{}
	for _, m := range ec.Members {
		byURL[m.ClientURL] = m
	}

	cl, err := Inspect(ctx, cfg(ec.Members[0]))
	if err != nil {
		t.Fatal(err)
	}
	if len(cl.Members) != 3 {
		t.Fatalf("want 3 members, got %+v", cl.Members)
	}
	for _, m := range cl.Members {
		if !m.Healthy || m.Problem != "" {
			t.Errorf("member %s: healthy %v (%s), want healthy", m, m.Healthy, m.Problem)
		}
		if m.Local != (m.Name == "cp1") {
			t.Errorf("member %s: local %v, want it only for cp1", m, m.Local)
		}
	}
	leader, ok := cl.Leader()
	if !ok {
		t.Fatalf("no leader in %+v", cl.Members)
	}
	if err := cl.CheckRestart(); err != nil {
		t.Errorf("all members healthy: %v", err)
	}

	// The leader hands its leadership to a peer; asked from a follower, nothing moves.
	from := byURL[leader.ClientURLs[0]]
	lcl, err := Inspect(ctx, cfg(from))
	if err != nil {
		t.Fatal(err)
	}
	to, moved, err := MoveLeaderAway(ctx, cfg(from), lcl)
	if err != nil || !moved || to.Name == leader.Name {
		t.Fatalf("move leader away from %s: to %s, moved %v, %v", leader, to, moved, err)
	}
	after, err := Inspect(ctx, cfg(from))
	if err != nil {
		t.Fatal(err)
	}
	if l, _ := after.Leader(); l.ID != to.ID {
		t.Errorf("after moving the leadership to %s the leader is %s", to, l)
	}
	if _, moved, err := MoveLeaderAway(ctx, cfg(from), after); moved || err != nil {
		t.Errorf("a follower moved the leadership (%v, %v)", moved, err)
	}

	// One peer down: the two others refuse to restart, naming it.
	down := byURL[to.ClientURLs[0]]
	ec.Stop(down)
	var asked *testenv.EtcdMember
	for _, m := range ec.Members {
		if m != down {
			asked = m
			break
		}
	}
	cl, err = Inspect(ctx, cfg(asked))
	if err != nil {
		t.Fatal(err)
	}
	err = cl.CheckRestart()
	var unsafe *UnhealthyPeersError
	if !errors.As(err, &unsafe) {
		t.Fatalf("a peer down: want *UnhealthyPeersError, got %v (members %+v)", err, cl.Members)
	}
	if len(unsafe.Unhealthy) != 1 || unsafe.Unhealthy[0].Name != down.Name || unsafe.Unhealthy[0].Problem == "" {
		t.Errorf("want %s named unhealthy with its problem, got %+v", down.Name, unsafe.Unhealthy)
	}
	if !strings.Contains(err.Error(), down.ClientURL) {
		t.Errorf("the refusal does not name %s's URL: %v", down.Name, err)
	}

	// The member that is down does not answer: typed.
	if _, err := Inspect(ctx, cfg(down)); !errors.As(err, new(*LocalUnreachableError)) {
		t.Errorf("asking a stopped member: want *LocalUnreachableError, got %v", err)
	}

	// Two down: the quorum is already lost; restarting the last one cannot make it worse.
	var other *testenv.EtcdMember
	for _, m := range ec.Members {
		if m != down && m != asked {
			other = m
		}
	}
	ec.Stop(other)
	if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 20*time.Second, true, func(context.Context) (bool, error) {
		cl, err = Inspect(ctx, cfg(asked))
		if err != nil {
			return false, err
		}
		_, hasLeader := cl.Leader()
		return !hasLeader, nil
	}); err != nil {
		t.Fatalf("with two of three members down %s still reports a leader: %v", asked.Name, err)
	}
	if err := cl.CheckRestart(); err != nil {
		t.Errorf("quorum already lost: want the restart allowed, got %v", err)
	}

	// Back: healthy again, allowed.
	ec.Start(t, down)
	ec.Start(t, other)
	if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		cl, err = Inspect(ctx, cfg(asked))
		return err == nil && cl.CheckRestart() == nil && len(cl.Members) == 3 && allHealthy(cl), nil
	}); err != nil {
		t.Errorf("after the members came back: %v (%+v)", err, cl)
	}
}

func allHealthy(c *Cluster) bool {
	for _, m := range c.Members {
		if !m.Healthy {
			return false
		}
	}
	return true
}

// Bad credentials name the file.
func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.crt")
	if err := os.WriteFile(bad, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"missing client cert", Config{Endpoint: "https://127.0.0.1:1", CAFile: bad, CertFile: filepath.Join(dir, "none.crt"), KeyFile: filepath.Join(dir, "none.key")}, "none.crt"},
		{"bad client cert", Config{Endpoint: "https://127.0.0.1:1", CAFile: bad, CertFile: bad, KeyFile: bad}, "bad.crt"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Inspect(context.Background(), tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("want an error naming %s, got %v", tc.want, err)
			}
		})
	}
}
