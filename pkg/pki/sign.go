package pki

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"slices"
	"sort"
	"sync"
	"time"

	cfconfig "github.com/cloudflare/cfssl/config"
	cflog "github.com/cloudflare/cfssl/log"
	cfsigner "github.com/cloudflare/cfssl/signer"
	"github.com/cloudflare/cfssl/signer/local"
)

// Template is what a leaf certificate must say. TemplateFrom copies it from an existing
// certificate so a renewal keeps everything the old one had.
type Template struct {
	// RawSubject is the exact DER subject to keep. When nil, Subject is used.
	RawSubject     []byte
	Subject        pkix.Name
	DNSNames       []string
	IPAddresses    []net.IP
	EmailAddresses []string
	URIs           []*url.URL
	KeyUsage       x509.KeyUsage
	ExtKeyUsage    []x509.ExtKeyUsage
	NotBefore      time.Time
	NotAfter       time.Time
}

// TemplateFrom copies subject, every kind of SAN and the key usages of c.
func TemplateFrom(c *x509.Certificate) Template {
	return Template{
		RawSubject:     slices.Clone(c.RawSubject),
		Subject:        c.Subject,
		DNSNames:       slices.Clone(c.DNSNames),
		IPAddresses:    slices.Clone(c.IPAddresses),
		EmailAddresses: slices.Clone(c.EmailAddresses),
		URIs:           slices.Clone(c.URIs),
		KeyUsage:       c.KeyUsage,
		ExtKeyUsage:    slices.Clone(c.ExtKeyUsage),
		NotBefore:      c.NotBefore,
		NotAfter:       c.NotAfter,
	}
}

// AddSANs adds IPs and DNS names (as parsed strings) not already present; it returns the
// ones it added.
func (t *Template) AddSANs(sans []string) []string {
	var added []string
	for _, s := range sans {
		if ip := net.ParseIP(s); ip != nil {
			if !slices.ContainsFunc(t.IPAddresses, ip.Equal) {
				t.IPAddresses = append(t.IPAddresses, ip)
				added = append(added, ip.String())
			}
			continue
		}
		if !slices.Contains(t.DNSNames, s) {
			t.DNSNames = append(t.DNSNames, s)
			added = append(added, s)
		}
	}
	return added
}

// CreateCSR makes a PEM certificate request for t signed by key, carrying the raw subject
// and all four SAN kinds (for an external CA to sign, and as the input of Sign).
func CreateCSR(key crypto.Signer, t Template) ([]byte, error) {
	req := &x509.CertificateRequest{
		RawSubject:     t.RawSubject,
		Subject:        t.Subject,
		DNSNames:       t.DNSNames,
		IPAddresses:    t.IPAddresses,
		EmailAddresses: t.EmailAddresses,
		URIs:           t.URIs,
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, req, key)
	if err != nil {
		return nil, fmt.Errorf("create certificate request: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

var silenceCFSSL sync.Once

// Sign issues a leaf for key's public half from ca/caKey through cfssl's local signer, with
// exactly t's subject, SANs, key usages and validity, and checks the result before returning
// it (the order smallstep's sign.go follows):
//  1. caKey belongs to ca, ca is a CA allowed to sign, the window is sane and inside the
//     CA's own validity (the caller caps it and says so; Sign refuses);
//  2. a CSR is built from key with the raw subject and all SANs; cfssl signs it with a
//     profile carrying exactly t's usages (cfssl's words) and t's NotBefore/NotAfter;
//  3. the result must have key's public key, t's SANs and usages, ca as issuer and a
//     signature that verifies.
//
// cfssl rebuilds the subject from its parsed form; when that does not reproduce the raw
// bytes (a subject written by openssl with UTF8String everywhere, say), the certificate is
// re-issued with x509.CreateCertificate carrying the raw subject, so the subject never changes.
func Sign(ca *x509.Certificate, caKey crypto.Signer, key crypto.Signer, t Template) (*x509.Certificate, error) {
	if err := VerifyKeyPair(ca.PublicKey, caKey); err != nil {
		return nil, fmt.Errorf("CA key does not belong to CA certificate %q: %w", ca.Subject.CommonName, err)
	}
	if !ca.IsCA || (ca.KeyUsage != 0 && ca.KeyUsage&x509.KeyUsageCertSign == 0) {
		return nil, fmt.Errorf("certificate %q is not a CA that may sign certificates", ca.Subject.CommonName)
	}
	if !t.NotBefore.Before(t.NotAfter) {
		return nil, fmt.Errorf("validity window is empty: not before %s, not after %s", t.NotBefore.UTC().Format(time.RFC3339), t.NotAfter.UTC().Format(time.RFC3339))
	}
	if t.NotAfter.After(ca.NotAfter) {
		return nil, fmt.Errorf("requested expiry %s is after the CA %q expires (%s)", t.NotAfter.UTC().Format(time.RFC3339), ca.Subject.CommonName, ca.NotAfter.UTC().Format(time.RFC3339))
	}
	usages, err := cfsslUsages(t.KeyUsage, t.ExtKeyUsage)
	if err != nil {
		return nil, err
	}
	csrPEM, err := CreateCSR(key, t)
	if err != nil {
		return nil, err
	}
	silenceCFSSL.Do(func() { cflog.Level = cflog.LevelCritical })
	profile := &cfconfig.SigningProfile{
		Usage:  usages,
		Expiry: t.NotAfter.Sub(t.NotBefore), // ExpiryString alone is ignored outside JSON
	}
	policy := &cfconfig.Signing{Profiles: map[string]*cfconfig.SigningProfile{}, Default: profile}
	s, err := local.NewSigner(caKey, ca, cfsigner.DefaultSigAlgo(caKey), policy)
	if err != nil {
		return nil, fmt.Errorf("cfssl signer: %w", err)
	}
	certPEM, err := s.Sign(cfsigner.SignRequest{
		Request:   string(csrPEM),
		Hosts:     nil, // nil keeps the CSR's SANs; an empty slice would wipe them
		NotBefore: t.NotBefore.UTC(),
		NotAfter:  t.NotAfter.UTC(),
	})
	if err != nil {
		return nil, fmt.Errorf("cfssl sign: %w", err)
	}
	certs, err := ParseCertificates("signed certificate", certPEM)
	if err != nil {
		return nil, err
	}
	cert := certs[0]
	if t.RawSubject != nil && !bytes.Equal(cert.RawSubject, t.RawSubject) {
		if cert, err = signRaw(ca, caKey, key, t, cert); err != nil {
			return nil, err
		}
	}
	if err := CheckIssued(cert, ca, key.Public(), t); err != nil {
		return nil, fmt.Errorf("signed certificate failed its check, not used: %w", err)
	}
	return cert, nil
}

// signRaw re-issues base (cfssl's result) with t's raw subject.
func signRaw(ca *x509.Certificate, caKey crypto.Signer, key crypto.Signer, t Template, base *x509.Certificate) (*x509.Certificate, error) {
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		RawSubject:            t.RawSubject,
		DNSNames:              t.DNSNames,
		IPAddresses:           t.IPAddresses,
		EmailAddresses:        t.EmailAddresses,
		URIs:                  t.URIs,
		NotBefore:             base.NotBefore,
		NotAfter:              base.NotAfter,
		KeyUsage:              t.KeyUsage,
		ExtKeyUsage:           t.ExtKeyUsage,
		BasicConstraintsValid: true,
		SubjectKeyId:          base.SubjectKeyId,
		AuthorityKeyId:        ca.SubjectKeyId,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return nil, fmt.Errorf("sign with raw subject: %w", err)
	}
	return x509.ParseCertificate(der)
}

// CheckIssued verifies that cert is what was asked: pub as its key, t's SANs, usages and
// subject, issued and signed by ca.
func CheckIssued(cert, ca *x509.Certificate, pub crypto.PublicKey, t Template) error {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	if e, ok := cert.PublicKey.(equaler); !ok || !e.Equal(pub) {
		return errors.New("public key is not the requested one")
	}
	if !bytes.Equal(cert.RawIssuer, ca.RawSubject) {
		return fmt.Errorf("issuer %q is not the CA %q", cert.Issuer, ca.Subject)
	}
	if err := cert.CheckSignatureFrom(ca); err != nil {
		return fmt.Errorf("signature does not verify against the CA: %w", err)
	}
	if t.RawSubject != nil && !bytes.Equal(cert.RawSubject, t.RawSubject) {
		return fmt.Errorf("subject %q differs from the requested one", cert.Subject)
	}
	if !sameStrings(cert.DNSNames, t.DNSNames) {
		return fmt.Errorf("DNS SANs %v, want %v", cert.DNSNames, t.DNSNames)
	}
	if !sameStrings(ipStrings(cert.IPAddresses), ipStrings(t.IPAddresses)) {
		return fmt.Errorf("IP SANs %v, want %v", cert.IPAddresses, t.IPAddresses)
	}
	if !sameStrings(cert.EmailAddresses, t.EmailAddresses) {
		return fmt.Errorf("email SANs %v, want %v", cert.EmailAddresses, t.EmailAddresses)
	}
	if !sameStrings(uriStrings(cert.URIs), uriStrings(t.URIs)) {
		return fmt.Errorf("URI SANs %v, want %v", cert.URIs, t.URIs)
	}
	if cert.KeyUsage != t.KeyUsage {
		return fmt.Errorf("key usage %b, want %b", cert.KeyUsage, t.KeyUsage)
	}
	if !sameEKU(cert.ExtKeyUsage, t.ExtKeyUsage) {
		return fmt.Errorf("extended key usage %v, want %v", cert.ExtKeyUsage, t.ExtKeyUsage)
	}
	if cert.IsCA {
		return errors.New("issued certificate is a CA")
	}
	return nil
}

// cfsslUsages maps key usage bits and extended key usages to cfssl's words. cfssl silently
// drops words it does not know, so an unmappable usage is an error here.
func cfsslUsages(ku x509.KeyUsage, eku []x509.ExtKeyUsage) ([]string, error) {
	var out []string
	for _, name := range slices.Sorted(maps.Keys(cfconfig.KeyUsage)) {
		bit := cfconfig.KeyUsage[name]
		if name == "signing" { // alias of "digital signature"
			continue
		}
		if ku&bit != 0 {
			out = append(out, name)
			ku &^= bit
		}
	}
	if ku != 0 {
		return nil, fmt.Errorf("key usage bits %b have no cfssl equivalent", ku)
	}
	for _, e := range eku {
		name := ""
		for _, n := range slices.Sorted(maps.Keys(cfconfig.ExtKeyUsage)) {
			if cfconfig.ExtKeyUsage[n] == e && n != "s/mime" {
				name = n
				break
			}
		}
		if name == "" {
			return nil, fmt.Errorf("extended key usage %d has no cfssl equivalent", e)
		}
		out = append(out, name)
	}
	return out, nil
}

func sameStrings(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	sort.Strings(a)
	sort.Strings(b)
	return slices.Equal(a, b)
}

func sameEKU(a, b []x509.ExtKeyUsage) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func ipStrings(ips []net.IP) []string {
	out := make([]string, len(ips))
	for i, ip := range ips {
		out[i] = ip.String()
	}
	return out
}

func uriStrings(us []*url.URL) []string {
	out := make([]string, len(us))
	for i, u := range us {
		out[i] = u.String()
	}
	return out
}
