package carotate_test

import (
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certctl/certctl/pkg/carotate"
	"github.com/certctl/certctl/pkg/kubeletclient"
	"github.com/certctl/certctl/pkg/kubeletserving"
	"github.com/certctl/certctl/pkg/pki"
)

// TestDryRunAndRollback: before each phase, a dry run plans the files the phase then really
// changes and changes nothing; after each phase, Rollback brings every byte (and the
// kubelet-client-current.pem link) back to what it was before the phase; the phase then runs
// again. For the cluster CA, kubelet.conf reads kubelet-client-current.pem, as after
// kubeadm's kubelet-finalize, and the kubelet serves a certificate of the cluster CA, in
// either of its two forms, so phase issue also re-issues and swings the kubelet's files.
func TestDryRunAndRollback(t *testing.T) {
	base := node(t)
	tests := []struct {
		name, ca string
		prepare  func(t *testing.T, l pki.Layout)
	}{
		{"ca, serverTLSBootstrap", "ca", func(t *testing.T, l pki.Layout) { kubeletFinalize(t, l); servingLink(t, l) }},
		{"ca, tlsCertFile", "ca", func(t *testing.T, l pki.Layout) { kubeletFinalize(t, l); servingFile(t, l) }},
		{"etcd-ca", "etcd-ca", nil},
		{"front-proxy-ca", "front-proxy-ca", nil},
	}
	for _, tc := range tests {
		ca := tc.ca
		t.Run(tc.name, func(t *testing.T) {
			l := clone(t, base)
			if tc.prepare != nil {
				tc.prepare(t, l)
				if err := os.RemoveAll(l.BackupRoot()); err != nil {
					t.Fatal(err)
				}
			}
			o := opts(l, ca)
			o.Generate = true
			for _, phase := range carotate.Phases {
				before := snapshot(t, l)
				dry := o
				dry.DryRun = true
				plan := mustPhase(t, phase, dry)
				sameSnapshot(t, phase+" dry run", before, snapshot(t, l))
				if len(plan.Changes) == 0 || !plan.DryRun {
					t.Fatalf("%s dry run: no plan", phase)
				}
				res := mustPhase(t, phase, o)
				after := snapshot(t, l)
				// Every file the plan named is what changed (the kubelet client PEM is a new
				// file beside the link the plan names).
				for _, c := range plan.Changes {
					if before[c.Path] == after[c.Path] {
						t.Errorf("%s: the plan names %s (%s) but it did not change", phase, c.Path, c.What)
					}
				}
				for p := range after {
					if before[p] != after[p] && !planned(plan, p) && !strings.HasPrefix(filepath.Base(p), "kubelet-client-2") && !strings.HasPrefix(filepath.Base(p), "kubelet-server-2") {
						t.Errorf("%s: %s changed but the plan did not name it", phase, p)
					}
				}
				rb := o
				r := mustPhase(t, "rollback", rb)
				if r.Phase != "rollback "+phase || r.BackupID != res.BackupID {
					t.Errorf("rollback: %s from backup %s, want rollback %s from %s", r.Phase, r.BackupID, phase, res.BackupID)
				}
				sameSnapshot(t, "rollback of "+phase, before, snapshot(t, l))
				mustPhase(t, phase, o)
				if phase == carotate.PhaseTrust {
					o.Generate = false
				}
			}
			if ca == "ca" {
				newCA := certs(t, filepath.Join(l.PKIDir, "ca.crt"))[0]
				if c := kubeletclient.OldCert(l); c == nil || c.CheckSignatureFrom(newCA) != nil {
					t.Errorf("the kubelet client certificate is not from the new CA after the rotation")
				}
				if s := pki.Load(l, pki.Default()).Get("kubelet-serving"); s.Cert() == nil || s.Cert().CheckSignatureFrom(newCA) != nil || s.Key == nil || pki.VerifyKeyPair(s.Cert().PublicKey, s.Key) != nil {
					t.Errorf("the kubelet serving certificate %s is not a pair from the new CA after the rotation", s.Path)
				}
			}
		})
	}
}

func planned(r *carotate.Result, p string) bool {
	for _, c := range r.Changes {
		if c.Path == p {
			return true
		}
	}
	return false
}

// kubeletFinalize does what kubeadm's kubelet-finalize phase leaves on a node: the client
// certificate in /var/lib/kubelet/pki/kubelet-client-<time>.pem, kubelet-client-current.pem
// linking to it, kubelet.conf reading it.
func kubeletFinalize(t *testing.T, l pki.Layout) {
	t.Helper()
	it := pki.Load(l, pki.Default()).Get("kubelet.conf")
	pair, err := kubeletclient.ParsePair("kubelet.conf", append(append([]byte{}, it.Kubeconfig.CertData...), it.Kubeconfig.KeyData...))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kubeletclient.Install(l, pair, "test: kubelet-finalize", it.Cert().NotBefore); err != nil {
		t.Fatal(err)
	}
	if got := pki.Load(l, pki.Default()).Get("kubelet.conf"); got.Kubeconfig.CertFile == "" {
		t.Fatal("kubelet.conf still embeds its certificate")
	}
}

// servingLink gives the kubelet what serverTLSBootstrap leaves: kubelet-server-current.pem
// linking to a kubelet-server-<time>.pem signed by the cluster CA.
func servingLink(t *testing.T, l pki.Layout) {
	t.Helper()
	ca, err := pki.SigningCA(l, "")
	if err != nil {
		t.Fatal(err)
	}
	cert, key, _, err := pki.SignNodeCert(ca, pki.NodeCert{Node: "master-1", Usage: x509.ExtKeyUsageServerAuth,
		IPs: []net.IP{net.ParseIP("10.2.1.151")}, DNSNames: []string{"master-1"}, Validity: 24 * time.Hour, Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := pki.EncodePrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := kubeletclient.PKIDir(l)
	name := "kubelet-server-2020-01-01-00-00-00.pem"
	if err := os.WriteFile(filepath.Join(dir, name), append(pki.EncodeCertificates(cert), keyPEM...), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(l.NodePath(filepath.Join(dir, name)), filepath.Join(dir, "kubelet-server-current.pem")); err != nil {
		t.Fatal(err)
	}
}

// servingFile gives the kubelet a serving certificate from certctl kubelet-serving issue
// (tlsCertFile/tlsPrivateKeyFile in its config).
func servingFile(t *testing.T, l pki.Layout) {
	t.Helper()
	if _, err := kubeletserving.Issue(kubeletserving.IssueOptions{Layout: l, Node: "master-1", IPs: []net.IP{net.ParseIP("10.2.1.151")}}); err != nil {
		t.Fatal(err)
	}
}

// TestRollbackPhase: --rollback --phase P (what a cluster-wide rollback runs on every node)
// undoes P where it is the last phase applied, leaves a node where P was not applied as it is,
// and refuses a node that is already past P.
func TestRollbackPhase(t *testing.T) {
	base := node(t)
	for _, tc := range []struct {
		name    string
		applied []string // phases applied before the rollback
		undo    string
		changes bool   // the rollback changed the node
		wantErr string // refused
	}{
		{name: "trust undone", applied: []string{carotate.PhaseTrust}, undo: carotate.PhaseTrust, changes: true},
		{name: "issue undone", applied: []string{carotate.PhaseTrust, carotate.PhaseIssue}, undo: carotate.PhaseIssue, changes: true},
		{name: "issue not applied here", applied: []string{carotate.PhaseTrust}, undo: carotate.PhaseIssue},
		{name: "no rotation here", undo: carotate.PhaseTrust},
		{name: "already past it", applied: []string{carotate.PhaseTrust, carotate.PhaseIssue}, undo: carotate.PhaseTrust, wantErr: "the last phase applied on this node is issue, not trust"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := clone(t, base)
			o := opts(l, "ca")
			o.Generate = true
			for _, p := range tc.applied {
				mustPhase(t, p, o)
			}
			before := snapshot(t, l)
			res, err := carotate.Run(opts(l, "ca"), []string{"ca"}, tc.undo, true)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				sameSnapshot(t, "refused rollback", before, snapshot(t, l))
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(res) != 1 || res[0].AlreadyDone == tc.changes {
				t.Fatalf("results %+v, want changes=%v", res, tc.changes)
			}
			if !tc.changes {
				sameSnapshot(t, "nothing to undo", before, snapshot(t, l))
				return
			}
			st, err := carotate.LoadState(l, "ca")
			if err != nil {
				t.Fatal(err)
			}
			want := len(tc.applied) - 1
			if (want == 0 && st != nil) || (want > 0 && (st == nil || st.Phase != tc.applied[want-1])) {
				t.Errorf("after undoing %s: state %+v, want the rotation at %v", tc.undo, st, tc.applied[:want])
			}
		})
	}
}
