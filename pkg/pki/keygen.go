package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
)

// Key algorithms certctl generates.
const (
	AlgRSA2048   = "rsa-2048"
	AlgRSA3072   = "rsa-3072"
	AlgRSA4096   = "rsa-4096"
	AlgECDSAP256 = "ecdsa-p256"
	AlgECDSAP384 = "ecdsa-p384"
)

// KeyAlgorithms lists what GenerateKey accepts.
var KeyAlgorithms = []string{AlgRSA2048, AlgRSA3072, AlgRSA4096, AlgECDSAP256, AlgECDSAP384}

// GenerateKey makes a new private key of algorithm alg.
func GenerateKey(alg string) (crypto.Signer, error) {
	switch alg {
	case AlgRSA2048:
		return rsa.GenerateKey(rand.Reader, 2048)
	case AlgRSA3072:
		return rsa.GenerateKey(rand.Reader, 3072)
	case AlgRSA4096:
		return rsa.GenerateKey(rand.Reader, 4096)
	case AlgECDSAP256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case AlgECDSAP384:
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	}
	return nil, fmt.Errorf("unknown key algorithm %q (want one of %v)", alg, KeyAlgorithms)
}
