package kubelet

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// ClientCAs returns the subjects (DER) of the CAs whose client certificates the kubelet
// serving on addr accepts, as its TLS server lists them in its certificate request: the
// certificates of its clientCAFile as it holds them in memory, one subject per certificate.
// The kubelet asks every client for a certificate (it does not require one), so the list comes
// in every handshake; certctl sends none.
func ClientCAs(ctx context.Context, addr string) ([][]byte, error) {
	var got [][]byte
	asked := false
	d := tls.Dialer{Config: &tls.Config{
		// Only what the server asks for is read here, nothing is sent to it.
		InsecureSkipVerify: true, //nolint:gosec
		GetClientCertificate: func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
			asked = true
			got = slices.Clone(cri.AcceptableCAs)
			return &tls.Certificate{}, nil
		},
	}}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("TLS handshake with the kubelet at %s: %w", addr, err)
	}
	conn.Close()
	if !asked {
		return nil, fmt.Errorf("the kubelet at %s asks no client certificate (no clientCAFile?)", addr)
	}
	return got, nil
}

// ClientCAsStaleError: the kubelet still accepts client certificates of other CAs than the
// file it was given: it has not loaded that file (a kubelet before 1.36, or one with
// ReloadKubeletClientCAFile off, loads its clientCAFile only at start).
type ClientCAsStaleError struct {
	Addr      string
	File      string
	Want, Got int // the certificates in the file; the CAs the kubelet lists
}

func (e *ClientCAsStaleError) Error() string {
	return fmt.Sprintf("the kubelet at %s lists %d client CA(s), not the %d of %s: it has not reloaded the file", e.Addr, e.Got, e.Want, e.File)
}

// WaitClientCAs waits, up to timeout, until the kubelet on addr accepts client certificates of
// exactly the CAs of want (the certificates of file, its clientCAFile): the same subjects,
// as many times. A CA rotation gives the new CA the old one's subject, so the count is what
// tells old + new from old alone. The last mismatch is a *ClientCAsStaleError.
func WaitClientCAs(ctx context.Context, addr, file string, want []*x509.Certificate, timeout time.Duration) error {
	var last error
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		hctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		got, err := ClientCAs(hctx, addr)
		if err != nil {
			// A handshake cut by the deadline says nothing: the last one that finished does.
			if last == nil || !cutByDeadline(ctx) {
				last = err
			}
			return false, nil
		}
		if !sameSubjects(got, want) {
			last = &ClientCAsStaleError{Addr: addr, File: file, Want: len(want), Got: len(got)}
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

// sameSubjects reports whether got lists the subjects of want, each as many times.
func sameSubjects(got [][]byte, want []*x509.Certificate) bool {
	if len(got) != len(want) {
		return false
	}
	rest := slices.Clone(got)
	for _, c := range want {
		i := slices.IndexFunc(rest, func(s []byte) bool { return bytes.Equal(s, c.RawSubject) })
		if i < 0 {
			return false
		}
		rest = slices.Delete(rest, i, i+1)
	}
	return true
}

// IsStale reports whether err says the kubelet has not reloaded its client CA file.
func IsStale(err error) bool {
	var stale *ClientCAsStaleError
	return errors.As(err, &stale)
}
