package kubeletserving_test

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"strconv"
	"testing"
	"time"

	"crypto/rand"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/pki"
)

// fakeKubelet serves a certificate on addr the way a kubelet does on :10250. It is a real
// TLS listener; only the HTTP API behind it is absent.
func fakeKubelet(t testing.TB, addr string, chain []*x509.Certificate, key crypto.Signer) {
	t.Helper()
	cert := tls.Certificate{PrivateKey: key}
	for _, c := range chain {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	testenv.ServeTLS(t, addr, cert, tls.NoClientCert)
}

// caSignedServing is what serverTLSBootstrap gets a kubelet: signed by the cluster CA.
func caSignedServing(t testing.TB, ca *pki.Item, node string, ips []string, dns ...string) ([]*x509.Certificate, crypto.Signer) {
	t.Helper()
	key, _ := pki.GenerateKey(pki.AlgECDSAP256)
	tmpl := pki.Template{Subject: pkix.Name{CommonName: "system:node:" + node, Organization: []string{"system:nodes"}}, DNSNames: dns,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(30 * 24 * time.Hour)}
	for _, ip := range ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(ip))
	}
	c, err := pki.Sign(ca.Cert(), ca.Key, key, tmpl)
	if err != nil {
		t.Fatal(err)
	}
	return []*x509.Certificate{c}, key
}

// kubeletSelfSigned is what a kubelet makes without serverTLSBootstrap: a throw-away CA
// "<host>-ca@<unix>" and a certificate for the hostname only (case A: no IP SANs).
func kubeletSelfSigned(t testing.TB, host string) ([]*x509.Certificate, crypto.Signer) {
	t.Helper()
	caKey, _ := pki.GenerateKey(pki.AlgECDSAP256)
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: host + "-ca@" + strconv.FormatInt(now.Unix(), 10)},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(365 * 24 * time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, _ := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := pki.GenerateKey(pki.AlgECDSAP256)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: host + "@" + strconv.FormatInt(now.Unix(), 10)}, DNSNames: []string{host},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(365 * 24 * time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, key.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return []*x509.Certificate{leaf, caCert}, key
}
