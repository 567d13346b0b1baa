//go:build multilabextra

package multinode

// Issue 21's faults in a rotation of every CA (`cluster ca-rotate all`), whose phases run worker
// Jobs after the control-plane nodes; run by `make e2e-multi-extra` (extra_test.go says why not in CI). The
// file's name puts it after the tests that verify against the lab's first cluster CA and before
// TestClusterCARotate, which starts a new rotation over the completed one.

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/certctl/certctl/internal/multilab"
	"github.com/certctl/certctl/pkg/carotate"
	"github.com/certctl/certctl/pkg/cluster"
	"github.com/certctl/certctl/pkg/pki"
)

// TestFaultClusterCARotate takes every CA through a whole rotation (`cluster ca-rotate all`: the
// cluster, etcd and front-proxy CAs and the service-account key; the cluster CA's phases run the
// workers' Jobs after the control-plane nodes') with the faults that hit its worker part and its
// control-plane nodes. In trust, issue and drop:
// the second control-plane node's apiserver not coming back on the phase's files (trust: the CA
// bundle it wrote broken; issue: the new apiserver.key broken; drop: a bad flag in the manifest
// it wrote), so that node rolls back and the command stops there; then the worker gone while the
// last control-plane node's Job runs (trust: its network cut; issue and drop: its kubelet
// stopped), so the command stops at
// the worker naming it, every control-plane node at the new phase and the worker at the one
// before. In issue and drop, the balancer (the operator's kubeconfig's server)
// stopped while the worker's Job runs, so the command stops with the worker interrupted, not
// failed, and the next run takes that Job's result. Each time the same command, with the node,
// apiserver or balancer back, resumes and completes the phase. The phases are read from the
// cluster CA's rotation state on each node. At the end every node's ca.crt is
// the new CA of phase trust alone, the worker's kubelet reports with its new client
// certificate, the apiservers verify clients with the new CA alone, no Job, Secret or rotation
// Secret is left, every certificate has its key, and through the balancer no request failed
// outside the balancer's own stops.
func TestFaultClusterCARotate(t *testing.T) {
	nodes := requireLab(t)
	cps := threeControlPlanes(t, nodes)
	ws := workers(nodes)
	if len(ws) != 1 {
		t.Fatalf("the test wants the lab's one worker, the lab has %d (remove the fleet's: multi.sh remove-node)", len(ws))
	}
	w, mid, last := ws[0], cps[1], cps[2]
	all := append(slices.Clone(cps), w)
	const trust, issue, drop = carotate.PhaseTrust, carotate.PhaseIssue, carotate.PhaseDrop
	// No rotation of the cluster CA, or a completed one (its state at drop), on every node: a
	// node the stopped trust run did not reach stays as it was.
	was := clusterCAPhase(t, w)
	for _, n := range all {
		if p := clusterCAPhase(t, n); (p != "" && p != drop) || p != was {
			t.Fatalf("%s is at phase %q of a rotation of the cluster CA before the test (%s at %q): want none, or a completed one on every node", n.Name, p, w.Name, was)
		}
	}
	oldCA, _ := readCA(t, filepath.Join(cps[0].Dir(), "etc-kubernetes", "pki"), "ca")
	local := adminCopy(t)
	ctx := context.Background()
	wantPhases := func(when string, want ...string) {
		t.Helper()
		for i, n := range all {
			if got := clusterCAPhase(t, n); got != want[i] {
				t.Errorf("%s: %s is at phase %q of the cluster CA's rotation, want %q", when, n.Name, got, want[i])
			}
		}
	}
	run := func(args []string) {
		t.Helper()
		start := time.Now()
		if r := certctlWith(t, local, args...); r.Code != 0 {
			t.Fatalf("%v: %s", args, r)
		}
		t.Logf("%v: %s", args, time.Since(start).Round(100*time.Millisecond))
		followLab(t, local)
	}
	args := func(phase string) []string { return []string{"cluster", "ca-rotate", "all", "--phase", phase} }

	// Trust: the second control-plane node's apiserver not back on the CA bundle the phase
	// wrote for it (broken); then, with it back, the worker's network cut while the last
	// control-plane node's Job runs.
	measure := balancerClients(t, local)
	const bundle = "/etc/kubernetes/pki/rotation/ca/bundle.crt"
	notBackRun(t, local, args(trust), mid, "before-start apiserver break-file "+bundle, "its "+bundle+" broken")
	wantPhases("after the trust run "+mid.Name+"'s apiserver failed", trust, was, was, was)
	nodeAwayRun(t, local, args(trust), last, w, networkCut)
	wantPhases("after the trust run "+w.Name+"'s network was cut", trust, trust, trust, was)
	run(args(trust))
	wantPhases("after trust", trust, trust, trust, trust)
	measure("trust: the runs stopped by " + mid.Name + "'s apiserver and by " + w.Name + "'s network cut, the run that resumed")
	cs := clientset(t)
	sec, err := cs.CoreV1().Secrets("kube-system").Get(ctx, cluster.CARotationSecret, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the rotation Secret after trust: %v", err)
	}
	newCA := pkiCert(t, sec.Data["ca.crt"], 0)
	if newCA.Equal(oldCA) {
		t.Fatal("the rotation Secret's CA is the old one")
	}

	// Issue: the second control-plane node's apiserver not back on its new key; then, with it
	// back, the worker gone while the last control-plane node's Job runs; then the balancer
	// stopped while the worker's Job runs.
	measure = balancerClientsTrusting(t, local, sec.Data["ca.crt"])
	const key = "/etc/kubernetes/pki/apiserver.key"
	notBackRun(t, local, args(issue), mid, "before-start apiserver break-key "+key, "its new "+key+" broken")
	wantPhases("after the issue run "+mid.Name+"'s apiserver failed", issue, trust, trust, trust)
	nodeAwayRun(t, local, args(issue), last, w, kubeletStopped)
	wantPhases("after the issue run "+w.Name+" stopped", issue, issue, issue, trust)
	measure("issue: the runs stopped by " + mid.Name + "'s apiserver and by " + w.Name + "'s kubelet")
	balancerStopsMid(t, phaseLBStop(clientset(t), args(issue), w, cps, nil, clusterCAPhase, issue, trust, func(t *testing.T, viaLB string) {
		wantPhases("after the issue run that resumed", issue, issue, issue, issue)
		noneLeft(t, false)
		takeCredentials(t, viaLB, local)
		followLab(t, local)
	}))

	// Drop: the second control-plane node's apiserver not back (the manifest drop wrote for it
	// started with a bad flag); then the worker gone while the last control-plane node's Job
	// runs; then the balancer stopped while the worker's Job runs.
	measure = balancerClients(t, local)
	notBackRun(t, local, args(drop), mid, "before-start apiserver set-flag authorization-mode certctl-failpoint", "its apiserver started with a bad flag")
	wantPhases("after the drop run "+mid.Name+"'s apiserver failed", drop, issue, issue, issue)
	nodeAwayRun(t, local, args(drop), last, w, kubeletStopped)
	wantPhases("after the drop run "+w.Name+" stopped", drop, drop, drop, issue)
	measure("drop: the runs stopped by " + mid.Name + "'s apiserver and by " + w.Name + "'s kubelet")
	balancerStopsMid(t, phaseLBStop(clientset(t), args(drop), w, cps, nil, clusterCAPhase, drop, issue, func(t *testing.T, viaLB string) {
		wantPhases("after the drop run that resumed", drop, drop, drop, drop)
		takeCredentials(t, viaLB, local)
		followLab(t, local)
		cs := clientset(t)
		for _, n := range all {
			data, err := os.ReadFile(filepath.Join(n.Dir(), "etc-kubernetes", "pki", "ca.crt"))
			if err != nil {
				t.Fatal(err)
			}
			if in := pki.CertificatesIn(data); len(in) != 1 || !in[0].Equal(newCA) {
				t.Errorf("%s's ca.crt after drop holds %d certificate(s), want the new CA of phase trust alone", n.Name, len(in))
			}
			checkPairs(t, n)
		}
		// The worker's kubelet renews its node Lease from now on, with the client
		// certificate of the new CA phase issue gave it: the apiservers take no other now.
		t.Logf("%s reports again %s after drop", w.Name, waitNodeBack(t, cs, w.Name, 2*time.Minute).Round(100*time.Millisecond))
		authCAs(t, cs, "client-ca-file", newCA, true)
		noneLeft(t, true)
	}))
}

// clusterCAPhase is the phase n's rotation of the cluster CA is at ("": none).
func clusterCAPhase(t *testing.T, n multilab.Node) string {
	t.Helper()
	return phaseIn(t, filepath.Join(n.Dir(), "etc-kubernetes", "pki", "rotation", "ca", carotate.StateName))
}

// noneLeft fails the test for a certctl Job or Secret left in kube-system (a worker's kubelet
// client key handed over), and, when ended, for the rotation's own Secret.
func noneLeft(t *testing.T, ended bool) {
	t.Helper()
	assertNoJobs(t)
	cs := clientset(t)
	if left, err := certctlSecrets(cs); err != nil || len(left) > 0 {
		t.Errorf("certctl's Secrets left in kube-system: %v %v", left, err)
	}
	_, err := cs.CoreV1().Secrets("kube-system").Get(context.Background(), cluster.CARotationSecret, metav1.GetOptions{})
	if ended && err == nil {
		t.Errorf("the rotation Secret %s is left after the rotation completed", cluster.CARotationSecret)
	}
	if !ended && err != nil {
		t.Errorf("the rotation Secret %s before drop: %v", cluster.CARotationSecret, err)
	}
}

// takeCredentials puts into the kubeconfig at to the cluster CA and the users of the one at from,
// which a run refreshed (a run through the balancer refreshes its own copy), keeping to's
// server.
func takeCredentials(t *testing.T, from, to string) {
	t.Helper()
	src, err := clientcmd.LoadFromFile(from)
	if err != nil {
		t.Fatal(err)
	}
	dst, err := clientcmd.LoadFromFile(to)
	if err != nil {
		t.Fatal(err)
	}
	var ca []byte
	for _, c := range src.Clusters {
		ca = c.CertificateAuthorityData
	}
	for _, c := range dst.Clusters {
		c.CertificateAuthorityData = ca
	}
	dst.AuthInfos = src.AuthInfos
	if err := clientcmd.WriteToFile(*dst, to); err != nil {
		t.Fatal(err)
	}
}
