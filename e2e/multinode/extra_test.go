//go:build multilabextra

package multinode

// The lab tests CI does not run, for its 90 minutes: `make e2e-multi-extra` runs them (by hand,
// before a release; hack/lab/README.md). Build tag multilabextra; `make lint` vets them.

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/certctl/certctl/internal/multilab"
	"github.com/certctl/certctl/pkg/cluster"
)

// TestFaultNodeAwayCARotate is issue 21's second fault in a phase of `cluster ca-rotate`: phase
// trust of front-proxy-ca, and the second control-plane node's kubelet stopped (the node gone)
// while the first node's Job runs. The command finishes the first node, stops at the second once
// it is seen not Ready (not at the Job's timeout) naming it, the third untouched; with the
// kubelet back the same command resumes there, keeps the first node's new CA (the Secret's,
// not a second one) and finishes the phase; then the operator's rollback leaves no rotation
// anywhere. Through the balancer nothing fails all along, and every node's certificates keep
// their keys.
func TestFaultNodeAwayCARotate(t *testing.T) {
	nodes := requireLab(t)
	cps := controlPlanes(nodes)
	if len(cps) < 3 {
		t.Fatalf("the lab has %d control-plane nodes, want 3", len(cps))
	}
	first, away, last := cps[0], cps[1], cps[2]
	rotation := func(n multilab.Node, file string) string {
		return filepath.Join(n.Dir(), "etc-kubernetes", "pki", "rotation", "front-proxy-ca", file)
	}
	for _, n := range cps {
		if _, err := os.Stat(rotation(n, "state.json")); err == nil {
			t.Fatalf("%s has a rotation of front-proxy-ca before the test", n.Name)
		}
	}
	ctx := context.Background()
	cs := clientset(t)
	local := adminCopy(t)
	measure := balancerClients(t, local)
	back := true
	t.Cleanup(func() {
		if !back {
			lab(t, "kubelet", away.Name, "start")
		}
	})
	args := []string{"cluster", "ca-rotate", "front-proxy-ca", "--phase", "trust"}
	start := time.Now()
	cmd, out, exited := startCertctl(t, append(slices.Clone(args), "--kubeconfig", local, "--image", multilab.Image)...)
	waitJobMade(t, cs, cluster.LabelComponent+"=carotate,"+cluster.LabelNode+"="+first.Name, cmd, out, exited)
	lab(t, "kubelet", away.Name, "stop")
	back = false
	stopped := time.Now()
	t.Logf("%s's kubelet stopped %s after the command started (%s's Job made)", away.Name, stopped.Sub(start).Round(100*time.Millisecond), first.Name)
	err := endsWithin(t, cmd, out, exited, 8*time.Minute, "cluster ca-rotate front-proxy-ca --phase trust, "+away.Name+"'s kubelet stopped,")
	t.Logf("the command ended %s after the kubelet stopped: %v\n%s", time.Since(stopped).Round(100*time.Millisecond), err, out.String())
	if err == nil || !strings.Contains(out.String(), "node "+away.Name+" failed") {
		t.Fatalf("with %s's kubelet stopped, the command must stop at %s naming it: %v\n%s", away.Name, away.Name, err, out.String())
	}
	if took := time.Since(stopped); took > 5*time.Minute {
		t.Errorf("the command stopped %s after the kubelet did: the node not Ready was not noticed before the Job's timeout", took.Round(time.Second))
	}
	assertNoJobs(t)
	firstCA, err := os.ReadFile(rotation(first, "bundle.crt"))
	if err != nil {
		t.Errorf("%s, before the node that went away, is not at trust: %v", first.Name, err)
	}
	for _, n := range []multilab.Node{away, last} {
		if _, err := os.Stat(rotation(n, "state.json")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s has a rotation state after the stopped run (not reached): %v", n.Name, err)
		}
	}
	lab(t, "kubelet", away.Name, "start")
	back = true
	t.Logf("%s Ready again %s after its kubelet started", away.Name, waitNodeBack(t, cs, away.Name, 3*time.Minute).Round(time.Second))

	start = time.Now()
	r := certctlWith(t, local, args...)
	t.Logf("trust with %s back: %s", away.Name, time.Since(start).Round(100*time.Millisecond))
	if r.Code != 0 {
		t.Fatalf("cluster ca-rotate --phase trust with %s back: %s", away.Name, r)
	}
	assertNoJobs(t)
	for _, n := range cps {
		bundle, err := os.ReadFile(rotation(n, "bundle.crt"))
		if err != nil {
			t.Errorf("%s not at trust after the run that resumed: %v", n.Name, err)
			continue
		}
		if !bytes.Equal(bundle, firstCA) {
			t.Errorf("%s trusts another bundle than %s's from the run before: a second new CA", n.Name, first.Name)
		}
	}
	r = certctlWith(t, local, "cluster", "ca-rotate", "front-proxy-ca", "--rollback", "--phase", "trust")
	if r.Code != 0 {
		t.Fatalf("cluster ca-rotate --rollback after the fault: %s", r)
	}
	measure("the run stopped by " + away.Name + "'s kubelet, the run that resumed, the rollback")
	for _, n := range cps {
		if _, err := os.Stat(rotation(n, "state.json")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s has a rotation of front-proxy-ca after the rollback: %v", n.Name, err)
		}
		checkPairs(t, n)
	}
	assertNoJobs(t)
	if _, err := cs.CoreV1().Secrets("kube-system").Get(ctx, cluster.CARotationSecret, metav1.GetOptions{}); err == nil {
		t.Errorf("the rotation Secret %s is left after the rollback", cluster.CARotationSecret)
	}
}
