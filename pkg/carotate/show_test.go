package carotate_test

import (
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certctl/certctl/pkg/carotate"
	"github.com/certctl/certctl/pkg/pki"
)

// TestParseShown: what `certctl ca show` prints, read back (the command's real output is
// parsed in cmd/cli's TestCAShow).
func TestParseShown(t *testing.T) {
	like := &x509.Certificate{Subject: pkix.Name{CommonName: "kubernetes"}}
	a, err := pki.NewCA(key(t), like, time.Now(), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	b, err := pki.NewCA(key(t), like, time.Now(), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	pemA, pemB := string(pki.EncodeCertificates(a)), string(pki.EncodeCertificates(b))
	tests := []struct {
		name string
		out  string
		want map[string]*x509.Certificate
	}{
		{"two CAs", "# ca: /etc/kubernetes/pki/ca.crt (CN=a)\n" + pemA + "# etcd-ca: /etc/kubernetes/pki/etcd/ca.crt (CN=b)\n" + pemB, map[string]*x509.Certificate{"ca": a, "etcd-ca": b}},
		{"one not on the node", "# etcd-ca: not on this node (no /etc/kubernetes/pki/etcd/ca.crt)\n# front-proxy-ca: x\n" + pemB, map[string]*x509.Certificate{"front-proxy-ca": b}},
		{"log lines around", "I1201 12:00:00 starting\n# ca: x\n" + pemA + "done\n", map[string]*x509.Certificate{"ca": a}},
		{"unknown name is not a header", "# ca: x\n" + pemA + "# kubelet-ca: y\n" + pemB, map[string]*x509.Certificate{"ca": a}},
		{"nothing", "Error: unknown command\n", map[string]*x509.Certificate{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := carotate.ParseShown(tc.out)
			if len(got) != len(tc.want) {
				t.Fatalf("got %d CAs %v, want %d", len(got), got, len(tc.want))
			}
			for ca, c := range tc.want {
				if got[ca] == nil || !got[ca].Equal(c) {
					t.Errorf("%s: got %v, want %s", ca, got[ca], c.Subject)
				}
			}
		})
	}
}

func key(t *testing.T) crypto.Signer {
	t.Helper()
	k, err := pki.GenerateKey(pki.AlgECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestParseShownSA: the service-account public key from `ca show`'s output, on a tree written
// by the real kubeadm, beside the cluster CA whose certificate ParseShown reads.
func TestParseShownSA(t *testing.T) {
	l := node(t)
	var out strings.Builder
	if err := carotate.WriteShown(&out, l, []string{carotate.SA, "ca"}); err != nil {
		t.Fatal(err)
	}
	got := carotate.ParseShownSA(out.String())
	sa := publicKey(t, filepath.Join(l.PKIDir, "sa.pub"))
	if got == nil || carotate.PublicKeySum(got) != carotate.PublicKeySum(sa) {
		t.Errorf("sa: got %v, want sa.pub's key:\n%s", got, out.String())
	}
	ca := carotate.ParseShown(out.String())["ca"]
	if ca == nil || carotate.PublicKeySum(ca.PublicKey) != carotate.PublicKeySum(certs(t, filepath.Join(l.PKIDir, "ca.crt"))[0].PublicKey) {
		t.Errorf("ca: got %v, want ca.crt's key", ca)
	}
}
