package pki

// Fuzz targets for what pkg/pki parses from a node: certificate bundles, private and public
// keys, key/certificate pairs, the kubelet's config file and a kubeconfig's client
// credentials. The seeds are a kubeadm v1.37.2 node's files (testdata/kubeadm-v1.37.2, see
// testdata/README.md) and keys of every type made here. `make fuzz` runs them; without -fuzz
// the seeds and testdata/fuzz/FuzzX run as ordinary tests.

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// seedFile returns testdata/kubeadm-v1.37.2/name.
func seedFile(f *testing.F, name string) []byte {
	f.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "kubeadm-v1.37.2", name))
	if err != nil {
		f.Fatal(err)
	}
	return data
}

// seedPEMs are PEM files of every shape certctl meets: kubeadm's RSA pair, an ECDSA pair
// (SEC1 and PKCS#8), an Ed25519 pair, a bundle, a combined PEM (the kubelet's
// kubelet-client-current.pem), sa.pub.
type seedPEMs struct {
	caCert, rsaCert, rsaKey, saPub             []byte
	ecCert, ecKey, ecPKCS8, edCert, edKey      []byte
	bundle, combined, rsaPKCS1Pub, encrypted   []byte
	ecdsaKey                                   *ecdsa.PrivateKey
	edPriv                                     ed25519.PrivateKey
	kubeletConfig, kubeletConf, kubeletConfRef []byte
}

func makeSeeds(f *testing.F) seedPEMs {
	f.Helper()
	var s seedPEMs
	s.caCert = seedFile(f, "ca.crt")
	s.rsaCert = seedFile(f, "apiserver.crt")
	s.rsaKey = seedFile(f, "apiserver.key")
	s.saPub = seedFile(f, "sa.pub")
	s.kubeletConfig = seedFile(f, "kubelet-config.yaml")
	s.kubeletConf = seedFile(f, "kubelet.conf")

	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	s.ecdsaKey, s.edPriv = ec, ed
	s.ecCert = selfSignedPEM(f, ec, "kube-apiserver-etcd-client")
	s.edCert = selfSignedPEM(f, ed, "ed25519")
	if s.ecKey, err = EncodePrivateKey(ec); err != nil {
		f.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(ec)
	if err != nil {
		f.Fatal(err)
	}
	s.ecPKCS8 = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	if s.edKey, err = EncodePrivateKey(ed); err != nil {
		f.Fatal(err)
	}
	s.bundle = append(append([]byte{}, s.rsaCert...), s.caCert...)
	s.combined = append(append([]byte{}, s.ecCert...), s.ecKey...)
	rsaCert, err := ParseCertificates("apiserver.crt", s.rsaCert)
	if err != nil {
		f.Fatal(err)
	}
	s.rsaPKCS1Pub = pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(rsaCert[0].PublicKey.(*rsa.PublicKey))})
	s.encrypted = []byte("-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIBvTBXBgkqhkiG9w0BBQ0wSjApBgkqhkiG9w0BBQwwHAQI\n-----END ENCRYPTED PRIVATE KEY-----\n")
	// kubelet.conf after the kubelet rotated its client certificate: a file reference.
	s.kubeletConfRef = []byte(`apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: ` + b64(s.caCert) + `
    server: https://10.2.1.151:6443
  name: default-cluster
contexts:
- context:
    cluster: default-cluster
    namespace: default
    user: default-auth
  name: default-context
current-context: default-context
kind: Config
preferences: {}
users:
- name: default-auth
  user:
    client-certificate: /var/lib/kubelet/pki/kubelet-client-current.pem
    client-key: /var/lib/kubelet/pki/kubelet-client-current.pem
`)
	return s
}

func b64(data []byte) string { return base64.StdEncoding.EncodeToString(data) }

func selfSignedPEM(f *testing.F, key crypto.Signer, cn string) []byte {
	f.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		f.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// wantNamed fails unless err names the file: every parse error of pkg/pki starts with it.
func wantNamed(t *testing.T, err error, name string) {
	t.Helper()
	if !strings.HasPrefix(err.Error(), name+": ") {
		t.Fatalf("error %q does not name the file %q", err, name)
	}
}

// FuzzParseCertificates: a certificate file never panics the parser; an error names the file;
// what parses is written back by EncodeCertificates and reads back the same certificates.
func FuzzParseCertificates(f *testing.F) {
	s := makeSeeds(f)
	for _, seed := range [][]byte{s.caCert, s.rsaCert, s.ecCert, s.edCert, s.bundle, s.combined,
		append(append([]byte{}, s.rsaKey...), s.rsaCert...), s.rsaKey, s.saPub,
		append(append([]byte{}, s.caCert...), "garbage\n"...), s.caCert[:len(s.caCert)/2], nil, []byte("\n  \n")} {
		f.Add(seed)
	}
	const name = "/etc/kubernetes/pki/apiserver.crt"
	f.Fuzz(func(t *testing.T, data []byte) {
		certs, err := ParseCertificates(name, data)
		CertificatesIn(data) // the lenient reader must not panic either
		if err != nil {
			wantNamed(t, err, name)
			return
		}
		if len(certs) == 0 {
			t.Fatal("no certificate and no error")
		}
		again, err := ParseCertificates(name, EncodeCertificates(certs...))
		if err != nil {
			t.Fatalf("re-encoded certificates do not parse: %v", err)
		}
		if len(again) != len(certs) {
			t.Fatalf("%d certificates read back, want %d", len(again), len(certs))
		}
		for i := range certs {
			if !again[i].Equal(certs[i]) {
				t.Fatalf("certificate %d differs after a round trip", i)
			}
			KeyAlgorithm(certs[i].PublicKey)
		}
	})
}

// FuzzParsePrivateKey: a key file never panics the parser; an error names the file; a key
// that parses belongs to its own public key, and EncodePrivateKey writes it in a form that
// reads back as the same key.
func FuzzParsePrivateKey(f *testing.F) {
	s := makeSeeds(f)
	for _, seed := range [][]byte{s.rsaKey, s.ecKey, s.ecPKCS8, s.edKey, s.combined, s.encrypted,
		append(append([]byte{}, s.rsaKey...), s.ecKey...), append(append([]byte{}, s.ecKey...), "trailing"...),
		s.caCert, s.rsaKey[:len(s.rsaKey)/2], nil} {
		f.Add(seed)
	}
	const name = "/etc/kubernetes/pki/apiserver.key"
	f.Fuzz(func(t *testing.T, data []byte) {
		key, err := ParsePrivateKey(name, data)
		if err != nil {
			wantNamed(t, err, name)
			return
		}
		if err := VerifyKeyPair(key.Public(), key); err != nil {
			t.Fatalf("a key does not match its own public key: %v", err)
		}
		KeyAlgorithm(key.Public())
		enc, err := EncodePrivateKey(key)
		if err != nil {
			t.Fatalf("a key that parsed does not encode: %v", err)
		}
		again, err := ParsePrivateKey(name, enc)
		if err != nil {
			t.Fatalf("re-encoded key does not parse: %v", err)
		}
		if err := VerifyKeyPair(key.Public(), again); err != nil {
			t.Fatalf("re-encoded key is another key: %v", err)
		}
	})
}

// FuzzParsePublicKey: sa.pub never panics the parser; an error names the file; a key that
// parses and that EncodePublicKey can write reads back equal.
func FuzzParsePublicKey(f *testing.F) {
	s := makeSeeds(f)
	ecPub, err := EncodePublicKey(s.ecdsaKey.Public())
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range [][]byte{s.saPub, s.rsaPKCS1Pub, ecPub, s.rsaKey, s.caCert, append(append([]byte{}, s.saPub...), s.saPub...), nil} {
		f.Add(seed)
	}
	const name = "/etc/kubernetes/pki/sa.pub"
	f.Fuzz(func(t *testing.T, data []byte) {
		pub, err := ParsePublicKey(name, data)
		if err != nil {
			wantNamed(t, err, name)
			return
		}
		KeyAlgorithm(pub)
		enc, err := EncodePublicKey(pub)
		if err != nil {
			return // a key type certctl never writes (DSA)
		}
		again, err := ParsePublicKey(name, enc)
		if err != nil {
			t.Fatalf("re-encoded public key does not parse: %v", err)
		}
		if e, ok := pub.(interface{ Equal(crypto.PublicKey) bool }); ok && !e.Equal(again) {
			t.Fatal("public key differs after a round trip")
		}
	})
}

// FuzzVerifyKeyPair: a certificate and a key, each parsed as certctl parses them, checked
// as a pair. No panic; a mismatch is ErrKeyMismatch (or a key type that cannot be compared);
// a pair that VerifyKeyPair accepts really is one: a signature by the key verifies with the
// certificate's public key.
func FuzzVerifyKeyPair(f *testing.F) {
	s := makeSeeds(f)
	f.Add(s.rsaCert, s.rsaKey)
	f.Add(s.ecCert, s.ecKey)
	f.Add(s.ecCert, s.ecPKCS8)
	f.Add(s.edCert, s.edKey)
	f.Add(s.combined, s.combined)
	f.Add(s.rsaCert, s.ecKey) // a mismatch
	f.Add(s.caCert, s.rsaKey) // a mismatch of the same type
	f.Fuzz(func(t *testing.T, certPEM, keyPEM []byte) {
		certs, err := ParseCertificates("x.crt", certPEM)
		if err != nil {
			return
		}
		key, err := ParsePrivateKey("x.key", keyPEM)
		if err != nil {
			return
		}
		c := certs[0]
		err = VerifyKeyPair(c.PublicKey, key)
		if err != nil {
			if !errors.Is(err, ErrKeyMismatch) && !strings.Contains(err.Error(), "cannot compare") {
				t.Fatalf("unexpected error for a mismatch: %v", err)
			}
			return
		}
		msg := []byte("certctl fuzz")
		digest := sha256.Sum256(msg)
		switch pub := c.PublicKey.(type) {
		case *rsa.PublicKey:
			sig, err := key.Sign(rand.Reader, digest[:], crypto.SHA256)
			if err != nil {
				t.Fatalf("sign: %v", err)
			}
			if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig); err != nil {
				t.Fatalf("a pair VerifyKeyPair accepted does not verify: %v", err)
			}
		case *ecdsa.PublicKey:
			sig, err := key.Sign(rand.Reader, digest[:], crypto.SHA256)
			if err != nil {
				t.Fatalf("sign: %v", err)
			}
			if !ecdsa.VerifyASN1(pub, digest[:], sig) {
				t.Fatal("a pair VerifyKeyPair accepted does not verify")
			}
		case ed25519.PublicKey:
			sig, err := key.Sign(rand.Reader, msg, crypto.Hash(0))
			if err != nil {
				t.Fatalf("sign: %v", err)
			}
			if !ed25519.Verify(pub, msg, sig) {
				t.Fatal("a pair VerifyKeyPair accepted does not verify")
			}
		}
	})
}

// FuzzLoadKubeletConfig: /var/lib/kubelet/config.yaml never panics the loader; an error
// names the file; what loads records its path.
func FuzzLoadKubeletConfig(f *testing.F) {
	s := makeSeeds(f)
	f.Add(s.kubeletConfig)
	f.Add([]byte("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nserverTLSBootstrap: true\ntlsCertFile: /var/lib/kubelet/pki/kubelet.crt\ntlsPrivateKeyFile: /var/lib/kubelet/pki/kubelet.key\n"))
	f.Add([]byte("serverTLSBootstrap: yes-please\n"))
	f.Add([]byte("{address: [1, 2]}\n"))
	f.Add([]byte("- a list\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "config.yaml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		kc, err := LoadKubeletConfig(path)
		if err != nil {
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("error %q does not name %s", err, path)
			}
			return
		}
		if kc.Path != path {
			t.Fatalf("Path = %q, want %q", kc.Path, path)
		}
	})
}

// FuzzLoadKubeconfig: a node's kubelet.conf (any bytes) loaded as Load loads it: the
// kubeconfig, the client certificate and key it embeds or names, its CA. No panic; every
// error names a file, and every file the kubeconfig names is read under the root (the tree is
// in a temporary directory: an error naming a path outside it would mean certctl read outside
// --root).
func FuzzLoadKubeconfig(f *testing.F) {
	s := makeSeeds(f)
	f.Add(s.kubeletConf)
	f.Add(s.kubeletConfRef)
	f.Add(bytes.Replace(s.kubeletConfRef, []byte("/var/lib/kubelet/pki/kubelet-client-current.pem"), []byte("../../../../../../etc/passwd"), 1))
	f.Add(bytes.Replace(s.kubeletConfRef, []byte("client-certificate:"), []byte("token: abcdef.0123456789abcdef\n    x-client-certificate:"), 1))
	f.Add([]byte("apiVersion: v1\nkind: Config\ncurrent-context: nowhere\n"))
	f.Add([]byte("not: [a kubeconfig"))
	var spec Spec
	for _, sp := range Default() {
		if sp.Name == "kubelet.conf" {
			spec = sp
		}
	}
	if spec.Name == "" {
		f.Fatal("no kubelet.conf spec")
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		root := t.TempDir()
		l := NewLayout(LayoutOptions{Root: root, Home: "/root"})
		pkiDir := filepath.Join(root, "var", "lib", "kubelet", "pki")
		if err := os.MkdirAll(pkiDir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(pkiDir, "kubelet-client-current.pem"), s.combined, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(l.KubeconfigDir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(l.KubeconfigDir, "kubelet.conf"), data, 0o600); err != nil {
			t.Fatal(err)
		}
		inv := &Inventory{Layout: l}
		it := inv.load(spec)
		for _, err := range []error{it.CertErr, it.KeyErr} {
			if err != nil && !strings.Contains(err.Error(), root) {
				t.Fatalf("error %q names no file under the root %s", err, root)
			}
		}
		if it.Key != nil && len(it.Certs) == 0 && it.CertErr == nil {
			t.Fatal("a key without a certificate and without an error")
		}
	})
}
