//go:build failpoints

package noderotate_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/carotate"
	"github.com/certctl/certctl/pkg/failpoint"
	"github.com/certctl/certctl/pkg/noderotate"
	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/restart"
)

// TestRunRollsBackWhenAComponentDoesNotComeBack, in a build with the failpoints tag, on a tree
// of the newest kubeadm whose static pods run under the stand-in kubelet: phase trust of
// front-proxy-ca with a restart, the bundle it wrote broken (failpoint break-file) right before
// the apiserver starts on it. The apiserver never becomes ready on it, so the phase is rolled
// back on the node: a typed RolledBackError naming the apiserver and the phase, the apiserver's
// manifest byte for byte the one from before, no rotation state, no bundle, nothing left
// pending, and the apiserver ready again on the old files. The same phase again (the fault
// fired once) applies, and the apiserver comes back on the bundle.
func TestRunRollsBackWhenAComponentDoesNotComeBack(t *testing.T) {
	tr := testenv.KubeadmTree(t, testenv.TreeOptions{})
	ports := testenv.WriteStaticPods(t, tr)
	k := testenv.StartKubelet(t, tr)
	l := tr.Layout
	ready := fmt.Sprintf("https://127.0.0.1:%d/readyz", ports.APIServer)
	waitReady(t, ready, 2*time.Minute)
	manifest := filepath.Join(l.ManifestsDir, "kube-apiserver.yaml")
	before, err := os.ReadFile(manifest)
	if err != nil {
		t.Fatal(err)
	}
	bundle := "/etc/kubernetes/pki/rotation/front-proxy-ca/bundle.crt"
	if err := os.MkdirAll(l.StateDir(), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(failpoint.Path(l), []byte("before-start apiserver break-file "+bundle+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func() (string, error) {
		var out, log bytes.Buffer
		// 30 s for each wait: the apiserver's cold start, with other packages' tests beside it.
		req := restart.Request{Layout: l, Timeout: 30 * time.Second, Out: &log}
		_, err := noderotate.Run(context.Background(), noderotate.Options{
			Rotate: carotate.Options{Layout: l, Generate: true, Days: 30}, CAs: []string{"front-proxy-ca"},
			Phase: carotate.PhaseTrust, Restart: &req, Out: &out, Log: &log})
		t.Logf("out:\n%s\nrestart:\n%s", out.String(), log.String())
		return out.String(), err
	}

	out, err := run()
	var rb *noderotate.RolledBackError
	if !errors.As(err, &rb) {
		t.Fatalf("trust with the bundle broken: %v, want a RolledBackError\n%s", err, k.Log("kube-apiserver.yaml"))
	}
	if rb.Component != pki.CompAPIServer || rb.Phase != carotate.PhaseTrust || !slices.Equal(rb.CAs, []string{"front-proxy-ca"}) || !slices.Contains(rb.Restarted, pki.CompAPIServer) {
		t.Errorf("rolled back: %+v", rb)
	}
	if !strings.Contains(out, "rollback") {
		t.Errorf("the output does not show the phase's rollback:\n%s", out)
	}
	if left, err := os.ReadFile(failpoint.Path(l)); err != nil || len(bytes.TrimSpace(left)) != 0 {
		t.Fatalf("the failpoint did not fire: %q %v", left, err)
	}
	if got, err := os.ReadFile(manifest); err != nil || !bytes.Equal(got, before) {
		t.Errorf("the apiserver's manifest after the rollback is not the one from before (%v):\n%s", err, got)
	}
	if st, err := carotate.LoadState(l, "front-proxy-ca"); err != nil || st != nil {
		t.Errorf("rotation state after the rollback: %+v %v, want none", st, err)
	}
	if _, err := os.Stat(pki.UnderRoot(l.Root, bundle)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the broken bundle is still there: %v", err)
	}
	if left, _ := os.ReadDir(l.PendingManifestsDir()); len(left) != 0 {
		t.Errorf("manifests left pending: %v", left)
	}
	waitReady(t, ready, 10*time.Second) // verified by the rollback's restart: ready at once

	if _, err := run(); err != nil {
		t.Fatalf("trust again, the fault gone: %v\n%s", err, k.Log("kube-apiserver.yaml"))
	}
	if got, err := os.ReadFile(manifest); err != nil || !strings.Contains(string(got), "--requestheader-client-ca-file="+bundle) {
		t.Errorf("after trust the apiserver's manifest does not name the bundle (%v):\n%s", err, got)
	}
	if st, err := carotate.LoadState(l, "front-proxy-ca"); err != nil || st == nil || st.Phase != carotate.PhaseTrust {
		t.Errorf("rotation state after trust: %+v %v", st, err)
	}
	waitReady(t, ready, 10*time.Second)

	// The operator rolls the phase back (ca rotate --rollback --restart): the manifest from
	// before goes in through certctl's restart, drained and verified, not in place where the
	// kubelet would restart the apiserver at once, undrained. Held right before certctl's
	// restart of the apiserver, the manifest in place is still the phase's, the one from
	// before is pending.
	phaseManifest, err := os.ReadFile(manifest)
	if err != nil {
		t.Fatal(err)
	}
	const goOn = "/etc/kubernetes/certctl-test-go-on"
	if err := os.WriteFile(failpoint.Path(l), []byte("before-restart apiserver hold-until "+goOn+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out2, log2 bytes.Buffer
	done := make(chan error, 1)
	go func() {
		req := restart.Request{Layout: l, Timeout: 30 * time.Second, Out: &log2}
		_, err := noderotate.Run(context.Background(), noderotate.Options{
			Rotate: carotate.Options{Layout: l}, CAs: []string{"front-proxy-ca"}, Rollback: true, Restart: &req, Out: &out2, Log: &log2})
		done <- err
	}()
	held := func(ctx context.Context) (bool, error) {
		left, err := os.ReadFile(failpoint.Path(l))
		return err == nil && len(bytes.TrimSpace(left)) == 0, nil
	}
	if err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, time.Minute, true, held); err != nil {
		t.Fatalf("the rollback did not reach the apiserver's restart: %v", err)
	}
	if got, err := os.ReadFile(manifest); err != nil || !bytes.Equal(got, phaseManifest) {
		t.Errorf("before certctl's restart the manifest in place changed (%v): the kubelet restarts the apiserver at once, undrained", err)
	}
	if got, err := os.ReadFile(filepath.Join(l.PendingManifestsDir(), "kube-apiserver.yaml")); err != nil || !bytes.Equal(got, before) {
		t.Errorf("before certctl's restart the pending manifest is not the one from before the phase (%v)", err)
	}
	if _, err := os.Stat(pki.UnderRoot(l.Root, bundle)); err != nil {
		t.Errorf("before certctl's restart the bundle the manifest in place names is gone (%v): an apiserver the kubelet restarts then would not start", err)
	}
	if err := os.WriteFile(pki.UnderRoot(l.Root, goOn), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("rollback: %v\n%s\n%s", err, out2.String(), log2.String())
	}
	if got, err := os.ReadFile(manifest); err != nil || !bytes.Equal(got, before) {
		t.Errorf("the apiserver's manifest after the rollback is not the one from before (%v):\n%s", err, got)
	}
	if left, _ := os.ReadDir(l.PendingManifestsDir()); len(left) != 0 {
		t.Errorf("manifests left pending after the rollback: %v", left)
	}
	if st, err := carotate.LoadState(l, "front-proxy-ca"); err != nil || st != nil {
		t.Errorf("rotation state after the rollback: %+v %v, want none", st, err)
	}
	if _, err := os.Stat(pki.UnderRoot(l.Root, bundle)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the bundle is still there after the rollback: %v", err)
	}
	waitReady(t, ready, 10*time.Second)
}

// waitReady waits, up to timeout, until url answers 200.
func waitReady(t *testing.T, url string, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := testenv.WaitOK(ctx, url); err != nil {
		t.Fatalf("not ready within %s: %v", timeout, err)
	}
}
