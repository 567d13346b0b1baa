package carotate_test

import (
	"bytes"
	"crypto/x509"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/carotate"
	"github.com/certctl/certctl/pkg/manifest"
	"github.com/certctl/certctl/pkg/pki"
)

// rotation says, per CA, what kubeadm's manifests verify it with and what it signed.
var rotation = []struct {
	ca      string
	flags   map[string][]string // component -> flags kubeadm writes that name the CA file
	leaves  []string            // inventory names the CA signed
	restart []string
}{
	{ca: "ca",
		flags: map[string][]string{"apiserver": {"client-ca-file"}, "controller-manager": {"root-ca-file", "client-ca-file"}},
		leaves: []string{"apiserver", "apiserver-kubelet-client", "admin.conf", "super-admin.conf",
			"controller-manager.conf", "scheduler.conf", "kubelet.conf"},
		restart: []string{"apiserver", "controller-manager", "kubelet", "scheduler"}},
	{ca: "etcd-ca",
		flags:   map[string][]string{"apiserver": {"etcd-cafile"}, "etcd": {"trusted-ca-file", "peer-trusted-ca-file"}},
		leaves:  []string{"etcd-server", "etcd-peer", "etcd-healthcheck-client", "apiserver-etcd-client"},
		restart: []string{"apiserver", "etcd"}},
	{ca: "front-proxy-ca",
		flags:   map[string][]string{"apiserver": {"requestheader-client-ca-file"}, "controller-manager": {"requestheader-client-ca-file"}},
		leaves:  []string{"front-proxy-client"},
		restart: []string{"apiserver", "controller-manager"}},
}

var kubeconfigs = []string{"admin.conf", "super-admin.conf", "controller-manager.conf", "scheduler.conf", "kubelet.conf"}

// TestPhases runs trust, issue and drop for each CA on a tree made by the kubeadm of each
// release of the version matrix and checks the files after each phase, that a second run of
// a done phase changes nothing, and that after drop the manifests and the kubelet config are
// byte for byte what kubeadm wrote.
func TestPhases(t *testing.T) {
	for _, v := range testenv.MatrixVersions {
		t.Run(v, func(t *testing.T) { phases(t, nodeOf(t, v)) })
	}
}

func phases(t *testing.T, base pki.Layout) {
	for _, tc := range rotation {
		t.Run(tc.ca, func(t *testing.T) {
			l := clone(t, base)
			p, err := carotate.PathsOf(l, tc.ca)
			if err != nil {
				t.Fatal(err)
			}
			orig := snapshot(t, l)
			origFlags := map[string]map[string]string{}
			for _, comp := range []string{"apiserver", "controller-manager", "scheduler", "etcd"} {
				origFlags[comp] = flags(t, l, comp)
			}
			inv := pki.Load(l, pki.Default())
			oldCA := inv.Get(tc.ca).Cert()
			oldLeaves := map[string]*pki.Item{}
			for _, n := range tc.leaves {
				oldLeaves[n] = inv.Get(n)
			}
			userKubeconfigBefore := read(t, l.UserKubeconfig)

			// Phase trust.
			o := opts(l, tc.ca)
			o.Generate = true
			r := mustPhase(t, carotate.PhaseTrust, o)
			for _, c := range r.Changes {
				t.Logf("trust: %s: %s", c.Path, c.What)
			}
			if !slices.Equal(r.Restart, tc.restart) {
				t.Errorf("trust: restart %v, want %v", r.Restart, tc.restart)
			}
			newCA := certs(t, p.NewCert)[0]
			if !bytes.Equal(newCA.RawSubject, oldCA.RawSubject) || pki.KeyAlgorithm(newCA.PublicKey) != pki.KeyAlgorithm(oldCA.PublicKey) || !newCA.IsCA {
				t.Errorf("new CA %s (%s), want a CA like the old %s (%s)", newCA.Subject, pki.KeyAlgorithm(newCA.PublicKey), oldCA.Subject, pki.KeyAlgorithm(oldCA.PublicKey))
			}
			if d := time.Until(newCA.NotAfter) - carotate.DefaultDays*24*time.Hour; d > time.Hour || d < -time.Hour {
				t.Errorf("new CA valid until %s, want %d days", newCA.NotAfter, carotate.DefaultDays)
			}
			if st, err := os.Stat(p.NewKey); err != nil || st.Mode().Perm() != 0o600 {
				t.Errorf("new.key: %v, mode %v; want 0600", err, st)
			}
			if b := certs(t, p.Bundle); !sameCerts(b, []*x509.Certificate{oldCA, newCA}) {
				t.Errorf("bundle holds %d certificates, want old + new", len(b))
			}
			if !certs(t, p.CACert)[0].Equal(oldCA) {
				t.Errorf("trust changed %s: the old CA still signs in phase trust", p.CACert)
			}
			bundle, caPath := l.NodePath(p.Bundle), l.NodePath(p.CACert)
			checkFlags := func(phase, want string) {
				t.Helper()
				for comp, fs := range tc.flags {
					got := flags(t, l, comp)
					for name, v := range origFlags[comp] {
						exp := v
						if slices.Contains(fs, name) {
							exp = want
						}
						if got[name] != exp {
							t.Errorf("%s: %s --%s=%s, want %s", phase, comp, name, got[name], exp)
						}
					}
				}
			}
			checkFlags("trust", bundle)
			if tc.ca == "ca" {
				if got := flags(t, l, "controller-manager")["cluster-signing-cert-file"]; got != caPath {
					t.Errorf("trust: --cluster-signing-cert-file=%s, want the old CA %s still", got, caPath)
				}
				if got := kubeletClientCAFile(t, l); got != bundle {
					t.Errorf("trust: kubelet clientCAFile %s, want %s", got, bundle)
				}
				for _, k := range append(slices.Clone(kubeconfigs), l.UserKubeconfig) {
					if !filepath.IsAbs(k) {
						k = filepath.Join(l.KubeconfigDir, k)
					}
					ca, client := kubeconfigCA(t, k)
					if !sameCerts(ca, []*x509.Certificate{oldCA, newCA}) {
						t.Errorf("trust: %s trusts %d certificates, want old + new", k, len(ca))
					}
					if client == nil || client.CheckSignatureFrom(oldCA) != nil {
						t.Errorf("trust: %s's client certificate changed; trust re-issues nothing", k)
					}
				}
			}
			afterTrust := snapshot(t, l)
			if r := mustPhase(t, carotate.PhaseTrust, o); !r.AlreadyDone {
				t.Errorf("second trust: not reported as done")
			}
			sameSnapshot(t, "second trust", afterTrust, snapshot(t, l))

			// Phase issue.
			o.Generate = false
			r = mustPhase(t, carotate.PhaseIssue, o)
			for _, c := range r.Changes {
				t.Logf("issue: %s: %s", c.Path, c.What)
			}
			if !certs(t, p.CACert)[0].Equal(newCA) {
				t.Fatalf("issue: %s is not the new CA", p.CACert)
			}
			key, err := pki.ParsePrivateKey(p.CAKey, read(t, p.CAKey))
			if err != nil || pki.VerifyKeyPair(newCA.PublicKey, key) != nil {
				t.Errorf("issue: %s is not the new CA's key (%v)", p.CAKey, err)
			}
			if !certs(t, p.OldCert)[0].Equal(oldCA) {
				t.Errorf("issue: %s is not the old CA", p.OldCert)
			}
			if st, err := os.Stat(p.OldKey); err != nil || st.Mode().Perm() != 0o600 {
				t.Errorf("issue: old.key %v; want it kept, 0600", err)
			}
			inv = pki.Load(l, pki.Default())
			for _, n := range tc.leaves {
				it, was := inv.Get(n), oldLeaves[n]
				c := it.Cert()
				if c.CheckSignatureFrom(newCA) != nil {
					t.Errorf("issue: %s is not signed by the new CA", n)
					continue
				}
				w := was.Cert()
				if !bytes.Equal(c.RawSubject, w.RawSubject) || !slices.Equal(c.DNSNames, w.DNSNames) || len(c.IPAddresses) != len(w.IPAddresses) || !slices.Equal(c.ExtKeyUsage, w.ExtKeyUsage) || c.KeyUsage != w.KeyUsage {
					t.Errorf("issue: %s lost its subject, SANs or usages: %s %v %v", n, c.Subject, c.DNSNames, c.IPAddresses)
				}
				if it.Key == nil || pki.VerifyKeyPair(c.PublicKey, it.Key) != nil {
					t.Errorf("issue: %s: key does not match", n)
				}
				if it.Spec.Kind == pki.KindKubeconfig && !sameCerts(it.KubeconfigCA, []*x509.Certificate{oldCA, newCA}) {
					t.Errorf("issue: %s must still trust old + new", n)
				}
			}
			checkFlags("issue", bundle)
			if tc.ca == "ca" {
				if got := kubeletClientCAFile(t, l); got != bundle {
					t.Errorf("issue: kubelet clientCAFile %s, want still %s", got, bundle)
				}
				// ~/.kube/config was a copy of admin.conf: it follows the new admin.conf.
				if _, c := kubeconfigCA(t, l.UserKubeconfig); c == nil || c.CheckSignatureFrom(newCA) != nil {
					t.Errorf("issue: ~/.kube/config does not carry admin.conf's new client certificate")
				}
			} else if !bytes.Equal(read(t, l.UserKubeconfig), userKubeconfigBefore) {
				t.Errorf("issue of %s changed ~/.kube/config", tc.ca)
			}
			if !slices.Contains(r.Restart, "apiserver") && tc.ca != "etcd-ca" || len(r.Restart) == 0 {
				t.Errorf("issue: restart %v", r.Restart)
			}
			afterIssue := snapshot(t, l)
			if r := mustPhase(t, carotate.PhaseIssue, o); !r.AlreadyDone {
				t.Errorf("second issue: not reported as done")
			}
			sameSnapshot(t, "second issue", afterIssue, snapshot(t, l))

			// Phase drop.
			mustPhase(t, carotate.PhaseDrop, o)
			for _, f := range manifest.Files {
				mp := filepath.Join(l.ManifestsDir, f)
				if snapshot(t, l)[mp] != orig[mp] {
					t.Errorf("drop: %s is not byte for byte what kubeadm wrote", mp)
				}
			}
			kc := filepath.Join(l.KubeletDir, "config.yaml")
			if snapshot(t, l)[kc] != orig[kc] {
				t.Errorf("drop: %s is not byte for byte what kubeadm wrote", kc)
			}
			if tc.ca == "ca" {
				for _, k := range append(slices.Clone(kubeconfigs), l.UserKubeconfig) {
					if !filepath.IsAbs(k) {
						k = filepath.Join(l.KubeconfigDir, k)
					}
					if ca, _ := kubeconfigCA(t, k); !sameCerts(ca, []*x509.Certificate{newCA}) {
						t.Errorf("drop: %s trusts %d certificates, want the new CA alone", k, len(ca))
					}
				}
			}
			afterDrop := snapshot(t, l)
			if r := mustPhase(t, carotate.PhaseDrop, o); !r.AlreadyDone {
				t.Errorf("second drop: not reported as done")
			}
			sameSnapshot(t, "second drop", afterDrop, snapshot(t, l))
		})
	}
}
