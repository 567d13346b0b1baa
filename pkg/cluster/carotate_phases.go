package cluster

import (
	"github.com/certctl/certctl/pkg/carotate"
)

// phaseStep is what one phase of a CA rotation, or the rollback of one, does on the cluster
// besides each node's own `certctl ca rotate`: CARotate decides from these fields, never from
// the phase's name.
type phaseStep struct {
	// fromSecret: the nodes get the new CAs from the rotation Secret (--new-ca-dir), which the
	// phase makes when it does not exist yet.
	fromSecret bool
	// servedByNew: a control-plane node's apiserver must serve a certificate of the new cluster
	// CA after the phase; otherwise one of the old or the new one.
	servedByNew bool
	// workerCerts: a worker then gets a kubelet client certificate of the new CA through a CSR,
	// and a serving certificate through its kubelet's.
	workerCerts bool
	// tokens: when sa is rotated, every node's pods' tokens are re-requested with this key of
	// the rotation Secret before the nodes' step ("" none); legacyCheck: legacy token Secrets
	// of the old key refuse the phase first.
	tokens      string
	legacyCheck bool
	// auth: which CAs each key of kube-system/extension-apiserver-authentication keeps
	// (settleAuthCA): "both" (the new and at least one other), "new" (alone), "old" (not the
	// new one).
	auth string
	// copies: what kube-public/cluster-info, the ClusterTrustBundle and every kube-root-ca.crt
	// carry after the phase, when the cluster CA is rotated.
	copies trustCopies
	// deleteSecret: the rotation Secret (the new CAs' keys) is deleted at the end, saying
	// this; "" keeps it.
	deleteSecret string
}

// trustCopies is what the cluster's copies of the cluster CA carry after a phase.
type trustCopies int

const (
	copiesUnchanged trustCopies = iota // as the phase before left them
	copiesBoth                         // old + new
	copiesNew                          // the new CA alone
	copiesOld                          // the old CA(s) alone
)

// phaseKey names a phase, or its rollback.
type phaseKey struct {
	phase    string
	rollback bool
}

// phaseSteps is the rotation, phase by phase: trust, issue, drop, and the cluster-wide
// rollbacks of trust and issue (after drop the old CA is trusted nowhere: node by node only).
var phaseSteps = map[phaseKey]phaseStep{
	{carotate.PhaseTrust, false}: {fromSecret: true, auth: "both", copies: copiesBoth},
	{carotate.PhaseIssue, false}: {servedByNew: true, workerCerts: true, auth: "both", copies: copiesBoth},
	{carotate.PhaseDrop, false}: {servedByNew: true, tokens: saNewItem, legacyCheck: true, auth: "new", copies: copiesNew,
		deleteSecret: "the rotation is done"},
	// Trust's rollback takes the new CA out everywhere; the pods' tokens go back to the old key
	// first (after an issue and its rollback pods may hold tokens of the new key).
	{carotate.PhaseTrust, true}: {tokens: saOldItem, auth: "old", copies: copiesOld, deleteSecret: "phase trust is rolled back"},
	// After issue's rollback everything trusts old + new, as after trust.
	{carotate.PhaseIssue, true}: {auth: "both", copies: copiesUnchanged},
}

// authWant is what the extension-apiserver-authentication ConfigMap keeps after phase.
func authWant(phase string, rollback bool) string {
	return phaseSteps[phaseKey{phase, rollback}].auth
}
