package pki_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/certctl/certctl/pkg/pki"
)

func selfSigned(t *testing.T) ([]byte, []byte) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "x"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := pki.EncodePrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM
}

func TestParseCertificates(t *testing.T) {
	cert, key := selfSigned(t)
	tests := []struct {
		name    string
		data    string
		want    int
		wantErr string
	}{
		{"one certificate", string(cert), 1, ""},
		{"bundle of two", string(cert) + string(cert), 2, ""},
		{"combined with its key", string(cert) + string(key), 1, ""},
		{"empty", "", 0, "file is empty"},
		{"whitespace only", "\n  \n", 0, "file is empty"},
		{"not PEM", "hello", 0, "no PEM certificate found"},
		{"truncated", string(cert[:len(cert)/2]), 0, "no PEM certificate found"},
		{"trailing garbage", string(cert) + "garbage", 0, "trailing data"},
		{"key only", string(key), 0, "no PEM certificate found"},
		{"wrong block", "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n", 0, `unexpected PEM block "CERTIFICATE REQUEST"`},
		{"corrupt DER", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", 0, "does not parse"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			certs, err := pki.ParseCertificates("/etc/kubernetes/pki/x.crt", []byte(tc.data))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "x.crt") {
					t.Fatalf("err = %v, want one naming the file and containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || len(certs) != tc.want {
				t.Fatalf("got %d certs, err %v; want %d", len(certs), err, tc.want)
			}
		})
	}
}

func TestParsePrivateKey(t *testing.T) {
	cert, key := selfSigned(t)
	rsaKey, _ := pki.GenerateKey(pki.AlgRSA2048)
	rsaPEM, _ := pki.EncodePrivateKey(rsaKey)
	der, _ := x509.MarshalPKCS8PrivateKey(rsaKey)
	pkcs8 := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	tests := []struct {
		name    string
		data    string
		wantAlg string
		wantErr string
	}{
		{"sec1 ecdsa", string(key), "ecdsa-p256", ""},
		{"pkcs1 rsa", string(rsaPEM), "rsa-2048", ""},
		{"pkcs8 rsa", string(pkcs8), "rsa-2048", ""},
		{"combined cert and key", string(cert) + string(key), "ecdsa-p256", ""},
		{"empty", "", "", "file is empty"},
		{"truncated", string(key[:len(key)-40]), "", "no PEM private key found"},
		{"two keys", string(key) + string(key), "", "more than one private key"},
		{"trailing garbage", string(key) + "xx", "", "trailing data"},
		{"encrypted", "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n", "", "encrypted private keys are not supported"},
		{"public key instead", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "", `unexpected PEM block "PUBLIC KEY"`},
		{"wrong type label", strings.Replace(string(key), "EC PRIVATE KEY", "RSA PRIVATE KEY", 2), "", "does not parse"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k, err := pki.ParsePrivateKey("apiserver.key", []byte(tc.data))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "apiserver.key") {
					t.Fatalf("err = %v, want one naming the file and containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := pki.KeyAlgorithm(k.Public()); got != tc.wantAlg {
				t.Fatalf("algorithm %s, want %s", got, tc.wantAlg)
			}
		})
	}
}

func TestUnderRoot(t *testing.T) {
	tests := []struct{ root, p, want string }{
		{"/", "/etc/kubernetes", "/etc/kubernetes"},
		{"", "/etc/kubernetes", "/etc/kubernetes"},
		{"/host", "/etc/kubernetes", "/host/etc/kubernetes"},
		{"/host", "/host/etc/kubernetes", "/host/etc/kubernetes"},
		{"/host", "/hostile/x", "/host/hostile/x"},
		{"/tmp/n", "relative/x", "/tmp/n/relative/x"},
	}
	for _, tc := range tests {
		if got := pki.UnderRoot(tc.root, tc.p); got != tc.want {
			t.Errorf("UnderRoot(%q, %q) = %q, want %q", tc.root, tc.p, got, tc.want)
		}
	}
}

func TestNewLayout(t *testing.T) {
	l := pki.NewLayout(pki.LayoutOptions{Root: "/host", Home: "/home/ops", KubeconfigDir: "/srv/k8s"})
	want := pki.Layout{Root: "/host", PKIDir: "/host/srv/k8s/pki", KubeconfigDir: "/host/srv/k8s", ManifestsDir: "/host/srv/k8s/manifests",
		KubeletDir: "/host/var/lib/kubelet", UserKubeconfig: "/host/home/ops/.kube/config"}
	if l != want {
		t.Fatalf("layout\n got %+v\nwant %+v", l, want)
	}
}
