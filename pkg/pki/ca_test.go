package pki_test

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/pki"
)

// TestCrossSign: an apiserver serving its leaf of the new CA followed by the new CA
// cross-signed by the old one, on a real TLS listener, is verified by a client that trusts
// only the old CA (a pod that read ca.crt before the rotation) and by one that trusts only
// the new CA; without the cross-signed certificate the old-CA client refuses it.
func TestCrossSign(t *testing.T) {
	for _, alg := range []string{pki.AlgRSA2048, pki.AlgECDSAP256} {
		t.Run(alg, func(t *testing.T) {
			old, oldKey := newCA(t, alg, 2*365*24*time.Hour)
			newKey := mustKey(t, alg)
			nw, err := pki.NewCA(newKey, old, time.Now().Add(-time.Minute), time.Now().Add(10*365*24*time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			cross, err := pki.CrossSign(nw, old, oldKey)
			if err != nil {
				t.Fatal(err)
			}
			if !cross.NotAfter.Equal(old.NotAfter) || string(cross.SubjectKeyId) != string(nw.SubjectKeyId) || cross.CheckSignatureFrom(old) != nil {
				t.Fatalf("cross-signed: until %s (old CA until %s), SKI %x (new CA %x)", cross.NotAfter, old.NotAfter, cross.SubjectKeyId, nw.SubjectKeyId)
			}
			leafKey := mustKey(t, alg)
			leaf, err := pki.Sign(nw, newKey, leafKey, pki.Template{Subject: old.Subject, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
				KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
				NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour)})
			if err != nil {
				t.Fatal(err)
			}
			serve := func(chain ...*x509.Certificate) string {
				cert := tls.Certificate{PrivateKey: leafKey}
				for _, c := range chain {
					cert.Certificate = append(cert.Certificate, c.Raw)
				}
				return testenv.ServeTLS(t, "127.0.0.1:0", cert, tls.NoClientCert)
			}
			dial := func(addr string, roots ...*x509.Certificate) error {
				pool := x509.NewCertPool()
				for _, r := range roots {
					pool.AddCert(r)
				}
				c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
				if err == nil {
					c.Close()
				}
				return err
			}
			withCross, leafOnly := serve(leaf, cross), serve(leaf)
			for _, tc := range []struct {
				name  string
				addr  string
				roots []*x509.Certificate
				ok    bool
			}{
				{"old CA only, cross-signed chain", withCross, []*x509.Certificate{old}, true},
				{"new CA only, cross-signed chain", withCross, []*x509.Certificate{nw}, true},
				{"both, cross-signed chain", withCross, []*x509.Certificate{old, nw}, true},
				{"old CA only, leaf alone", leafOnly, []*x509.Certificate{old}, false},
			} {
				err := dial(tc.addr, tc.roots...)
				if (err == nil) != tc.ok {
					t.Errorf("%s: handshake error %v, want ok=%v", tc.name, err, tc.ok)
				}
				if err != nil && !strings.Contains(err.Error(), "unknown authority") {
					t.Errorf("%s: %v, want an unknown authority", tc.name, err)
				}
			}
		})
	}
}

// TestCrossSignRefuses: a key that is not the old CA's, a leaf for a CA, an old CA that ends
// before the new one begins.
func TestCrossSignRefuses(t *testing.T) {
	old, oldKey := newCA(t, pki.AlgECDSAP256, 365*24*time.Hour)
	nw, otherKey := newCA(t, pki.AlgECDSAP256, 365*24*time.Hour)
	late, err := pki.NewCA(mustKey(t, pki.AlgECDSAP256), old, old.NotAfter.Add(time.Hour), old.NotAfter.Add(48*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := pki.Sign(nw, otherKey, mustKey(t, pki.AlgECDSAP256), pki.Template{Subject: old.Subject, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		nw   *x509.Certificate
		key  crypto.Signer
		want string
	}{
		{"wrong key", nw, otherKey, "not the old CA's"},
		{"a leaf", leaf, oldKey, "must be CAs"},
		{"old CA ends first", late, oldKey, "expires"},
	} {
		_, err := pki.CrossSign(tc.nw, old, tc.key)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}
