package kubelet

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net/http"
	"time"

	"github.com/certctl/certctl/pkg/pki"
	"k8s.io/apimachinery/pkg/util/wait"
)

// Authenticates reports whether the kubelet serving on addr authenticates a client with cert:
// its answer to a request with it is anything but 401 (an authenticated client the kubelet's
// authorizer refuses gets 403). The kubelet's x509 authenticator reads its clientCAFile through
// a provider that watches the file, so this is what the kubelet accepts now; the CA list its TLS
// server sends in the handshake is refreshed only every minute and is not asked.
func Authenticates(ctx context.Context, addr string, cert tls.Certificate) (bool, error) {
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		// The kubelet's serving certificate is not what is checked here.
		InsecureSkipVerify: true, //nolint:gosec
		Certificates:       []tls.Certificate{cert},
	}}}
	defer client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+"/healthz", nil)
	if err != nil {
		return false, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return false, fmt.Errorf("ask the kubelet at %s: %w", addr, err)
	}
	resp.Body.Close()
	return resp.StatusCode != http.StatusUnauthorized, nil
}

// ClientCAStaleError: the kubelet does not yet authenticate (or still authenticates) a client
// certificate as its client CA file, changed in place, says it should: it has not reloaded
// the file (a kubelet before 1.36, or with ReloadKubeletClientCAFile off, reads it at start).
type ClientCAStaleError struct {
	Addr, File string
	Want       bool // the file holds the probe's CA
}

func (e *ClientCAStaleError) Error() string {
	if e.Want {
		return fmt.Sprintf("the kubelet at %s still refuses a client certificate of a CA that %s now holds: it has not reloaded the file", e.Addr, e.File)
	}
	return fmt.Sprintf("the kubelet at %s still accepts a client certificate of a CA that %s no longer holds: it has not reloaded the file", e.Addr, e.File)
}

// WaitAuthenticates waits, up to timeout, until the kubelet on addr authenticates cert (want)
// or refuses it (!want), as its clientCAFile file now says. The last mismatch is a
// *ClientCAStaleError.
func WaitAuthenticates(ctx context.Context, addr, file string, cert tls.Certificate, want bool, timeout time.Duration) error {
	var last error
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		hctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		got, err := Authenticates(hctx, addr, cert)
		if err != nil {
			// A request cut by the deadline says nothing: the last one that finished does.
			if last == nil || !cutByDeadline(ctx) {
				last = err
			}
			return false, nil
		}
		if got != want {
			last = &ClientCAStaleError{Addr: addr, File: file, Want: want}
			return false, nil
		}
		return true, nil
	})
	if err == nil {
		return nil
	}
	if last == nil {
		last = err
	}
	return fmt.Errorf("after %s: %w", timeout, last)
}

// ProbeFile is the probe's file name in the new CA directory of a CA rotation's node Job.
const ProbeFile = "kubelet-probe.pem"

// ProbeCN is the common name of the client certificate NewProbe makes: no groups, so a kubelet
// that authenticates it still authorizes nothing for it (403).
const ProbeCN = "certctl:kubelet-client-ca-probe"

// NewProbe makes a client certificate of ca (key and certificate, PEM, in one file's worth),
// valid from a minute before now for validity, for Authenticates: whether a kubelet accepts
// clients of ca.
func NewProbe(ca *x509.Certificate, caKey crypto.Signer, now time.Time, validity time.Duration) ([]byte, error) {
	key, err := pki.GenerateKey(pki.AlgECDSAP256)
	if err != nil {
		return nil, err
	}
	notAfter := now.Add(validity)
	if notAfter.After(ca.NotAfter) {
		notAfter = ca.NotAfter
	}
	c, err := pki.Sign(ca, caKey, key, pki.Template{Subject: pkix.Name{CommonName: ProbeCN},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		NotBefore: now.Add(-time.Minute), NotAfter: notAfter})
	if err != nil {
		return nil, fmt.Errorf("the kubelet probe: %w", err)
	}
	keyPEM, err := pki.EncodePrivateKey(key)
	if err != nil {
		return nil, err
	}
	return append(pki.EncodeCertificates(c), keyPEM...), nil
}

// ReadProbe reads a probe NewProbe made (file: its path, for errors).
func ReadProbe(file string, data []byte) (tls.Certificate, *x509.Certificate, error) {
	pair, err := tls.X509KeyPair(data, data)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("%s: not a client certificate and its key: %w", file, err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("%s: %w", file, err)
	}
	return pair, leaf, nil
}
