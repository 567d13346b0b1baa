package carotate_test

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/carotate"
	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/satoken"
)

const saIssuer = "https://kubernetes.default.svc.cluster.local" // testenv's --service-account-issuer

// mint signs a service-account token for default/NAME offline with key, as whoever holds a
// copy of sa.key could.
func mint(t *testing.T, key crypto.Signer, name, uid string) string {
	t.Helper()
	now := time.Now()
	return testenv.SignSAToken(t, key, jwt.Claims{Issuer: saIssuer, Subject: "system:serviceaccount:default:" + name, Audience: jwt.Audience{saIssuer},
		IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now.Add(-time.Minute)), Expiry: jwt.NewNumericDate(now.Add(time.Hour))},
		map[string]any{"namespace": "default", "serviceaccount": map[string]string{"name": name, "uid": uid}}, "")
}

// authStatus is what the apiserver answers a SelfSubjectReview with the bearer token: 201 when
// the token authenticates, 401 when it does not.
func authStatus(t *testing.T, cp *testenv.ControlPlane, caPath, token string) int {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(read(t, caPath))
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: testenv.APIServerName}, DisableKeepAlives: true}}
	body := `{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}`
	req, err := http.NewRequest(http.MethodPost, cp.URL+"/apis/authentication.k8s.io/v1/selfsubjectreviews", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("SelfSubjectReview: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// jwks is the number of keys the issuer publishes at /openid/v1/jwks.
func jwks(t *testing.T, cs kubernetes.Interface) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	data, err := cs.CoreV1().RESTClient().Get().AbsPath("/openid/v1/jwks").DoRaw(ctx)
	if err != nil {
		t.Fatalf("GET /openid/v1/jwks: %v", err)
	}
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		t.Fatalf("/openid/v1/jwks: %v: %s", err, data)
	}
	return len(set.Keys)
}

// requestToken asks the apiserver for a token of default/NAME (what the kubelet does for a
// pod's projected token).
func requestToken(t *testing.T, cs kubernetes.Interface, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	secs := int64(3600)
	tr, err := cs.CoreV1().ServiceAccounts("default").CreateToken(ctx, name, &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{ExpirationSeconds: &secs}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest: %v", err)
	}
	return tr.Status.Token
}

func projectToken(t *testing.T, l pki.Layout, podUID, token string) {
	t.Helper()
	testenv.ProjectToken(t, l.Resolve(l.KubeletDir), podUID, token)
}

func signerKey(t *testing.T, path string) crypto.Signer {
	t.Helper()
	k, err := pki.ParsePrivateKey(path, read(t, path))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func publicKey(t *testing.T, path string) crypto.PublicKey {
	t.Helper()
	k, err := pki.ParsePublicKey(path, read(t, path))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestSAAPIServer is the proof on a real kube-apiserver (and etcd) of a kubeadm tree, run on
// the flags the rotated kube-apiserver.yaml carries: after trust, tokens of the old and of the
// new key authenticate and /openid/v1/jwks publishes both, the apiserver still signing with
// the old; after issue it signs with the new key and the old key's tokens still authenticate;
// drop is refused while a pod's projected token on the node is the old key's, and after it
// the old key's tokens get 401, the new key's 201, and the JWKS has the new key alone.
func TestSAAPIServer(t *testing.T) {
	l := node(t)
	p, err := carotate.PathsOf(l, carotate.SA)
	if err != nil {
		t.Fatal(err)
	}
	oldKey, oldPub := signerKey(t, p.CAKey), publicKey(t, p.CACert)
	o := opts(l, carotate.SA)
	o.Generate = true
	res := mustPhase(t, carotate.PhaseTrust, o)
	if strings.Join(res.Restart, ",") != "apiserver" {
		t.Errorf("trust: restart %v, want apiserver", res.Restart)
	}
	keyFile := func() string { return l.Resolve(flags(t, l, "apiserver")["service-account-key-file"]) }
	if got := keyFile(); got != p.Bundle {
		t.Fatalf("kube-apiserver.yaml --service-account-key-file resolves to %s, want the bundle %s", got, p.Bundle)
	}
	newKey, newPub := signerKey(t, p.NewKey), publicKey(t, p.NewCert)
	cp := testenv.StartControlPlane(t, testenv.ControlPlaneOptions{PKIDir: l.PKIDir, KubeconfigDir: l.KubeconfigDir,
		APIServerFlags: map[string]string{"service-account-key-file": keyFile()}})
	admin := cp.ClientsetFor(t, cp.Kubeconfig(t, "admin.conf"))
	ctx := context.Background()
	sa, err := admin.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "rotation-probe"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	oldMinted, newMinted := mint(t, oldKey, sa.Name, string(sa.UID)), mint(t, newKey, sa.Name, string(sa.UID))
	caPath := filepath.Join(l.PKIDir, "ca.crt")
	signer := func(tok string) int {
		t.Helper()
		i, _, err := satoken.Signer(tok, oldPub, newPub)
		if err != nil {
			t.Fatalf("a token of the apiserver: %v", err)
		}
		return i
	}
	check := func(phase string, wantOld, wantNew, wantKeys, wantSigner int) string {
		t.Helper()
		if got := authStatus(t, cp, caPath, oldMinted); got != wantOld {
			t.Errorf("%s: a token of the old key gets %d, want %d", phase, got, wantOld)
		}
		if got := authStatus(t, cp, caPath, newMinted); got != wantNew {
			t.Errorf("%s: a token of the new key gets %d, want %d", phase, got, wantNew)
		}
		if got := jwks(t, admin); got != wantKeys {
			t.Errorf("%s: /openid/v1/jwks has %d keys, want %d", phase, got, wantKeys)
		}
		tok := requestToken(t, admin, sa.Name)
		if got := signer(tok); got != wantSigner {
			t.Errorf("%s: the apiserver signs with key %d (0 old, 1 new), want %d", phase, got, wantSigner)
		}
		return tok
	}
	requested := check("after trust", 201, 201, 2, 0)

	res = mustPhase(t, carotate.PhaseIssue, opts(l, carotate.SA))
	if strings.Join(res.Restart, ",") != "apiserver,controller-manager" {
		t.Errorf("issue: restart %v, want apiserver and controller-manager", res.Restart)
	}
	if carotate.PublicKeySum(signerKey(t, p.OldKey).Public()) != carotate.PublicKeySum(oldPub) {
		t.Errorf("issue: %s is not the old key", p.OldKey)
	}
	if carotate.PublicKeySum(signerKey(t, p.CAKey).Public()) != carotate.PublicKeySum(newPub) {
		t.Errorf("issue: %s is not the new key", p.CAKey)
	}
	cp.RestartAPIServer(t)
	requestedNew := check("after issue", 201, 201, 2, 1)
	if got := authStatus(t, cp, caPath, requested); got != 201 {
		t.Errorf("after issue: a token the apiserver issued before gets %d, want 201", got)
	}

	// A pod on this node still holds a token of the old key: drop is refused, naming it.
	projectToken(t, l, "0b7c9d2e-pod-uid", requested)
	_, err = carotate.Drop(opts(l, carotate.SA))
	var stale *carotate.OldTokensError
	if !errors.As(err, &stale) || len(stale.Tokens) != 1 || stale.Tokens[0].PodUID != "0b7c9d2e-pod-uid" {
		t.Fatalf("drop with an old token on the node: %v, want an OldTokensError naming it", err)
	}
	if got := l.Resolve(flags(t, l, "apiserver")["service-account-key-file"]); got != p.Bundle {
		t.Fatalf("the refused drop changed --service-account-key-file to %s", got)
	}
	// The kubelet re-requested it (signed by the new key now): drop goes on.
	projectToken(t, l, "0b7c9d2e-pod-uid", requestedNew)
	mustPhase(t, carotate.PhaseDrop, opts(l, carotate.SA))
	if got := keyFile(); got != p.CACert {
		t.Fatalf("after drop --service-account-key-file resolves to %s, want %s", got, p.CACert)
	}
	cp.SetAPIServerFlag("service-account-key-file", keyFile())
	cp.RestartAPIServer(t)
	check("after drop", 401, 201, 1, 1)
	if got := authStatus(t, cp, caPath, requested); got != 401 {
		t.Errorf("after drop: a token the apiserver issued with the old key gets %d, want 401", got)
	}
}

func pemOf(t *testing.T, k crypto.Signer) []byte {
	t.Helper()
	data, err := pki.EncodePrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestSARollbackAndBadInput: every phase's rollback puts the tree back as it was before it;
// bad key files are refused naming the file, with nothing changed.
func TestSARollbackAndBadInput(t *testing.T) {
	base := node(t)
	t.Run("rollback of each phase", func(t *testing.T) {
		l := clone(t, base)
		o := opts(l, carotate.SA)
		for _, ph := range carotate.Phases {
			before := snapshot(t, l)
			o.Generate = ph == carotate.PhaseTrust
			mustPhase(t, ph, o)
			if sameMap(before, snapshot(t, l)) {
				t.Fatalf("phase %s changed nothing", ph)
			}
			mustPhase(t, "rollback", o)
			sameSnapshot(t, "rollback of "+ph, before, snapshot(t, l))
			mustPhase(t, ph, o) // again, for the next phase
			o.Generate = false
		}
	})
	p, err := carotate.PathsOf(base, carotate.SA)
	if err != nil {
		t.Fatal(err)
	}
	rel := func(path string) string { return strings.TrimPrefix(path, base.Root) }
	otherKey, err := pki.GenerateKey(pki.AlgRSA2048)
	if err != nil {
		t.Fatal(err)
	}
	otherPEM := pemOf(t, otherKey)
	tests := []struct {
		name    string
		break_  func(l pki.Layout)
		wantErr string
	}{
		{"malformed sa.pub", func(l pki.Layout) {
			os.WriteFile(l.Resolve(rel(p.CACert)), []byte("-----BEGIN PUBLIC KEY-----\nnot base64\n"), 0o644)
		}, "sa.pub"},
		{"sa.key of another pair", func(l pki.Layout) { os.WriteFile(l.Resolve(rel(p.CAKey)), otherPEM, 0o600) }, "does not belong to"},
		{"no sa.pub (a worker)", func(l pki.Layout) { os.Remove(l.Resolve(rel(p.CACert))) }, "only control-plane nodes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := clone(t, base)
			tc.break_(l)
			before := snapshot(t, l)
			o := opts(l, carotate.SA)
			o.Generate = true
			_, err := carotate.Trust(o)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err %v, want one containing %q", err, tc.wantErr)
			}
			sameSnapshot(t, tc.name, before, snapshot(t, l))
		})
	}
	t.Run("a certificate given as the new key", func(t *testing.T) {
		l := clone(t, base)
		before := snapshot(t, l)
		o := opts(l, carotate.SA)
		crt := filepath.Join(l.PKIDir, "ca.crt")
		n, err := carotate.ReadNewCA(crt, "")
		if err != nil {
			t.Fatal(err)
		}
		o.NewCA = n
		if _, err := carotate.Trust(o); err == nil || !strings.Contains(err.Error(), crt) {
			t.Fatalf("err %v, want one naming %s", err, crt)
		}
		sameSnapshot(t, "refused new key", before, snapshot(t, l))
	})
}

func sameMap(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestSecondRotation: a year later the key (or a CA) is rotated again in the same rotation
// directory: trust after a complete rotation starts a new one (the completed one's files in
// its backup, its old key removed), its rollback puts the completed rotation back exactly, and
// the new rotation runs through to a third key.
func TestSecondRotation(t *testing.T) {
	for _, ca := range []string{carotate.SA, "front-proxy-ca"} {
		t.Run(ca, func(t *testing.T) {
			l := clone(t, node(t))
			p, err := carotate.PathsOf(l, ca)
			if err != nil {
				t.Fatal(err)
			}
			first := read(t, p.CACert)
			o := opts(l, ca)
			for _, ph := range carotate.Phases {
				o.Generate = ph == carotate.PhaseTrust
				mustPhase(t, ph, o)
			}
			second := read(t, p.CACert)
			complete := snapshot(t, l)
			o.Generate = true
			res := mustPhase(t, carotate.PhaseTrust, o)
			if res.AlreadyDone || !strings.Contains(strings.Join(res.Notes, " "), "is followed by a new one") {
				t.Fatalf("trust after a complete rotation: %+v", res)
			}
			if _, err := os.Stat(p.OldKey); err == nil {
				t.Errorf("%s of the completed rotation is still there", p.OldKey)
			}
			o.Generate = false
			mustPhase(t, "rollback", o)
			sameSnapshot(t, "rollback of the second trust", complete, snapshot(t, l))
			for _, ph := range carotate.Phases {
				o.Generate = ph == carotate.PhaseTrust
				mustPhase(t, ph, o)
			}
			third := read(t, p.CACert)
			if string(third) == string(second) || string(third) == string(first) {
				t.Errorf("after the second rotation %s is not a third key", p.CACert)
			}
		})
	}
}
