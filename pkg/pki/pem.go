package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	certutil "k8s.io/client-go/util/cert"
	"strings"
)

// ParseCertificates parses every CERTIFICATE block of a PEM file, skipping a private key
// beside them (combined PEMs). It refuses files with no certificate, blocks of another type
// and trailing bytes that are not PEM, so a truncated or
// concatenated-by-mistake file is reported rather than half-read. name is used in errors.
func ParseCertificates(name string, data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if strings.HasSuffix(block.Type, "PRIVATE KEY") {
			continue // a combined PEM, as the kubelet writes kubelet-client-current.pem
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("%s: unexpected PEM block %q (want CERTIFICATE)", name, block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: certificate %d does not parse: %w", name, len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		if len(bytes.TrimSpace(data)) == 0 {
			return nil, fmt.Errorf("%s: file is empty", name)
		}
		return nil, fmt.Errorf("%s: no PEM certificate found (truncated or not PEM?)", name)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("%s: trailing data after the last certificate (truncated or corrupted file)", name)
	}
	return certs, nil
}

// ParsePrivateKey parses the one PEM private key of a file (PKCS#1 RSA, SEC1 EC or PKCS#8).
// CERTIFICATE blocks beside it (combined PEMs) are skipped; anything else is refused.
func ParsePrivateKey(name string, data []byte) (crypto.Signer, error) {
	var block *pem.Block
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			continue // a combined PEM: the certificate is read by ParseCertificates
		}
		if block != nil {
			return nil, fmt.Errorf("%s: more than one private key in the file", name)
		}
		block = b
	}
	if block == nil {
		if len(bytes.TrimSpace(data)) == 0 {
			return nil, fmt.Errorf("%s: file is empty", name)
		}
		return nil, fmt.Errorf("%s: no PEM private key found (truncated or not PEM?)", name)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("%s: trailing data after the private key (truncated or corrupted file)", name)
	}
	var (
		key any
		err error
	)
	switch block.Type {
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	default:
		if strings.Contains(block.Type, "ENCRYPTED") {
			return nil, fmt.Errorf("%s: encrypted private keys are not supported; decrypt it first", name)
		}
		return nil, fmt.Errorf("%s: unexpected PEM block %q (want a private key)", name, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: private key does not parse: %w", name, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: unsupported private key type %T", name, key)
	}
	return signer, nil
}

// ParsePublicKey parses a PEM public key (PKIX "PUBLIC KEY" or PKCS#1 "RSA PUBLIC KEY"), as
// kubeadm writes sa.pub.
func ParsePublicKey(name string, data []byte) (crypto.PublicKey, error) {
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%s: no PEM public key found", name)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("%s: trailing data after the public key", name)
	}
	switch block.Type {
	case "PUBLIC KEY":
		k, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: public key does not parse: %w", name, err)
		}
		return k, nil
	case "RSA PUBLIC KEY":
		k, err := x509.ParsePKCS1PublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: public key does not parse: %w", name, err)
		}
		return k, nil
	}
	return nil, fmt.Errorf("%s: unexpected PEM block %q (want a public key)", name, block.Type)
}

// EncodeCertificates returns certs as PEM.
func EncodeCertificates(certs ...*x509.Certificate) []byte {
	var buf bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return buf.Bytes()
}

// EncodePrivateKey returns key as PEM in the block type kubeadm uses: PKCS#1 for RSA, SEC1
// for ECDSA, PKCS#8 for anything else.
func EncodePrivateKey(key crypto.Signer) ([]byte, error) {
	var block *pem.Block
	switch k := key.(type) {
	case *rsa.PrivateKey:
		block = &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}
	case *ecdsa.PrivateKey:
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			return nil, fmt.Errorf("marshal EC key: %w", err)
		}
		block = &pem.Block{Type: "EC PRIVATE KEY", Bytes: der}
	default:
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, fmt.Errorf("marshal key: %w", err)
		}
		block = &pem.Block{Type: "PRIVATE KEY", Bytes: der}
	}
	return pem.EncodeToMemory(block), nil
}

// EncodePublicKey returns pub as a PKIX "PUBLIC KEY" PEM block.
func EncodePublicKey(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("marshal public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// ErrKeyMismatch is returned by VerifyKeyPair when a private key does not belong to a
// certificate or public key.
var ErrKeyMismatch = errors.New("private key does not match the certificate's public key")

// VerifyKeyPair reports whether key is the private half of pub.
func VerifyKeyPair(pub crypto.PublicKey, key crypto.Signer) error {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	e, ok := key.Public().(equaler)
	if !ok {
		return fmt.Errorf("cannot compare key of type %T", key)
	}
	if !e.Equal(pub) {
		return ErrKeyMismatch
	}
	return nil
}

// KeyAlgorithm names a public key the way operators write it: rsa-2048, ecdsa-p256, ed25519.
func KeyAlgorithm(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("rsa-%d", k.N.BitLen())
	case *ecdsa.PublicKey:
		return "ecdsa-" + strings.ToLower(strings.ReplaceAll(k.Curve.Params().Name, "-", ""))
	case ed25519.PublicKey:
		return "ed25519"
	}
	return fmt.Sprintf("%T", pub)
}

// CertificatesIn returns the certificates of the PEM data, skipping other blocks, none when it
// holds none (a CA bundle read leniently: certificate-authority-data, a ConfigMap's ca.crt).
func CertificatesIn(data []byte) []*x509.Certificate {
	certs, _ := certutil.ParseCertsPEM(data)
	return certs
}
