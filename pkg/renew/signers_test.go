package renew_test

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"maps"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certctl/certctl/pkg/kubeconfig"
	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/renew"
)

// TestSigners: with Options.Signers a CA other than the tree's signs the leaves (what a CA
// rotation's phase issue does), and renewed kubeconfigs trust Signer.TrustPEM; a signer whose
// key does not match its certificate is refused before anything is written.
func TestSigners(t *testing.T) {
	l := newTree(t)
	old := pki.Load(l, pki.Default()).Get("ca").Cert()
	key, err := pki.GenerateKey(pki.AlgECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.NewCA(key, old, time.Now().Add(-time.Minute), time.Now().Add(48*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	trust := append(pki.EncodeCertificates(old), pki.EncodeCertificates(ca)...)
	other, _ := pki.GenerateKey(pki.AlgECDSAP256)
	tests := []struct {
		name    string
		signer  renew.Signer
		wantErr string
	}{
		{name: "new CA signs, kubeconfigs trust the bundle", signer: renew.Signer{Cert: ca, Key: key, TrustPEM: trust, Source: "new.crt"}},
		{name: "key of another CA", signer: renew.Signer{Cert: ca, Key: other, Source: "new.crt"}, wantErr: "the key of new.crt does not match"},
		{name: "no key", signer: renew.Signer{Cert: ca, Source: "new.crt"}, wantErr: "the signer new.crt has no private key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := copyTree(t, l.Root, "")
			before := treeHash(t, l.Root)
			plan, err := renew.NewPlan(l, renew.Options{Names: []string{"apiserver", "admin.conf"}, Days: 1,
				Signers: map[string]renew.Signer{"ca": tc.signer}})
			if tc.wantErr != "" {
				var ie *renew.InputError
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.As(err, &ie) {
					t.Fatalf("error %v, want an input error saying %q", err, tc.wantErr)
				}
				if after := treeHash(t, l.Root); !maps.Equal(after, before) {
					t.Errorf("a refused plan changed the tree")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if _, err := renew.Apply(plan, renew.ApplyOptions{Command: "test"}); err != nil {
				t.Fatal(err)
			}
			c, err := pki.ParseCertificates("apiserver.crt", mustRead(t, filepath.Join(l.PKIDir, "apiserver.crt")))
			if err != nil {
				t.Fatal(err)
			}
			if c[0].CheckSignatureFrom(ca) != nil {
				t.Errorf("apiserver.crt is not signed by the signer")
			}
			_, creds, err := kubeconfig.Load(filepath.Join(l.KubeconfigDir, "admin.conf"))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(creds.CAData, trust) {
				t.Errorf("admin.conf trusts %d bytes, want the signer's TrustPEM", len(creds.CAData))
			}
		})
	}
}

// TestChain: a serving certificate signed by a Signer with a Chain is written with the chain
// after it (a CA rotation's cross-signed CA), a client certificate without; renewing later
// keeps what followed the old leaf when it still links the leaf to the tree's CA and has not
// expired, and drops anything else.
func TestChain(t *testing.T) {
	base := newTree(t)
	ca := pki.Load(base, pki.Default()).Get("ca")
	caKey := ca.Key
	otherCA, err := pki.NewCA(mustGenerate(t), ca.Cert(), time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	otherKey := mustGenerate(t)
	other, err := pki.NewCA(otherKey, ca.Cert(), time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	// The tree's CA cross-signed by another: valid, and expired an hour ago.
	cross := crossSign(t, ca.Cert(), other, otherKey, time.Now().Add(24*time.Hour))
	expired := crossSign(t, ca.Cert(), other, otherKey, time.Now().Add(-time.Hour))

	newKey := mustGenerate(t)
	newCA, err := pki.NewCA(newKey, ca.Cert(), time.Now().Add(-time.Minute), time.Now().Add(48*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	newCross, err := pki.CrossSign(newCA, ca.Cert(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		after   []*x509.Certificate // what follows apiserver.crt's leaf before the renewal
		signer  *renew.Signer
		want    []*x509.Certificate // what follows it after
		wantKCC []*x509.Certificate // after apiserver-kubelet-client.crt's leaf
	}{
		{name: "a cross-signed CA after the leaf is kept", after: []*x509.Certificate{cross}, want: []*x509.Certificate{cross}},
		{name: "an expired one is dropped", after: []*x509.Certificate{expired, cross}, want: []*x509.Certificate{cross}},
		{name: "another CA's certificate is dropped", after: []*x509.Certificate{otherCA}},
		{name: "the signer's chain after serving certificates only", signer: &renew.Signer{Cert: newCA, Key: newKey, Source: "new.crt", Chain: []*x509.Certificate{newCross}},
			want: []*x509.Certificate{newCross}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := copyTree(t, base.Root, "")
			path := filepath.Join(l.PKIDir, "apiserver.crt")
			if len(tc.after) > 0 {
				leaf := pki.Load(l, pki.Default()).Get("apiserver").Cert()
				if err := os.WriteFile(path, pki.EncodeCertificates(append([]*x509.Certificate{leaf}, tc.after...)...), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			o := renew.Options{Names: []string{"apiserver", "apiserver-kubelet-client"}, Days: 1}
			if tc.signer != nil {
				o.Signers = map[string]renew.Signer{"ca": *tc.signer}
			}
			plan, err := renew.NewPlan(l, o)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := renew.Apply(plan, renew.ApplyOptions{Command: "test"}); err != nil {
				t.Fatal(err)
			}
			for file, want := range map[string][]*x509.Certificate{"apiserver.crt": tc.want, "apiserver-kubelet-client.crt": tc.wantKCC} {
				got, err := pki.ParseCertificates(file, mustRead(t, filepath.Join(l.PKIDir, file)))
				if err != nil {
					t.Fatal(err)
				}
				if !time.Now().Before(got[0].NotAfter) || got[0].IsCA {
					t.Errorf("%s: the first certificate is not the renewed leaf", file)
				}
				if len(got)-1 != len(want) {
					t.Fatalf("%s: %d certificates after the leaf, want %d", file, len(got)-1, len(want))
				}
				for i, c := range want {
					if !got[i+1].Equal(c) {
						t.Errorf("%s: certificate %d after the leaf is %s (issuer %s), want the one issued by %s", file, i+1, got[i+1].Subject, got[i+1].Issuer, c.Issuer)
					}
				}
			}
		})
	}
}

func mustGenerate(t *testing.T) crypto.Signer {
	t.Helper()
	k, err := pki.GenerateKey(pki.AlgECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// crossSign makes ca again, issued by by, until notAfter (which may be past).
func crossSign(t *testing.T, ca, by *x509.Certificate, byKey crypto.Signer, notAfter time.Time) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), RawSubject: ca.RawSubject, SubjectKeyId: ca.SubjectKeyId,
		NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: notAfter, KeyUsage: ca.KeyUsage, BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, by, ca.PublicKey, byKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
