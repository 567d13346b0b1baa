package restart_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/etcdmember"
	"github.com/certctl/certctl/pkg/restart"
)

// A node whose etcd member (its kubeadm manifest, pointed at member cp1 of a real
// three-member cluster) may restart only while the other members are healthy: with cp3 down
// `restart etcd` is refused before anything is touched, naming cp3; a check that finds cp3
// down waits for it and lets the restart go once it is back.
func TestEtcdRestartGuard(t *testing.T) {
	tr := testenv.KubeadmTree(t, testenv.TreeOptions{Node: true})
	ec := testenv.StartEtcdCluster(t, tr.Layout.PKIDir, 3)
	manifest := filepath.Join(tr.Layout.ManifestsDir, "etcd.yaml")
	data, err := os.ReadFile(manifest)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), "https://127.0.0.1:2379") {
		t.Fatalf("kubeadm's etcd.yaml has no https://127.0.0.1:2379:\n%s", data)
	}
	data = []byte(strings.ReplaceAll(string(data), "https://127.0.0.1:2379", ec.Members[0].ClientURL))
	if err := os.WriteFile(manifest, data, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	cl, err := restart.CheckEtcdRestart(ctx, tr.Layout, time.Second, nil)
	if err != nil || cl == nil || len(cl.Members) != 3 {
		t.Fatalf("all members healthy: %+v, %v", cl, err)
	}
	if local, _ := cl.Local(); local.Name != "cp1" {
		t.Errorf("the node's member is %s, want cp1 (its manifest's URL)", local)
	}

	down := ec.Members[2]
	ec.Stop(down)
	var progress bytes.Buffer
	_, err = restart.Run(ctx, restart.Options{Layout: tr.Layout, PeerWait: 2 * time.Second, Progress: restart.NewProgress(&progress, false),
		Steps: []restart.Step{{Component: "etcd", Action: restart.ActionRestart}}})
	var unsafe *etcdmember.UnhealthyPeersError
	if !errors.As(err, &unsafe) || len(unsafe.Unhealthy) != 1 || unsafe.Unhealthy[0].Name != down.Name {
		t.Fatalf("restart etcd with %s down: want *UnhealthyPeersError naming it, got %v", down.Name, err)
	}
	t.Logf("refused: %v\nprogress:\n%s", err, progress.String())
	if after, err := os.ReadFile(manifest); err != nil || !bytes.Equal(after, data) {
		t.Errorf("the refused restart touched %s (%v)", manifest, err)
	}
	if entries, _ := os.ReadDir(filepath.Join(tr.Layout.StateDir(), "staging")); len(entries) != 0 {
		t.Errorf("the refused restart staged %d manifests", len(entries))
	}

	// The check waits for the member to come back.
	done := make(chan error, 1)
	go func() {
		_, err := restart.CheckEtcdRestart(ctx, tr.Layout, 2*time.Minute, nil)
		done <- err
	}()
	ec.Start(t, down)
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("after %s came back: %v", down.Name, err)
		}
	case <-time.After(3 * time.Minute):
		t.Fatal("the check did not end within its wait")
	}
}
