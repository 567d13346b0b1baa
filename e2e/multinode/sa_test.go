package multinode

import (
	"context"
	"crypto"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
	authnv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/pki"
)

// The service-account key rotation's proof on the lab (issue 23): tokens signed offline with the
// old and the new sa.key, what the issuer publishes, and which the apiservers accept.

// saProbe is a token of each key for the default service account of namespace default.
type saProbe struct {
	old, new string // signed offline with the old and the new sa.key
}

// readSAKey reads a node's service-account signing key (pkiDir/name).
func readSAKey(t *testing.T, path string) crypto.Signer {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	k, err := pki.ParsePrivateKey(path, data)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// mintSAToken signs a token of default/default offline with key, with the issuer and audience
// the lab's apiservers use (kubeadm's defaults), as whoever holds a copy of sa.key could.
func mintSAToken(t *testing.T, cs kubernetes.Interface, key crypto.Signer) string {
	t.Helper()
	sa, err := cs.CoreV1().ServiceAccounts("default").Get(context.Background(), "default", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	const issuer = "https://kubernetes.default.svc.cluster.local"
	now := time.Now()
	return testenv.SignSAToken(t, key, jwt.Claims{Issuer: issuer, Subject: "system:serviceaccount:default:default", Audience: jwt.Audience{issuer},
		IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now.Add(-time.Minute)), Expiry: jwt.NewNumericDate(now.Add(2 * time.Hour))},
		map[string]any{"namespace": "default", "serviceaccount": map[string]string{"name": "default", "uid": string(sa.UID)}}, "")
}

// tokenAccepted says whether the apiservers behind the balancer accept token (a
// SelfSubjectReview, which every authenticated user may create): true, false on 401.
func tokenAccepted(t *testing.T, kubeconfig, token string) bool {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	anon := rest.AnonymousClientConfig(cfg)
	anon.BearerToken = token
	anon.Timeout = 10 * time.Second
	cs, err := kubernetes.NewForConfig(anon)
	if err != nil {
		t.Fatal(err)
	}
	r, err := cs.AuthenticationV1().SelfSubjectReviews().Create(context.Background(), &authnv1.SelfSubjectReview{}, metav1.CreateOptions{})
	switch {
	case apierrors.IsUnauthorized(err):
		return false
	case err != nil:
		t.Fatalf("SelfSubjectReview with a service-account token: %v", err)
	}
	if got := r.Status.UserInfo.Username; got != "system:serviceaccount:default:default" {
		t.Errorf("the token authenticates as %q", got)
	}
	return true
}

// jwksCount is the number of keys /openid/v1/jwks publishes (through the balancer).
func jwksCount(t *testing.T, cs kubernetes.Interface) int {
	t.Helper()
	data, err := cs.CoreV1().RESTClient().Get().AbsPath("/openid/v1/jwks").DoRaw(context.Background())
	if err != nil {
		t.Fatalf("GET /openid/v1/jwks: %v", err)
	}
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		t.Fatalf("/openid/v1/jwks: %v", err)
	}
	return len(set.Keys)
}

// checkSA checks, after a phase of the rotation of sa, which tokens the cluster accepts and
// what its issuer publishes: old-key tokens until drop, new-key tokens from trust on, old +
// new keys published during the overlap and the new alone after drop.
func checkSA(t *testing.T, cs kubernetes.Interface, kubeconfig, phase string, p saProbe) {
	t.Helper()
	wantOld, wantKeys := phase != "drop", 2
	if phase == "drop" {
		wantKeys = 1
	}
	if got := tokenAccepted(t, kubeconfig, p.old); got != wantOld {
		t.Errorf("after %s: a token of the old service-account key accepted: %v, want %v", phase, got, wantOld)
	}
	if !tokenAccepted(t, kubeconfig, p.new) {
		t.Errorf("after %s: a token of the new service-account key is refused (401)", phase)
	}
	if got := jwksCount(t, cs); got != wantKeys {
		t.Errorf("after %s: /openid/v1/jwks publishes %d keys, want %d", phase, got, wantKeys)
	}
}

func saKeyPath(pkiDir string, rotation bool) string {
	if rotation {
		return filepath.Join(pkiDir, "rotation", "sa", "new.key")
	}
	return filepath.Join(pkiDir, "sa.key")
}
