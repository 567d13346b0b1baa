package cluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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

// serve starts a TLS listener on ip:port (0: any free port) answering with h, its serving
// certificate of ca for ip, and returns its port (0 when it could not start). It may be called
// from another goroutine: it reports with t.Error.
func (ca testCA) serve(t *testing.T, ip net.IP, port int, h http.Handler) int {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "kube-apiserver"},
		IPAddresses: []net.IP{ip}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Error(err)
		return 0
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(ip.String(), strconv.Itoa(port)))
	if err != nil {
		t.Errorf("listen on %s port %d: %v", ip, port, err)
		return 0
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener = ln
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return ln.Addr().(*net.TCPAddr).Port
}

// cpNode is control-plane node i (cp1, cp2, ...) at ip.
func cpNode(i int, ip net.IP) corev1.Node {
	return corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "cp" + strconv.Itoa(i+1)},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip.String()}}}}
}

// apiservers are real TLS listeners on loopback addresses, one per control-plane node, all on
// the same port, with a certificate of a test CA for their address: /readyz answers 500 the
// first notReady[i] times (forever when -1), then 200.
func apiservers(t *testing.T, notReady []int) (*x509.CertPool, []corev1.Node, int) {
	t.Helper()
	ca := newTestCA(t, 1)
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	port := 0
	var nodes []corev1.Node
	for i, n := range notReady {
		ip := net.IPv4(127, 0, 7, byte(i+1))
		var asked atomic.Int32
		if port = ca.serve(t, ip, port, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if a := asked.Add(1); n < 0 || int(a) <= n {
				http.Error(w, "[-]etcd failed: reason withheld", http.StatusInternalServerError)
				return
			}
			_, _ = w.Write([]byte("ok"))
		})); port == 0 {
			t.FailNow()
		}
		nodes = append(nodes, cpNode(i, ip))
	}
	return roots, nodes, port
}

// TestPeersReady: before a control-plane node's restart, every other apiserver must answer
// /readyz: one not ready for a while is waited for, one that stays not ready stops the
// command with a PeersNotReadyError naming it, and the node about to be worked on itself is
// not asked.
func TestPeersReady(t *testing.T) {
	for _, tc := range []struct {
		name     string
		notReady []int // per node cp1..: /readyz 500 this many times first (-1: always)
		node     string
		wantErr  []string // nodes named not ready
	}{
		{"all ready", []int{0, 0, 0}, "cp1", nil},
		{"a peer ready after two answers", []int{0, 2, 0}, "cp1", nil},
		{"a peer never ready", []int{0, 0, -1}, "cp1", []string{"cp3"}},
		{"the node itself not ready is not asked", []int{-1, 0, 0}, "cp1", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			roots, nodes, port := apiservers(t, tc.notReady)
			o := RenewOptions{Roots: roots, Checks: Checks{Port: port, VerifyTimeout: 4 * time.Second}}
			o.defaults()
			o.VerifyTimeout = 4 * time.Second
			start := time.Now()
			err := o.peersReady(t.Context(), nodes, tc.node)
			var pe *PeersNotReadyError
			switch {
			case tc.wantErr == nil && err != nil:
				t.Fatalf("peersReady: %v", err)
			case tc.wantErr != nil && !errors.As(err, &pe):
				t.Fatalf("peersReady: %v, want a PeersNotReadyError", err)
			case tc.wantErr != nil:
				if len(pe.NotReady) != len(tc.wantErr) || pe.Node != tc.node || pe.Waited < o.VerifyTimeout {
					t.Fatalf("%+v, want %v not ready after %s", pe, tc.wantErr, o.VerifyTimeout)
				}
				for _, n := range tc.wantErr {
					if _, ok := pe.NotReady[n]; !ok {
						t.Errorf("%v does not name %s", err, n)
					}
				}
				t.Logf("%v", err)
			}
			t.Logf("%s: %s", tc.name, time.Since(start).Round(10*time.Millisecond))
		})
	}
}
