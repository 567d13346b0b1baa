package satoken_test

import (
	"context"
	"crypto"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/satoken"
)

func key(t *testing.T, alg string) crypto.Signer {
	t.Helper()
	k, err := pki.GenerateKey(alg)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// token signs a bound token of pod NS/NAME issued at iat, as the apiserver does.
func token(t testing.TB, k crypto.Signer, pod string, iat time.Time) string {
	t.Helper()
	ns, name, _ := strings.Cut(pod, "/")
	return testenv.SignSAToken(t, k, jwt.Claims{Issuer: "https://kubernetes.default.svc.cluster.local", Subject: "system:serviceaccount:" + ns + ":default",
		IssuedAt: jwt.NewNumericDate(iat), Expiry: jwt.NewNumericDate(iat.Add(time.Hour))},
		map[string]any{"namespace": ns, "pod": map[string]string{"name": name, "uid": "u"}}, "k1")
}

func project(t *testing.T, l pki.Layout, uid, tok string) {
	t.Helper()
	testenv.ProjectToken(t, l.Resolve(l.KubeletDir), uid, tok)
}

func TestSigner(t *testing.T) {
	rsaOld, ecNew := key(t, pki.AlgRSA2048), key(t, pki.AlgECDSAP256)
	now := time.Now().Truncate(time.Second)
	tests := []struct {
		name    string
		token   string
		want    int
		wantErr error
		pod     string
	}{
		{"old RSA key", token(t, rsaOld, "default/a", now), 0, nil, "default/a"},
		{"new ECDSA key", token(t, ecNew, "kube-system/b", now), 1, nil, "kube-system/b"},
		{"another key", token(t, key(t, pki.AlgRSA2048), "default/c", now), -1, satoken.ErrNotSigned, "default/c"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			i, c, err := satoken.Signer(tc.token, rsaOld.Public(), ecNew.Public())
			if i != tc.want || !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("key %d err %v, want %d %v", i, err, tc.want, tc.wantErr)
			}
			if c.Pod != tc.pod || !c.IssuedAt.Equal(now) || c.KeyID != "k1" {
				t.Errorf("claims %+v", c)
			}
		})
	}
	for _, bad := range []string{"", "not a token", "eyJhbGciOiJub25lIn0.e30.", "a.b.c"} {
		if _, _, err := satoken.Signer(bad, rsaOld.Public()); err == nil || errors.Is(err, satoken.ErrNotSigned) {
			t.Errorf("%q: err %v, want a parse error", bad, err)
		}
	}
}

func TestSurveyAndRefresh(t *testing.T) {
	oldKey, newKey := key(t, pki.AlgRSA2048), key(t, pki.AlgRSA2048)
	l := pki.NewLayout(pki.LayoutOptions{Root: t.TempDir()})
	long := time.Now().Add(-10 * time.Minute)
	project(t, l, "uid-1", token(t, oldKey, "default/one", long))
	project(t, l, "uid-2", token(t, newKey, "default/two", long))
	got, err := satoken.Survey(l, newKey.Public(), oldKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].PodUID != "uid-1" || got[0].Key != 1 || got[1].Key != 0 || got[0].Pod != "default/one" {
		t.Fatalf("survey: %+v", got)
	}

	t.Run("restarted kubelet re-requests the tokens", func(t *testing.T) {
		restarts := 0
		res, err := satoken.Refresh(context.Background(), satoken.RefreshOptions{Layout: l, Want: newKey.Public(), Others: []crypto.PublicKey{oldKey.Public()},
			Poll: 20 * time.Millisecond, Timeout: 10 * time.Second, Settle: true,
			RestartKubelet: func(context.Context) error {
				restarts++
				// The new kubelet writes the pod's token later, with a token issued long enough ago
				// that Settle has nothing to wait for.
				go func() {
					time.Sleep(100 * time.Millisecond)
					project(t, l, "uid-1", token(t, newKey, "default/one", long))
				}()
				return nil
			}})
		if err != nil || restarts != 1 || !res.KubeletRestarted || res.Stale != 1 {
			t.Fatalf("refresh: %+v %v (restarts %d)", res, err, restarts)
		}
	})
	t.Run("nothing to do", func(t *testing.T) {
		res, err := satoken.Refresh(context.Background(), satoken.RefreshOptions{Layout: l, Want: newKey.Public(),
			RestartKubelet: func(context.Context) error { t.Error("restarted for nothing"); return nil }})
		if err != nil || res.KubeletRestarted || res.Stale != 0 {
			t.Fatalf("refresh: %+v %v", res, err)
		}
	})
	t.Run("tokens that never come", func(t *testing.T) {
		project(t, l, "uid-3", token(t, oldKey, "default/three", long))
		_, err := satoken.Refresh(context.Background(), satoken.RefreshOptions{Layout: l, Want: newKey.Public(), Others: []crypto.PublicKey{oldKey.Public()},
			Poll: 20 * time.Millisecond, Timeout: 300 * time.Millisecond, RestartKubelet: func(context.Context) error { return nil }})
		var stale *satoken.StaleTokensError
		if !errors.As(err, &stale) || len(stale.Tokens) != 1 || stale.Tokens[0].PodUID != "uid-3" {
			t.Fatalf("err %v, want a StaleTokensError naming uid-3", err)
		}
	})
	t.Run("settle waits for the clients to re-read", func(t *testing.T) {
		l := pki.NewLayout(pki.LayoutOptions{Root: t.TempDir()})
		fresh := time.Now().Add(-satoken.ClientReread + 500*time.Millisecond)
		project(t, l, "uid-4", token(t, newKey, "default/four", fresh))
		start := time.Now()
		if _, err := satoken.Refresh(context.Background(), satoken.RefreshOptions{Layout: l, Want: newKey.Public(), Settle: true}); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took < 400*time.Millisecond {
			t.Errorf("returned after %s: a token issued %s ago may not have been read yet", took, time.Since(fresh))
		}
	})
}
