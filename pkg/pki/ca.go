package pki

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"math/big"
	"slices"
	"time"
)

// NewCA makes a self-signed CA certificate for key with the subject of like (its exact raw
// subject, so a new cluster CA is "CN=kubernetes" as the old one), valid from notBefore to
// notAfter, with the usages kubeadm gives its CAs (certificate signing, digital signature,
// key encipherment). Go derives the subject key ID from the key, so two CAs with the same
// subject are still told apart by clients building chains (authority key ID).
func NewCA(key crypto.Signer, like *x509.Certificate, notBefore, notAfter time.Time) (*x509.Certificate, error) {
	if !notBefore.Before(notAfter) {
		return nil, fmt.Errorf("validity window is empty: not before %s, not after %s", notBefore.UTC().Format(time.RFC3339), notAfter.UTC().Format(time.RFC3339))
	}
	// 128 random bits, never zero (mkcert's choice).
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial.Add(serial, big.NewInt(1)),
		RawSubject:            slices.Clone(like.RawSubject),
		Subject:               like.Subject,
		NotBefore:             notBefore.UTC(),
		NotAfter:              notAfter.UTC(),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	return x509.ParseCertificate(der)
}
