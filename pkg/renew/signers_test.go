package renew_test

import (
	"bytes"
	"errors"
	"maps"
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
