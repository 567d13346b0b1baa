package pki_test

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/certctl/certctl/pkg/pki"
)

func mustKey(t *testing.T, alg string) crypto.Signer {
	t.Helper()
	k, err := pki.GenerateKey(alg)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newCA(t *testing.T, alg string, validity time.Duration) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	key := mustKey(t, alg)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kubernetes"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(validity),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c, key
}

// utf8Subject encodes CN and O as UTF8String, as openssl does by default: Go would write
// PrintableString, so cfssl's re-encoded subject differs and the raw path must be taken.
func utf8Subject(t *testing.T, cn, o string) []byte {
	t.Helper()
	seq := pkix.RDNSequence{
		{{Type: asn1.ObjectIdentifier{2, 5, 4, 10}, Value: asn1.RawValue{Tag: asn1.TagUTF8String, Bytes: []byte(o)}}},
		{{Type: asn1.ObjectIdentifier{2, 5, 4, 3}, Value: asn1.RawValue{Tag: asn1.TagUTF8String, Bytes: []byte(cn)}}},
	}
	der, err := asn1.Marshal(seq)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestSignKeepsEverything(t *testing.T) {
	ca, caKey := newCA(t, pki.AlgECDSAP256, 20*365*24*time.Hour)
	now := time.Now()
	u, _ := url.Parse("spiffe://cluster.local/ns/kube-system/sa/apiserver")
	tests := []struct {
		name string
		alg  string
		tmpl pki.Template
	}{
		{"apiserver-like rsa", pki.AlgRSA2048, pki.Template{
			Subject:     pkix.Name{CommonName: "kube-apiserver"},
			DNSNames:    []string{"kubernetes", "kubernetes.default"},
			IPAddresses: []net.IP{net.ParseIP("10.96.0.1"), net.ParseIP("10.2.1.151")},
			KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}},
		{"client with org, ecdsa", pki.AlgECDSAP256, pki.Template{
			Subject:     pkix.Name{CommonName: "kubernetes-admin", Organization: []string{"kubeadm:cluster-admins"}},
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}},
		{"emails, URIs, OU and both EKUs", pki.AlgECDSAP256, pki.Template{
			Subject:        pkix.Name{CommonName: "etcd", OrganizationalUnit: []string{"ops"}},
			DNSNames:       []string{"localhost"},
			IPAddresses:    []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")},
			EmailAddresses: []string{"ops@example.com"},
			URIs:           []*url.URL{u},
			KeyUsage:       x509.KeyUsageDigitalSignature | x509.KeyUsageKeyAgreement,
			ExtKeyUsage:    []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}},
		{"openssl-style UTF8 subject kept byte for byte", pki.AlgECDSAP256, pki.Template{
			RawSubject:  utf8Subject(t, "kube-apiserver", "example"),
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			key := mustKey(t, tc.alg)
			tc.tmpl.NotBefore, tc.tmpl.NotAfter = now.Add(-5*time.Minute), now.Add(3650*24*time.Hour)
			if tc.tmpl.RawSubject == nil {
				// Take the raw subject Go writes, as TemplateFrom would from an old cert.
				der, _ := asn1.Marshal(tc.tmpl.Subject.ToRDNSequence())
				tc.tmpl.RawSubject = der
			}
			cert, err := pki.Sign(ca, caKey, key, tc.tmpl)
			if err != nil {
				t.Fatalf("Sign: %v", err)
			}
			if err := pki.CheckIssued(cert, ca, key.Public(), tc.tmpl); err != nil {
				t.Fatalf("CheckIssued: %v", err)
			}
			if !cert.NotAfter.Equal(tc.tmpl.NotAfter.UTC().Truncate(time.Second)) {
				t.Errorf("NotAfter = %s, want %s", cert.NotAfter, tc.tmpl.NotAfter)
			}
			roots := x509.NewCertPool()
			roots.AddCert(ca)
			if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
				t.Errorf("chain does not verify: %v", err)
			}
		})
	}
}

func TestSignRefuses(t *testing.T) {
	ca, caKey := newCA(t, pki.AlgECDSAP256, 365*24*time.Hour)
	_, otherKey := newCA(t, pki.AlgECDSAP256, 365*24*time.Hour)
	key := mustKey(t, pki.AlgECDSAP256)
	now := time.Now()
	base := pki.Template{Subject: pkix.Name{CommonName: "x"}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, NotBefore: now, NotAfter: now.Add(24 * time.Hour)}
	tests := []struct {
		name    string
		caKey   crypto.Signer
		mutate  func(*pki.Template)
		wantErr string
	}{
		{"CA key of another CA", otherKey, nil, "CA key does not belong"},
		{"empty window", caKey, func(t *pki.Template) { t.NotAfter = t.NotBefore }, "validity window is empty"},
		{"past the CA's expiry", caKey, func(t *pki.Template) { t.NotAfter = now.Add(2 * 365 * 24 * time.Hour) }, "after the CA"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tmpl := base
			if tc.mutate != nil {
				tc.mutate(&tmpl)
			}
			_, err := pki.Sign(ca, tc.caKey, key, tmpl)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}
