package pki

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"errors"
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
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
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

// CrossSign makes the CA certificate newCA again, signed by the CA old (oldKey): the same
// subject, public key and subject key ID as newCA, its validity cut to old's. A server that
// sends it after a leaf of newCA is verified by clients that trust only old as well as by those
// that trust newCA: during a CA rotation, that is every client that read the old CA once and
// never again (client-go's in-cluster config reads ca.crt at start: kubernetes#119483).
func CrossSign(newCA, old *x509.Certificate, oldKey crypto.Signer) (*x509.Certificate, error) {
	if !newCA.IsCA || !old.IsCA {
		return nil, errors.New("cross-sign: both certificates must be CAs")
	}
	if err := VerifyKeyPair(old.PublicKey, oldKey); err != nil {
		return nil, fmt.Errorf("cross-sign: the key is not the old CA's: %w", err)
	}
	notAfter := newCA.NotAfter
	if old.NotAfter.Before(notAfter) {
		notAfter = old.NotAfter
	}
	if !newCA.NotBefore.Before(notAfter) {
		return nil, fmt.Errorf("cross-sign: the old CA expires (%s) before the new one is valid", old.NotAfter.UTC().Format(time.RFC3339))
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		RawSubject:            slices.Clone(newCA.RawSubject),
		Subject:               newCA.Subject,
		SubjectKeyId:          slices.Clone(newCA.SubjectKeyId),
		NotBefore:             newCA.NotBefore,
		NotAfter:              notAfter,
		KeyUsage:              newCA.KeyUsage,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            newCA.MaxPathLen,
		MaxPathLenZero:        newCA.MaxPathLenZero,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, old, newCA.PublicKey, oldKey)
	if err != nil {
		return nil, fmt.Errorf("cross-sign: %w", err)
	}
	return x509.ParseCertificate(der)
}

// newSerial is a certificate serial number: 127 random bits plus one, never zero (mkcert's
// choice).
func newSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	return serial.Add(serial, big.NewInt(1)), nil
}
