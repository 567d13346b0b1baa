package cluster

import (
	"context"
	"crypto"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/pki"
)

// TestSARotationAPIServer, on a real kube-apiserver of a kubeadm tree: the legacy token
// Secrets whose token the new service-account key did not sign are named (one of the old key,
// one of another key; one of the new key and one not yet populated are not), and the refusal
// says how to re-issue them; verifySA reads the apiserver's JWKS and the key it signs with,
// and says what is wrong when they are not the phase's.
func TestSARotationAPIServer(t *testing.T) {
	tr := testenv.KubeadmTree(t, testenv.TreeOptions{})
	cp := testenv.StartControlPlane(t, testenv.ControlPlaneOptions{PKIDir: tr.Layout.PKIDir, KubeconfigDir: tr.Layout.KubeconfigDir})
	cs := cp.Clientset(t)
	ctx := context.Background()
	read := func(name string) []byte {
		data, err := os.ReadFile(filepath.Join(tr.Layout.PKIDir, name))
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	oldKey, err := pki.ParsePrivateKey("sa.key", read("sa.key"))
	if err != nil {
		t.Fatal(err)
	}
	newKey, err := pki.GenerateKey(pki.KeyAlgorithm(oldKey.Public()))
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := pki.GenerateKey(pki.AlgECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{"default", "kube-system"} {
		if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "ci-bot"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	legacy := func(ns, name string, key crypto.Signer) {
		t.Helper()
		data := map[string][]byte{}
		if key != nil {
			data[corev1.ServiceAccountTokenKey] = []byte(testenv.SignSAToken(t, key, jwt.Claims{Issuer: "kubernetes/serviceaccount",
				Subject: "system:serviceaccount:" + ns + ":ci-bot", IssuedAt: jwt.NewNumericDate(time.Now())}, nil, ""))
		}
		if _, err := cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Annotations: map[string]string{corev1.ServiceAccountNameKey: "ci-bot"}},
			Type:       corev1.SecretTypeServiceAccountToken, Data: data,
		}, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create the legacy token Secret %s/%s: %v", ns, name, err)
		}
	}
	legacy("default", "ci-bot-old", oldKey)
	legacy("kube-system", "ci-bot-other", otherKey)
	legacy("default", "ci-bot-new", newKey)
	legacy("kube-system", "ci-bot-empty", nil)
	// An ordinary Secret with a token-looking value is not a service-account token.
	if _, err := cs.CoreV1().Secrets("default").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "opaque"},
		Data: map[string][]byte{"token": []byte("eyJhbGciOiJSUzI1NiJ9.e30.c2ln")}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	got, err := legacyTokens(ctx, cs, newKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"default/ci-bot-old", "kube-system/ci-bot-other"}; !slices.Equal(got, want) {
		t.Fatalf("legacy tokens not of the new key: %v, want %v", got, want)
	}
	if msg := (&LegacyTokensError{Secrets: got}).Error(); !strings.Contains(msg, "default/ci-bot-old") || !strings.Contains(msg, `"path":"/data/token"`) {
		t.Errorf("the refusal does not name the Secret and the re-issue command: %s", msg)
	}

	// verifySA on the apiserver of this tree, which signs with sa.key and publishes sa.pub.
	cfg := cp.RESTConfig(t)
	caPEM := read("ca.crt")
	o := &CARotateOptions{Config: cfg, Runner: Runner{Namespace: "default", Progress: io.Discard}, Checks: Checks{ReadyTimeout: 3 * time.Second}, newSA: oldKey.Public()}
	if _, err := cs.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, phase string
		newSA       crypto.PublicKey
		wantErr     string
	}{
		{"issue: it signs with the expected key", "issue", oldKey.Public(), ""},
		{"drop: it publishes the expected key alone", "drop", oldKey.Public(), ""},
		{"trust: the old key alone is not old + new", "trust", oldKey.Public(), "want old + new"},
		{"issue: it signs with another key", "issue", newKey.Public(), "not the new one"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o.Phase, o.newSA = tc.phase, tc.newSA
			err := o.verifySA(ctx, cp.APIServerAddr, caPEM)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("err %v, want %q", err, tc.wantErr)
			}
		})
	}
}
