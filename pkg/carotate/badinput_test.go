package carotate_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certctl/certctl/pkg/carotate"
	"github.com/certctl/certctl/pkg/pki"
)

// caFiles writes a new CA (like the tree's cluster CA) to dir and returns its files.
func caFiles(t *testing.T, l pki.Layout, dir, name string) (crt, key string) {
	t.Helper()
	old := certs(t, filepath.Join(l.PKIDir, "ca.crt"))[0]
	k, err := pki.GenerateKey(pki.AlgECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	c, err := pki.NewCA(k, old, time.Now().Add(-time.Minute), time.Now().Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	kp, err := pki.EncodePrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	crt, key = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(crt, pki.EncodeCertificates(c), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, kp, 0o600); err != nil {
		t.Fatal(err)
	}
	return crt, key
}

func newCA(t *testing.T, crt, key string) *carotate.NewCA {
	t.Helper()
	n, err := carotate.ReadNewCA(crt, key)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestBadInput: every refusal names the file or flag at fault and leaves every file of the
// node as it was.
func TestBadInput(t *testing.T) {
	base := node(t)
	trust := func(t *testing.T, l pki.Layout) {
		o := opts(l, "ca")
		o.Generate = true
		mustPhase(t, carotate.PhaseTrust, o)
	}
	issue := func(t *testing.T, l pki.Layout) {
		trust(t, l)
		mustPhase(t, carotate.PhaseIssue, opts(l, "ca"))
	}
	tests := []struct {
		name  string
		setup func(t *testing.T, l pki.Layout, dir string) carotate.Options // may change the tree first
		phase string
		want  []string // substrings of the error
	}{
		{name: "unknown CA", phase: carotate.PhaseTrust, want: []string{`unknown CA "kubelet-ca"`},
			setup: func(t *testing.T, l pki.Layout, dir string) carotate.Options {
				o := opts(l, "kubelet-ca")
				o.Generate = true
				return o
			}},
		{name: "days out of range", phase: carotate.PhaseTrust, want: []string{"--days 40000"},
			setup: func(t *testing.T, l pki.Layout, dir string) carotate.Options {
				o := opts(l, "ca")
				o.Generate, o.Days = true, 40000
				return o
			}},
		{name: "no new CA and no --generate", phase: carotate.PhaseTrust, want: []string{"no new CA", "--generate", "--new-ca-cert"},
			setup: func(t *testing.T, l pki.Layout, dir string) carotate.Options { return opts(l, "ca") }},
		{name: "--generate with --new-ca-cert", phase: carotate.PhaseTrust, want: []string{"--generate and --new-ca-cert"},
			setup: func(t *testing.T, l pki.Layout, dir string) carotate.Options {
				crt, key := caFiles(t, l, dir, "a")
				o := opts(l, "ca")
				o.Generate, o.NewCA = true, newCA(t, crt, key)
				return o
			}},
		{name: "new CA key of another CA", phase: carotate.PhaseTrust, want: []string{"b.key does not belong to", "a.crt"},
			setup: func(t *testing.T, l pki.Layout, dir string) carotate.Options {
				crt, _ := caFiles(t, l, dir, "a")
				_, key := caFiles(t, l, dir, "b")
				o := opts(l, "ca")
				o.NewCA = newCA(t, crt, key)
				return o
			}},
		{name: "malformed new CA certificate", phase: carotate.PhaseTrust, want: []string{"bad.crt", "truncated or not PEM"},
			setup: func(t *testing.T, l pki.Layout, dir string) carotate.Options {
				_, key := caFiles(t, l, dir, "a")
				bad := filepath.Join(dir, "bad.crt")
				os.WriteFile(bad, []byte("-----BEGIN CERTIFICATE-----\nnot base64\n"), 0o644)
				o := opts(l, "ca")
				o.NewCA = newCA(t, bad, key)
				return o
			}},
		{name: "new CA that is not a CA", phase: carotate.PhaseTrust, want: []string{"apiserver.crt", "is not a CA"},
			setup: func(t *testing.T, l pki.Layout, dir string) carotate.Options {
				o := opts(l, "ca")
				o.NewCA = newCA(t, filepath.Join(l.PKIDir, "apiserver.crt"), filepath.Join(l.PKIDir, "apiserver.key"))
				return o
			}},
		{name: "new CA without its key on a control-plane node", phase: carotate.PhaseTrust, want: []string{"holds the CA key", "--new-ca-key"},
			setup: func(t *testing.T, l pki.Layout, dir string) carotate.Options {
				crt, _ := caFiles(t, l, dir, "a")
				o := opts(l, "ca")
				o.NewCA = newCA(t, crt, "")
				return o
			}},
		{name: "malformed old CA", phase: carotate.PhaseTrust, want: []string{"front-proxy-ca.crt"},
			setup: func(t *testing.T, l pki.Layout, dir string) carotate.Options {
				os.WriteFile(filepath.Join(l.PKIDir, "front-proxy-ca.crt"), []byte("garbage"), 0o644)
				o := opts(l, "front-proxy-ca")
				o.Generate = true
				return o
			}},
		{name: "issue before trust", phase: carotate.PhaseIssue, want: []string{"phase trust has not run", "state.json"},
			setup: func(t *testing.T, l pki.Layout, dir string) carotate.Options { return opts(l, "ca") }},
		{name: "drop before issue", phase: carotate.PhaseDrop, want: []string{"at phase trust", "--phase issue first"},
			setup: func(t *testing.T, l pki.Layout, dir string) carotate.Options { trust(t, l); return opts(l, "ca") }},
		{name: "issue without the new CA key", phase: carotate.PhaseIssue, want: []string{"rotation/ca/new.key is missing"},
			setup: func(t *testing.T, l pki.Layout, dir string) carotate.Options {
				trust(t, l)
				p, _ := carotate.PathsOf(l, "ca")
				os.Remove(p.NewKey)
				return opts(l, "ca")
			}},
		{name: "issue with a malformed new CA key", phase: carotate.PhaseIssue, want: []string{"rotation/ca/new.key", "no PEM private key"},
			setup: func(t *testing.T, l pki.Layout, dir string) carotate.Options {
				trust(t, l)
				p, _ := carotate.PathsOf(l, "ca")
				os.WriteFile(p.NewKey, []byte("junk"), 0o600)
				return opts(l, "ca")
			}},
		{name: "issue with a new CA key of another CA", phase: carotate.PhaseIssue, want: []string{"rotation/ca/new.key does not belong to"},
			setup: func(t *testing.T, l pki.Layout, dir string) carotate.Options {
				trust(t, l)
				p, _ := carotate.PathsOf(l, "ca")
				_, key := caFiles(t, l, dir, "a")
				os.WriteFile(p.NewKey, read(t, key), 0o600)
				return opts(l, "ca")
			}},
		{name: "drop while a leaf is still from the old CA", phase: carotate.PhaseDrop, want: []string{"still signed by the old CA", "apiserver (", "apiserver.crt): certctl renew apiserver"},
			setup: func(t *testing.T, l pki.Layout, dir string) carotate.Options {
				crt, key := read(t, filepath.Join(l.PKIDir, "apiserver.crt")), read(t, filepath.Join(l.PKIDir, "apiserver.key"))
				issue(t, l)
				os.WriteFile(filepath.Join(l.PKIDir, "apiserver.crt"), crt, 0o644)
				os.WriteFile(filepath.Join(l.PKIDir, "apiserver.key"), key, 0o600)
				return opts(l, "ca")
			}},
		{name: "drop while ~/.kube/config holds a client certificate of the old CA", phase: carotate.PhaseDrop,
			want: []string{"user-kubeconfig (", "/root/.kube/config): certctl kubeconfig refresh"},
			setup: func(t *testing.T, l pki.Layout, dir string) carotate.Options {
				// Not a copy of admin.conf: issue leaves it alone.
				os.WriteFile(l.UserKubeconfig, read(t, filepath.Join(l.KubeconfigDir, "super-admin.conf")), 0o600)
				issue(t, l)
				return opts(l, "ca")
			}},
		// A new rotation after a complete one needs a new CA: the completed one's new.crt is the
		// CA now (TestSecondRotation runs the new rotation).
		{name: "trust again after a complete rotation, no new CA given", phase: carotate.PhaseTrust, want: []string{"no new CA", "--generate"},
			setup: func(t *testing.T, l pki.Layout, dir string) carotate.Options {
				issue(t, l)
				mustPhase(t, carotate.PhaseDrop, opts(l, "ca"))
				return opts(l, "ca")
			}},
		{name: "damaged state file", phase: carotate.PhaseIssue, want: []string{"state.json", "not a rotation state file"},
			setup: func(t *testing.T, l pki.Layout, dir string) carotate.Options {
				trust(t, l)
				p, _ := carotate.PathsOf(l, "ca")
				os.WriteFile(p.State, []byte("{"), 0o600)
				return opts(l, "ca")
			}},
		{name: "rollback without a rotation", phase: "rollback", want: []string{"no rotation phase to roll back"},
			setup: func(t *testing.T, l pki.Layout, dir string) carotate.Options { return opts(l, "etcd-ca") }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := clone(t, base)
			o := tc.setup(t, l, t.TempDir())
			before := snapshot(t, l)
			_, err := phase(o, tc.phase)
			if err == nil {
				t.Fatal("no error")
			}
			t.Logf("error: %v", err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			sameSnapshot(t, tc.name, before, snapshot(t, l))
		})
	}
}
