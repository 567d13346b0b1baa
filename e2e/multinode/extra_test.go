//go:build multilabextra

package multinode

// The lab tests CI does not run, for its 90 minutes: `make e2e-multi-extra` runs them (by hand,
// before a release; hack/lab/README.md). Build tag multilabextra; `make lint` vets them.

import (
	"errors"
	"io/fs"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/certctl/certctl/internal/multilab"
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
	cps := threeControlPlanes(t, nodes)
	first, away, last := cps[0], cps[1], cps[2]
	noFrontProxyRotation(t, cps)
	cs := clientset(t)
	local := adminCopy(t)
	measure := balancerClients(t, local)
	args := []string{"cluster", "ca-rotate", "front-proxy-ca", "--phase", "trust"}
	nodeAwayRun(t, local, args, first, away, kubeletStopped)
	firstCA, err := os.ReadFile(rotation(first, "bundle.crt"))
	if err != nil {
		t.Errorf("%s, before the node that went away, is not at trust: %v", first.Name, err)
	}
	for _, n := range []multilab.Node{away, last} {
		if _, err := os.Stat(rotation(n, "state.json")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s has a rotation state after the stopped run (not reached): %v", n.Name, err)
		}
	}

	start := time.Now()
	r := certctlWith(t, local, args...)
	t.Logf("trust with %s back: %s", away.Name, time.Since(start).Round(100*time.Millisecond))
	if r.Code != 0 {
		t.Fatalf("cluster ca-rotate --phase trust with %s back: %s", away.Name, r)
	}
	assertNoJobs(t)
	oneFrontProxyBundle(t, cps, firstCA)
	frontProxyRollback(t, cs, cps, local)
	measure("the run stopped by " + away.Name + "'s kubelet, the run that resumed, the rollback")
}

// TestFaultLoadBalancerDownMidCARotate is TestFaultLoadBalancerDownMidCommand in phase trust of
// `cluster ca-rotate front-proxy-ca`: the balancer stopped while cp2's Job runs. The command
// stops with cp2 interrupted, cp1 at trust, cp3 untouched; with the balancer back the same
// command takes cp2's Job's result, keeps cp1's new CA (no second one) and finishes the phase;
// the operator's rollback then leaves no rotation anywhere.
func TestFaultLoadBalancerDownMidCARotate(t *testing.T) {
	nodes := requireLab(t)
	cps := threeControlPlanes(t, nodes)
	noFrontProxyRotation(t, cps)
	cs := clientset(t)
	mid, last := cps[1], cps[2]
	var firstCA []byte // cp1's bundle from the run the balancer stopped
	balancerStopsMid(t, lbMid{
		args: []string{"cluster", "ca-rotate", "front-proxy-ca", "--phase", "trust"}, node: mid.Name, component: "carotate",
		at: func(t *testing.T, s lbStopRun) {
			waitJobMade(t, cs, jobSelector("carotate", mid.Name), s.cmd, s.out, s.exited)
		},
		stopped: func(t *testing.T) {
			var err error
			if firstCA, err = os.ReadFile(rotation(cps[0], "bundle.crt")); err != nil {
				t.Errorf("%s, before the node whose Job ran when the balancer stopped, is not at trust: %v", cps[0].Name, err)
			}
			if _, err := os.Stat(rotation(last, "state.json")); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s, after the node whose Job ran when the balancer stopped, has a rotation state: %v", last.Name, err)
			}
		},
		done: func(t *testing.T, viaLB string) {
			oneFrontProxyBundle(t, cps, firstCA)
			frontProxyRollback(t, cs, cps, viaLB)
		},
	})
}

// How a node goes away in nodeAwayRun.
type awayBy int

const (
	kubeletStopped awayBy = iota // its kubelet stopped (multi.sh kubelet NODE stop)
	networkCut                   // its link to the bridge down (multi.sh net NODE cut)
)

func (a awayBy) String() string {
	if a == networkCut {
		return "network cut"
	}
	return "kubelet stopped"
}

// nodeAwayRun runs the cluster command args (the kubeconfig local) and takes away (the node gone:
// its kubelet stopped, or its network cut) as soon as before's Job is made: the command must stop
// at away once it is seen not Ready (not at the Job's timeout), naming it, with no Job left. Then
// the node is brought back and Ready.
func nodeAwayRun(t *testing.T, local string, args []string, before, away multilab.Node, by awayBy) {
	t.Helper()
	cs := clientset(t)
	what := strings.Join(args, " ")
	goes, comes := []string{"kubelet", away.Name, "stop"}, []string{"kubelet", away.Name, "start"}
	if by == networkCut {
		goes, comes = []string{"net", away.Name, "cut"}, []string{"net", away.Name, "restore"}
	}
	back := true
	t.Cleanup(func() {
		if !back {
			lab(t, comes...)
		}
	})
	start := time.Now()
	cmd, out, exited := startCertctl(t, append(slices.Clone(args), "--kubeconfig", local, "--image", multilab.Image)...)
	waitJobMade(t, cs, jobSelector("carotate", before.Name), cmd, out, exited)
	lab(t, goes...)
	back = false
	gone := time.Now()
	t.Logf("%s: %s's %s %s after the command started (%s's Job made)", what, away.Name, by, gone.Sub(start).Round(100*time.Millisecond), before.Name)
	err := endsWithin(t, cmd, out, exited, 8*time.Minute, what+", "+away.Name+"'s "+by.String()+",")
	t.Logf("%s: the command ended %s after %s's %s: %v\n%s", what, time.Since(gone).Round(100*time.Millisecond), away.Name, by, err, out.String())
	if err == nil || !strings.Contains(out.String(), "node "+away.Name+" failed") {
		t.Fatalf("with %s's %s, %s must stop at %s naming it: %v\n%s", away.Name, by, what, away.Name, err, out.String())
	}
	if took := time.Since(gone); took > 5*time.Minute {
		t.Errorf("%s stopped %s after %s's %s: the node not Ready was not noticed before the Job's timeout", what, took.Round(time.Second), away.Name, by)
	}
	assertNoJobs(t)
	lab(t, comes...)
	back = true
	t.Logf("%s Ready again %s after it came back (%s)", away.Name, waitNodeBack(t, cs, away.Name, 3*time.Minute).Round(time.Second), by)
}
