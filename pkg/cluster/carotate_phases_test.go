package cluster

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/certctl/certctl/pkg/carotate"
)

// TestPhaseSteps: the rotation's table holds what the rotation must keep true, whatever is
// added to it: every phase and the rollbacks that exist have a step; nothing requires the new
// CA's certificates before issue; the CA's keys (the Secret) are deleted only when the
// rotation ends (drop) or is undone (trust's rollback); the cluster's copies never drop the
// old CA before drop nor keep the new one after trust's rollback.
func TestPhaseSteps(t *testing.T) {
	for _, k := range []phaseKey{{carotate.PhaseTrust, false}, {carotate.PhaseIssue, false}, {carotate.PhaseDrop, false}, {carotate.PhaseTrust, true}, {carotate.PhaseIssue, true}} {
		if _, ok := phaseSteps[k]; !ok {
			t.Errorf("no step for %+v", k)
		}
	}
	if _, ok := phaseSteps[phaseKey{carotate.PhaseDrop, true}]; ok {
		t.Errorf("a cluster-wide rollback of drop: the old CA is trusted nowhere after it")
	}
	for k, s := range phaseSteps {
		forwardAfterIssue := !k.rollback && k.phase != carotate.PhaseTrust
		if s.servedByNew && !forwardAfterIssue || s.workerCerts && !forwardAfterIssue {
			t.Errorf("%+v asks for certificates of the new CA before issue", k)
		}
		if (s.deleteSecret != "") != (k == phaseKey{carotate.PhaseDrop, false} || k == phaseKey{carotate.PhaseTrust, true}) {
			t.Errorf("%+v deletes the Secret: %q", k, s.deleteSecret)
		}
		switch s.copies {
		case copiesNew:
			if k != (phaseKey{carotate.PhaseDrop, false}) || s.auth != "new" {
				t.Errorf("%+v takes the old CA out of the cluster's copies (auth %q)", k, s.auth)
			}
		case copiesOld:
			if k != (phaseKey{carotate.PhaseTrust, true}) || s.auth != "old" {
				t.Errorf("%+v takes the new CA out of the cluster's copies (auth %q)", k, s.auth)
			}
		}
		if s.fromSecret != (k == phaseKey{carotate.PhaseTrust, false}) {
			t.Errorf("%+v gives the nodes the new CAs: %v", k, s.fromSecret)
		}
	}
}

// TestNodeSpec: the Job each phase runs on a node. Its arguments are also the Job's identity
// (AnnotationWork: a rerun adopts the Job an earlier run left), so they are pinned here.
func TestNodeSpec(t *testing.T) {
	flags := RestartFlags{StopGrace: 3 * time.Second, LBDrain: 3 * time.Second}
	for _, tc := range []struct {
		name               string
		o                  CARotateOptions
		cp                 bool
		args               string
		secret             string
		items              []string
		privileged, result bool
		component          string
	}{
		{"trust, control plane", CARotateOptions{Phase: "trust", RestartFlags: flags}, true,
			"ca rotate ca etcd-ca --phase trust --new-ca-dir /rotation --restart --stop-grace 3s --lb-drain 3s", CARotationSecret, nil, true, true, "carotate"},
		{"trust, worker: the certificate only", CARotateOptions{Phase: "trust"}, false,
			"ca rotate ca etcd-ca --phase trust --new-ca-dir /rotation --restart", CARotationSecret, []string{"ca.crt"}, true, true, "carotate"},
		{"issue", CARotateOptions{Phase: "issue"}, true, "ca rotate ca etcd-ca --phase issue --restart", "", nil, true, true, "carotate"},
		{"drop", CARotateOptions{Phase: "drop"}, false, "ca rotate ca etcd-ca --phase drop --restart", "", nil, true, true, "carotate"},
		{"rollback of trust", CARotateOptions{Phase: "trust", Rollback: true}, true, "ca rotate ca etcd-ca --rollback --phase trust --restart", "", nil, true, true, "carotate"},
		{"rollback of issue", CARotateOptions{Phase: "issue", Rollback: true}, false, "ca rotate ca etcd-ca --rollback --phase issue --restart", "", nil, true, true, "carotate"},
		{"dry run of issue", CARotateOptions{Phase: "issue", DryRun: true}, true, "ca rotate ca etcd-ca --phase issue --dry-run", "", nil, false, false, "plan"},
		{"dry run of trust before the Secret", CARotateOptions{Phase: "trust", DryRun: true, planOnly: true}, true, "ca rotate ca etcd-ca --phase trust --generate --dry-run", "", nil, false, false, "plan"},
		{"trust, worker, with the kubelet probe", CARotateOptions{Phase: "trust"}, false,
			"ca rotate ca etcd-ca --phase trust --new-ca-dir /rotation --kubelet-probe /rotation/kubelet-probe.pem --restart", CARotationSecret, []string{"ca.crt", "kubelet-probe.pem"}, true, true, "carotate"},
		{"issue, worker, with the kubelet probe", CARotateOptions{Phase: "issue"}, false,
			"ca rotate ca etcd-ca --phase issue --kubelet-probe /rotation/kubelet-probe.pem --restart", CARotationSecret, []string{"kubelet-probe.pem"}, true, true, "carotate"},
		{"rollback of trust, worker, with the kubelet probe", CARotateOptions{Phase: "trust", Rollback: true}, false,
			"ca rotate ca etcd-ca --rollback --phase trust --kubelet-probe /rotation/kubelet-probe.pem --restart", CARotationSecret, []string{"kubelet-probe.pem"}, true, true, "carotate"},
		{"issue, control plane: no probe", CARotateOptions{Phase: "issue"}, true, "ca rotate ca etcd-ca --phase issue --restart", "", nil, true, true, "carotate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &rotation{o: &tc.o, cas: []string{"ca", "etcd-ca"}, step: phaseSteps[phaseKey{tc.o.Phase, tc.o.Rollback}], probe: strings.Contains(tc.name, "probe")}
			s := r.nodeSpec("n1", tc.cp)
			args, err := s.Request.Args()
			if got := strings.Join(args, " "); err != nil || got != tc.args {
				t.Errorf("args %q (%v), want %q", got, err, tc.args)
			}
			if s.Node != "n1" || s.Secret != tc.secret || !slices.Equal(s.SecretItems, tc.items) || s.Privileged != tc.privileged || s.Request.Result != tc.result || s.Component != tc.component {
				t.Errorf("got %+v", s)
			}
		})
	}
}
