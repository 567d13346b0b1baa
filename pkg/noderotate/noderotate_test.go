package noderotate_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/carotate"
	"github.com/certctl/certctl/pkg/noderotate"
	"github.com/certctl/certctl/pkg/restart"
)

// TestRun: on a tree written by the real kubeadm, a phase without a restart applies and says
// what it changed, and its result names nothing restarted. With a restart that cannot run (no
// kubelet runs this tree's static pods) the phase is applied, the error says the restart
// failed and what to run, and the manifest edits deferred to the restart are installed in
// place: none is left pending, the etcd manifest trusts the new etcd CA.
func TestRun(t *testing.T) {
	tr := testenv.KubeadmTree(t, testenv.TreeOptions{Node: true})
	l := tr.Layout
	var out, log bytes.Buffer
	nr, err := noderotate.Run(context.Background(), noderotate.Options{
		Rotate: carotate.Options{Layout: l, Generate: true, Days: 30}, CAs: []string{"ca"}, Phase: carotate.PhaseTrust, Out: &out, Log: &log})
	if err != nil {
		t.Fatalf("trust: %v\n%s", err, log.String())
	}
	if nr.Command != "ca rotate" || len(nr.Components) != 0 || nr.KubeletRestarted || !strings.Contains(out.String(), "ca:") {
		t.Errorf("trust without a restart: %+v\n%s", nr, out.String())
	}
	if _, err := os.Stat(filepath.Join(l.PKIDir, "rotation", "ca", "new.crt")); err != nil {
		t.Errorf("trust made no new CA: %v", err)
	}

	before, err := os.ReadFile(filepath.Join(l.ManifestsDir, "etcd.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	req := restart.Request{Layout: l, Out: &log}
	_, err = noderotate.Run(context.Background(), noderotate.Options{
		Rotate: carotate.Options{Layout: l, Generate: true}, CAs: []string{"etcd-ca"}, Phase: carotate.PhaseTrust, Restart: &req, Out: &out, Log: &log})
	if err == nil || !strings.Contains(err.Error(), "the change is applied, but the restart failed") || !strings.Contains(err.Error(), "certctl restart") {
		t.Fatalf("etcd-ca with a restart and no kubelet: %v", err)
	}
	after, err := os.ReadFile(filepath.Join(l.ManifestsDir, "etcd.yaml"))
	if err != nil || bytes.Equal(before, after) || !strings.Contains(string(after), "rotation") {
		t.Errorf("the etcd manifest was not installed in place (%v):\n%s", err, after)
	}
	if left, _ := os.ReadDir(l.PendingManifestsDir()); len(left) != 0 {
		t.Errorf("manifests left pending: %v", left)
	}
}
