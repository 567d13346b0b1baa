package cluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/certctl/certctl/pkg/carotate"
)

// testCA is a CA that signs the loopback apiservers' serving certificates.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestCA(t *testing.T, serial int64) testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "kubernetes"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return testCA{c, key}
}

// serve starts a TLS listener on ip:port with a serving certificate of ca (it may be called
// from another goroutine: it reports with t.Error).
func (ca testCA) serve(t *testing.T, ip net.IP, port int) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "kube-apiserver"},
		IPAddresses: []net.IP{ip}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Error(err)
		return
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(ip.String(), strconv.Itoa(port)))
	if err != nil {
		t.Errorf("listen on %s port %d: %v", ip, port, err)
		return
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) }))
	srv.Listener = ln
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
}

// TestUndone: the phase a --rollback without --phase undoes, from what the control-plane
// apiservers (real TLS listeners on loopback) serve. An apiserver that does not answer yet (a
// restart under the Job of a killed run) is waited for: the phase is trust only once every one
// has answered with the old CA; one serving the new CA says issue at once; one that never
// answers is an error naming it.
func TestUndone(t *testing.T) {
	const (
		old = iota
		newCA
		late  // old, from 1 s on
		never // no listener
	)
	for _, tc := range []struct {
		name    string
		serve   []int
		want    string
		wantErr string
	}{
		{"every apiserver old", []int{old, old, old}, carotate.PhaseTrust, ""},
		{"one new", []int{old, newCA, old}, carotate.PhaseIssue, ""},
		{"one restarting, then old", []int{old, late, old}, carotate.PhaseTrust, ""},
		{"one restarting, another new", []int{never, newCA, old}, carotate.PhaseIssue, ""},
		{"one never answers", []int{old, old, never}, "", "did not answer within"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			olds, news := newTestCA(t, 1), newTestCA(t, 2)
			ln, err := net.Listen("tcp", "127.0.8.250:0") // a port free on every address below
			if err != nil {
				t.Fatal(err)
			}
			port := ln.Addr().(*net.TCPAddr).Port
			ln.Close()
			var nodes []corev1.Node
			for i, s := range tc.serve {
				ip := net.IPv4(127, 0, 8, byte(i+1))
				switch s {
				case old:
					olds.serve(t, ip, port)
				case newCA:
					news.serve(t, ip, port)
				case late:
					time.AfterFunc(time.Second, func() { olds.serve(t, ip, port) })
				}
				nodes = append(nodes, corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "cp" + strconv.Itoa(i+1)},
					Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip.String()}}}})
			}
			got, err := undone(t.Context(), nodes, port, news.cert, 3*time.Second)
			if got != tc.want || (err == nil) != (tc.wantErr == "") || err != nil && !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("undone = %q, %v; want %q, error with %q", got, err, tc.want, tc.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), "127.0.8.3:") {
				t.Errorf("the error does not name the apiserver that never answered: %v", err)
			}
		})
	}
}
