package testenv

import (
	"crypto"
	"crypto/ecdsa"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// SignSAToken signs a service-account token (a JWT) with key, as the apiserver does with
// sa.key (RS256 for an RSA key, ES256 for ECDSA), carrying claims and the kubernetes.io claims
// k8s (namespace, serviceaccount or pod), with the key id kid when not empty.
func SignSAToken(t testing.TB, key crypto.Signer, claims jwt.Claims, k8s map[string]any, kid string) string {
	t.Helper()
	alg := jose.RS256
	if _, ok := key.(*ecdsa.PrivateKey); ok {
		alg = jose.ES256
	}
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(sig).Claims(claims).Claims(map[string]any{"kubernetes.io": k8s}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// ProjectToken writes token as a pod's projected service-account token under the kubelet dir
// kubeletDir (on this machine), the way the kubelet's atomic writer does: a timestamped
// directory, ..data linking to it, token (and ca.crt, which is no token) linking through ..data.
func ProjectToken(t testing.TB, kubeletDir, podUID, token string) {
	t.Helper()
	vol := filepath.Join(kubeletDir, "pods", podUID, "volumes", "kubernetes.io~projected", "kube-api-access-x7k2p")
	stamp := fmt.Sprintf("..%d", time.Now().UnixNano())
	files := map[string]string{"token": token, "ca.crt": "-----BEGIN CERTIFICATE-----\n"}
	if err := os.MkdirAll(filepath.Join(vol, stamp), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(vol, stamp, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// The new ..data replaces the old one in one rename, as the kubelet does.
	tmp := filepath.Join(vol, "..data_tmp")
	if err := os.Symlink(stamp, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(vol, "..data")); err != nil {
		t.Fatal(err)
	}
	for name := range files {
		if _, err := os.Lstat(filepath.Join(vol, name)); err != nil {
			if err := os.Symlink("..data/"+name, filepath.Join(vol, name)); err != nil {
				t.Fatal(err)
			}
		}
	}
}
