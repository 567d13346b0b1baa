package carotate_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/carotate"
	"github.com/certctl/certctl/pkg/pki"
	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// clientCert signs a client certificate CN=cn, O=system:masters with the CA pair in
// certPath/keyPath.
func clientCert(t *testing.T, cn, certPath, keyPath string) tls.Certificate {
	t.Helper()
	ca := certs(t, certPath)[0]
	caKey, err := pki.ParsePrivateKey(keyPath, read(t, keyPath))
	if err != nil {
		t.Fatal(err)
	}
	key, err := pki.GenerateKey(pki.AlgECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	c, err := pki.Sign(ca, caKey, key, pki.Template{
		Subject:  pkix.Name{CommonName: cn, Organization: []string{"system:masters"}},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
	})
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{c.Raw}, PrivateKey: key, Leaf: c}
}

// status is the HTTP status the apiserver answers GET /api/v1/namespaces with, for a client
// presenting cert (verifying the apiserver with the CAs in trust). A front-proxy client
// certificate (CN front-proxy-client) asks for cluster-admin through the request headers,
// as an aggregated API server's proxy does.
func status(t *testing.T, cp *testenv.ControlPlane, trust []string, cert tls.Certificate) int {
	t.Helper()
	pool := x509.NewCertPool()
	for _, p := range trust {
		pool.AppendCertsFromPEM(read(t, p))
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: pool, ServerName: testenv.APIServerName, Certificates: []tls.Certificate{cert}},
		DisableKeepAlives: true,
	}}
	req, err := http.NewRequest(http.MethodGet, cp.URL+"/api/v1/namespaces", nil)
	if err != nil {
		t.Fatal(err)
	}
	if cert.Leaf.Subject.CommonName == "front-proxy-client" {
		req.Header.Set("X-Remote-User", "proxied-admin")
		req.Header.Set("X-Remote-Group", "system:masters")
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET /api/v1/namespaces as %s: %v", cert.Leaf.Subject.CommonName, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestAPIServer is the proof on a real kube-apiserver (and etcd) of a kubeadm tree, run on
// the CA flags the rotated kube-apiserver.yaml carries (resolved under the tree's root), with
// ca and front-proxy-ca rotated together: after trust it accepts client certificates of the
// old and of the new CA, and front-proxy requests signed by either front-proxy CA; after
// issue it serves a certificate from the new CA and every rotated kubeconfig authenticates as
// its user, and a client that trusts only the old CA still verifies it (the cross-signed new
// CA follows the leaf); after drop certificates of the old CAs get 401 and the new CAs' still
// work, and the old-CA-only client still verifies the apiserver.
func TestAPIServer(t *testing.T) {
	l := node(t)
	p, err := carotate.PathsOf(l, "ca")
	if err != nil {
		t.Fatal(err)
	}
	fp, err := carotate.PathsOf(l, "front-proxy-ca")
	if err != nil {
		t.Fatal(err)
	}
	cas := []string{"ca", "front-proxy-ca"}
	o := opts(l, "")
	o.Generate = true
	runPhase := func(phase string) {
		t.Helper()
		if _, err := carotate.Run(o, cas, phase, false); err != nil {
			t.Fatalf("%s: %v", phase, err)
		}
	}
	runPhase(carotate.PhaseTrust)
	manifestFlags := func() map[string]string {
		f := flags(t, l, "apiserver")
		return map[string]string{
			"client-ca-file":               l.Resolve(f["client-ca-file"]),
			"requestheader-client-ca-file": l.Resolve(f["requestheader-client-ca-file"]),
		}
	}
	if got := manifestFlags()["client-ca-file"]; got != p.Bundle {
		t.Fatalf("kube-apiserver.yaml --client-ca-file resolves to %s, want the bundle %s", got, p.Bundle)
	}
	cp := testenv.StartControlPlane(t, testenv.ControlPlaneOptions{PKIDir: l.PKIDir, KubeconfigDir: l.KubeconfigDir, APIServerFlags: manifestFlags()})

	if got := manifestFlags()["requestheader-client-ca-file"]; got != fp.Bundle {
		t.Fatalf("kube-apiserver.yaml --requestheader-client-ca-file resolves to %s, want the bundle %s", got, fp.Bundle)
	}
	oldClient := clientCert(t, "rotation-old", p.CACert, p.CAKey)
	newClient := clientCert(t, "rotation-new", p.NewCert, p.NewKey)
	oldProxy := clientCert(t, "front-proxy-client", fp.CACert, fp.CAKey)
	newProxy := clientCert(t, "front-proxy-client", fp.NewCert, fp.NewKey)
	all := []tls.Certificate{oldClient, newClient, oldProxy, newProxy}
	for _, c := range all {
		if got := status(t, cp, []string{p.Bundle}, c); got != http.StatusOK {
			t.Errorf("after trust: %s (issued by %s) gets %d, want 200", c.Leaf.Subject.CommonName, c.Leaf.Issuer, got)
		}
	}

	// Phase issue: the apiserver restarts on its new serving certificate; the flags stay.
	o.Generate = false
	runPhase(carotate.PhaseIssue)
	for name, v := range manifestFlags() {
		cp.SetAPIServerFlag(name, v)
	}
	cp.RestartAPIServer(t)
	if served := testenv.ServedCert(t, cp.APIServerAddr); served.CheckSignatureFrom(certs(t, p.NewCert)[0]) != nil {
		t.Errorf("after issue: the apiserver serves a certificate not signed by the new CA (issuer %s)", served.Issuer)
	}
	for _, c := range all {
		if got := status(t, cp, []string{p.Bundle}, c); got != http.StatusOK {
			t.Errorf("after issue: %s (issued by %s) gets %d, want 200 (the bundle still verifies both)", c.Leaf.Subject.CommonName, c.Leaf.Issuer, got)
		}
	}
	users := map[string]string{
		"admin.conf": "kubernetes-admin", "super-admin.conf": "kubernetes-super-admin",
		"controller-manager.conf": "system:kube-controller-manager", "scheduler.conf": "system:kube-scheduler",
		"kubelet.conf": "system:node:master-1",
	}
	whoami := func(phase string) {
		t.Helper()
		for kc, user := range users {
			cs := cp.ClientsetFor(t, cp.Kubeconfig(t, kc))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			r, err := cs.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authnv1.SelfSubjectReview{}, metav1.CreateOptions{})
			cancel()
			if err != nil {
				t.Errorf("%s: %s does not authenticate: %v", phase, kc, err)
				continue
			}
			if got := r.Status.UserInfo.Username; got != user {
				t.Errorf("%s: %s authenticates as %q, want %q", phase, kc, got, user)
			}
		}
	}
	whoami("after issue")
	// A client that loaded only the old CA (client-go in a pod reads ca.crt once, at start)
	// still verifies the apiserver: it serves the new CA cross-signed by the old after its leaf.
	if got := status(t, cp, []string{p.OldCert}, newClient); got != http.StatusOK {
		t.Errorf("after issue: a client trusting only the old CA gets %d, want 200", got)
	}

	// Phase drop: the flag is kubeadm's ca.crt again, the new CA alone.
	runPhase(carotate.PhaseDrop)
	f := manifestFlags()
	if f["client-ca-file"] != filepath.Join(l.PKIDir, "ca.crt") || f["requestheader-client-ca-file"] != filepath.Join(l.PKIDir, "front-proxy-ca.crt") {
		t.Fatalf("after drop: the flags resolve to %v, want kubeadm's ca.crt and front-proxy-ca.crt", f)
	}
	for name, v := range f {
		cp.SetAPIServerFlag(name, v)
	}
	cp.RestartAPIServer(t)
	for _, c := range []tls.Certificate{oldClient, oldProxy} {
		if got := status(t, cp, []string{p.CACert}, c); got != http.StatusUnauthorized {
			t.Errorf("after drop: %s of the old CA %s gets %d, want 401", c.Leaf.Subject.CommonName, c.Leaf.Issuer, got)
		}
	}
	for _, c := range []tls.Certificate{newClient, newProxy} {
		if got := status(t, cp, []string{p.CACert}, c); got != http.StatusOK {
			t.Errorf("after drop: %s of the new CA %s gets %d, want 200", c.Leaf.Subject.CommonName, c.Leaf.Issuer, got)
		}
	}
	whoami("after drop")
	if got := status(t, cp, []string{p.OldCert}, newClient); got != http.StatusOK {
		t.Errorf("after drop: a client trusting only the old CA gets %d, want 200 (the cross-signed CA is still served)", got)
	}
}
