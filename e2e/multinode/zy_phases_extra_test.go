//go:build multilabextra

package multinode

// Issue 21's faults in the later phases of `cluster ca-rotate`, run by `make e2e-multi-extra`
// (extra_test.go says why not in CI). The file's name puts it after every test that wants no
// rotation of front-proxy-ca on the lab (this one completes one) and before TestClusterCARotate,
// which starts a new rotation over a completed one.

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certctl/certctl/internal/multilab"
	"github.com/certctl/certctl/pkg/carotate"
	"github.com/certctl/certctl/pkg/cluster"
	"github.com/certctl/certctl/pkg/pki"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
)

// TestFaultLaterPhasesCARotate takes front-proxy-ca through a whole rotation with three faults
// in each phase after trust, all on the second control-plane node: its kubelet stopped (the node
// gone) once the first node's Job is made; its apiserver not coming back on the phase's files (in
// issue its new front-proxy client key broken, in drop a bad flag in the manifest drop wrote);
// the balancer, the operator's kubeconfig's server, stopped once its Job is made. Each time the
// command stops at the second node (failed, naming it; with the balancer away: interrupted, not
// failed), the node before it at the new phase, the second node (rolled back) and the one after
// it at the phase before; with the node, its apiserver or the balancer back the same command
// resumes there and completes the phase, the second node's work not run twice.
// At the end every node holds the same new front-proxy CA (the one of phase trust), the apiservers'
// request-header authentication carries it alone, no Job, Secret or Lease holder is left, every
// certificate has its key, and through the balancer nothing failed outside the balancer's own
// stops.
func TestFaultLaterPhasesCARotate(t *testing.T) {
	nodes := requireLab(t)
	cps := threeControlPlanes(t, nodes)
	first, mid := cps[0], cps[1]
	noFrontProxyRotation(t, cps)
	oldCA, _ := readCA(t, filepath.Join(first.Dir(), "etc-kubernetes", "pki"), "front-proxy-ca")
	cs := clientset(t)
	local := adminCopy(t)
	measure := balancerClients(t, local)
	phaseRun := func(phase string) {
		t.Helper()
		start := time.Now()
		if r := certctlWith(t, local, "cluster", "ca-rotate", "front-proxy-ca", "--phase", phase); r.Code != 0 {
			t.Fatalf("cluster ca-rotate front-proxy-ca --phase %s: %s", phase, r)
		}
		t.Logf("phase %s: %s", phase, time.Since(start).Round(100*time.Millisecond))
	}
	wantPhases := func(when string, want ...string) {
		t.Helper()
		for i, n := range cps {
			if got := rotationPhase(t, n); got != want[i] {
				t.Errorf("%s: %s is at phase %q, want %q", when, n.Name, got, want[i])
			}
		}
	}

	phaseRun(carotate.PhaseTrust)
	wantPhases("after trust", carotate.PhaseTrust, carotate.PhaseTrust, carotate.PhaseTrust)
	bundle, err := os.ReadFile(rotation(first, "bundle.crt"))
	if err != nil {
		t.Fatal(err)
	}

	// Phase issue, the second node gone while the first node's Job runs.
	args := []string{"cluster", "ca-rotate", "front-proxy-ca", "--phase", carotate.PhaseIssue}
	nodeAwayRun(t, local, args, first, mid, kubeletStopped)
	wantPhases("after the issue run "+mid.Name+" stopped", carotate.PhaseIssue, carotate.PhaseTrust, carotate.PhaseTrust)

	// Phase issue again, the second node's apiserver not coming back: its new front-proxy
	// client key broken (failpoint) before the apiserver starts on it. That node rolls back to
	// trust and serves again; the command stops there.
	const clientKey = "/etc/kubernetes/pki/front-proxy-client.key"
	notBackRun(t, local, args, mid, "before-start apiserver break-key "+clientKey, "its "+clientKey+" broken")
	wantPhases("after the issue run "+mid.Name+"'s apiserver failed", carotate.PhaseIssue, carotate.PhaseTrust, carotate.PhaseTrust)

	measure("trust, the issue runs stopped by " + mid.Name + "'s kubelet and by its apiserver")

	// Phase issue resumed, the balancer stopped while the second node's Job runs: the command
	// stops without blaming the node; with the balancer back the next run takes that Job's result
	// and completes the phase.
	balancerStopsMid(t, phaseLBStop(cs, args, mid, cps[:1], cps[2:], rotationPhase, carotate.PhaseIssue, carotate.PhaseTrust, func(t *testing.T, _ string) {
		wantPhases("after the issue run that resumed", carotate.PhaseIssue, carotate.PhaseIssue, carotate.PhaseIssue)
		assertNoJobs(t)
	}))

	// Phase drop, the second node gone while the first node's Job runs; then, with it back, the
	// balancer stopped while the second node's Job runs.
	drop := []string{"cluster", "ca-rotate", "front-proxy-ca", "--phase", carotate.PhaseDrop}
	measure = balancerClients(t, local)
	nodeAwayRun(t, local, drop, first, mid, kubeletStopped)
	wantPhases("after the drop run "+mid.Name+" stopped", carotate.PhaseDrop, carotate.PhaseIssue, carotate.PhaseIssue)
	measure("the drop run stopped by " + mid.Name + "'s kubelet")

	// Phase drop again, the second node's apiserver not coming back: the manifest phase drop
	// wrote for it starts with a bad flag (failpoint), as a phase that wrote a bad manifest
	// would leave it. That node rolls back to issue and serves again; the command stops there.
	measure = balancerClients(t, local)
	notBackRun(t, local, drop, mid, "before-start apiserver set-flag authorization-mode certctl-failpoint", "its apiserver started with a bad flag")
	wantPhases("after the drop run "+mid.Name+"'s apiserver failed", carotate.PhaseDrop, carotate.PhaseIssue, carotate.PhaseIssue)
	measure("the drop run stopped by " + mid.Name + "'s apiserver")

	balancerStopsMid(t, phaseLBStop(cs, drop, mid, cps[:1], cps[2:], rotationPhase, carotate.PhaseDrop, carotate.PhaseIssue, func(t *testing.T, _ string) {
		wantPhases("after the drop run that resumed", carotate.PhaseDrop, carotate.PhaseDrop, carotate.PhaseDrop)
		newCA := pkiCert(t, bundle, 1)
		if newCA.Equal(oldCA) {
			t.Fatal("phase trust's bundle holds the old CA last")
		}
		for _, n := range cps {
			ca, _ := readCA(t, filepath.Join(n.Dir(), "etc-kubernetes", "pki"), "front-proxy-ca")
			if !ca.Equal(newCA) {
				t.Errorf("%s's front-proxy-ca.crt after drop is not the new CA of phase trust (%s, serial %s)", n.Name, ca.Subject, ca.SerialNumber)
			}
			checkPairs(t, n)
		}
		authCAs(t, cs, "requestheader-client-ca-file", newCA, true)
		assertNoJobs(t)
		if _, err := cs.CoreV1().Secrets("kube-system").Get(context.Background(), cluster.CARotationSecret, metav1.GetOptions{}); err == nil {
			t.Errorf("the rotation Secret %s is left after the rotation completed", cluster.CARotationSecret)
		}
	}))
}

// phaseLBStop is the balancer's stop in the middle of a phase run (args), once mid's Job is
// made: then every node of done (before mid) is at phase, every node of untouched (after mid)
// still at before, as phaseOf reads a node's rotation; done checks the run that resumes.
func phaseLBStop(cs kubernetes.Interface, args []string, mid multilab.Node, done, untouched []multilab.Node, phaseOf func(*testing.T, multilab.Node) string, phase, before string, resumed func(t *testing.T, viaLB string)) lbMid {
	return lbMid{
		args: args, node: mid.Name, component: "carotate",
		at: func(t *testing.T, s lbStopRun) {
			waitJobMade(t, cs, jobSelector("carotate", mid.Name), s.cmd, s.out, s.exited)
		},
		stopped: func(t *testing.T) {
			// mid's Job goes on alone: it may be at the phase already.
			for _, n := range done {
				if got := phaseOf(t, n); got != phase {
					t.Errorf("%s, before %s whose Job ran when the balancer stopped, is at phase %q, want %s", n.Name, mid.Name, got, phase)
				}
			}
			for _, n := range untouched {
				if got := phaseOf(t, n); got != before {
					t.Errorf("%s, after %s whose Job ran when the balancer stopped, is at phase %q, want %s (untouched)", n.Name, mid.Name, got, before)
				}
			}
		},
		done: resumed,
	}
}

// notBackRun runs the phase (args) with the failpoint line on node n, which keeps its apiserver
// from coming back (what says how): the command fails naming n, the failpoint fired, no Job is
// left, n's key pairs match, its apiserver serves again on a manifest without the failpoint's
// value and n is Ready again.
func notBackRun(t *testing.T, local string, args []string, n multilab.Node, line, what string) {
	t.Helper()
	fp := setFailpoint(t, n, line)
	start := time.Now()
	r := certctlWith(t, local, args...)
	t.Logf("%s with %s's apiserver not back (%s): %s", strings.Join(args, " "), n.Name, what, time.Since(start).Round(100*time.Millisecond))
	if r.Code == 0 {
		t.Fatalf("%s succeeded with %s's apiserver not back (%s)", strings.Join(args, " "), n.Name, what)
	}
	if !strings.Contains(r.Stdout+r.Stderr, "node "+n.Name+" failed") {
		t.Errorf("the run with %s's apiserver not back does not say %s failed:\n%s", n.Name, n.Name, r)
	}
	if left, err := os.ReadFile(fp); err != nil || len(bytes.TrimSpace(left)) != 0 {
		t.Fatalf("the failpoint on %s did not fire: %q %v", n.Name, left, err)
	}
	assertNoJobs(t)
	checkPairs(t, n)
	m, err := os.ReadFile(filepath.Join(n.Dir(), "etc-kubernetes", "manifests", "kube-apiserver.yaml"))
	if err != nil || bytes.Contains(m, []byte("certctl-failpoint")) {
		t.Errorf("%s's apiserver manifest after the rollback: %v, holds the failpoint's value: %v", n.Name, err, bytes.Contains(m, []byte("certctl-failpoint")))
	}
	apiserversReady(t, []multilab.Node{n})
	cs := clientset(t)
	t.Logf("%s Ready again %s after the run", n.Name, waitNodeBack(t, cs, n.Name, 3*time.Minute).Round(100*time.Millisecond))
	t.Logf("%s's etcd pod reported ready %s after that", n.Name, waitEtcdPodReady(t, cs, n.Name, 3*time.Minute).Round(100*time.Millisecond))
}

// waitEtcdPodReady waits until node's etcd mirror pod is reported Ready, as the operator told
// by a refusal does before running a rotation of etcd-ca again: after a rollback restarted the
// node's etcd and apiserver, its kubelet makes the mirror pod again only once its watch of the
// node's pods is back (client-go's back-off, up to about a minute), and until then a rotation
// restarting etcd is refused (`cp2: no etcd pod ...`, seen on the lab, 2026-12-06).
func waitEtcdPodReady(t *testing.T, cs kubernetes.Interface, node string, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	last := "not asked yet"
	err := wait.PollUntilContextTimeout(context.Background(), 500*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		p, err := cs.CoreV1().Pods("kube-system").Get(ctx, "etcd-"+node, metav1.GetOptions{})
		if err != nil {
			last = err.Error()
			return false, nil
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				return true, nil
			}
		}
		last = fmt.Sprintf("pod %s not Ready: %v", p.Name, p.Status.Conditions)
		return false, nil
	})
	if err != nil {
		t.Fatalf("%s's etcd pod not reported Ready after %s: %s", node, timeout, last)
	}
	return time.Since(start)
}

// rotationPhase is the phase n's rotation of front-proxy-ca is at ("": none).
func rotationPhase(t *testing.T, n multilab.Node) string {
	t.Helper()
	return phaseIn(t, rotation(n, carotate.StateName))
}

// phaseIn is the phase of the rotation state file at path ("": no such file, no rotation).
func phaseIn(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	var st carotate.State
	if err := json.Unmarshal(data, &st); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return st.Phase
}

// pkiCert is the i-th certificate of the PEM bundle.
func pkiCert(t *testing.T, bundle []byte, i int) *x509.Certificate {
	t.Helper()
	certs := pki.CertificatesIn(bundle)
	if len(certs) <= i {
		t.Fatalf("the bundle holds %d certificates, want at least %d", len(certs), i+1)
	}
	return certs[i]
}
