package carotate

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/certctl/certctl/pkg/pki"
)

// WriteShown writes what `certctl ca show` prints for each of cas on the node at l: a line
// "# CA: PATH (subject, key algorithm, expiry)" and the certificate in PEM (openssl reads the
// whole as is), or "# CA: not on this node (no PATH)"; for SA the public key in PEM.
func WriteShown(w io.Writer, l pki.Layout, cas []string) error {
	for _, ca := range cas {
		if ca == SA {
			pub, path, err := CurrentSA(l)
			if errors.Is(err, fs.ErrNotExist) {
				fmt.Fprintf(w, "# %s: not on this node (no %s)\n", ca, path)
				continue
			}
			if err != nil {
				return err
			}
			data, err := pki.EncodePublicKey(pub)
			if err != nil {
				return err
			}
			fmt.Fprintf(w, "# %s: %s (service-account public key, %s, sha256 %s)\n%s", ca, path, pki.KeyAlgorithm(pub), PublicKeySum(pub), data)
			continue
		}
		c, path, err := Current(l, ca)
		if errors.Is(err, fs.ErrNotExist) {
			fmt.Fprintf(w, "# %s: not on this node (no %s)\n", ca, path)
			continue
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "# %s: %s (%s, %s, expires %s)\n%s", ca, path, oneLine(c.Subject.String()), pki.KeyAlgorithm(c.PublicKey),
			c.NotAfter.UTC().Format(time.RFC3339), pki.EncodeCertificates(c))
	}
	return nil
}

// oneLine escapes the control characters of s, as Go quotes them: a subject with a newline
// (a CN is any UTF-8) would otherwise start a line that reads as another CA's header, and a
// reader of the output (a person, a script) would take the certificate for that CA's.
func oneLine(s string) string {
	if !strings.ContainsFunc(s, unicode.IsControl) {
		return s
	}
	q := strconv.Quote(s)
	return q[1 : len(q)-1]
}

// Shown is what a node holds of the CAs asked for, as `certctl ca show --record` reports it to
// cluster ca-rotate (noderesult.KindCAShow): each CA's certificate (DER) by name, the
// service-account public key (PKIX DER) when sa was asked for, and for each CA the node does
// not hold, the path where it looked.
type Shown struct {
	CAs     map[string][]byte `json:"cas,omitempty"`
	SA      []byte            `json:"sa,omitempty"`
	Missing map[string]string `json:"missing,omitempty"`
}

// Show reads what the node at l holds of cas.
func Show(l pki.Layout, cas []string) (*Shown, error) {
	s := &Shown{CAs: map[string][]byte{}, Missing: map[string]string{}}
	for _, ca := range cas {
		if ca == SA {
			pub, path, err := CurrentSA(l)
			if errors.Is(err, fs.ErrNotExist) {
				s.Missing[ca] = path
				continue
			}
			if err != nil {
				return nil, err
			}
			if s.SA, err = x509.MarshalPKIXPublicKey(pub); err != nil {
				return nil, fmt.Errorf("encode %s: %w", path, err)
			}
			continue
		}
		c, path, err := Current(l, ca)
		if errors.Is(err, fs.ErrNotExist) {
			s.Missing[ca] = path
			continue
		}
		if err != nil {
			return nil, err
		}
		s.CAs[ca] = c.Raw
	}
	return s, nil
}

// Cert is the certificate of ca; nil (and no error) when the node does not hold it.
func (s *Shown) Cert(ca string) (*x509.Certificate, error) {
	der, ok := s.CAs[ca]
	if !ok {
		return nil, nil
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("the certificate of %s: %w", ca, err)
	}
	return c, nil
}

// SAKey is the service-account public key; nil (and no error) when the node does not hold it.
func (s *Shown) SAKey() (crypto.PublicKey, error) {
	if len(s.SA) == 0 {
		return nil, nil
	}
	k, err := x509.ParsePKIXPublicKey(s.SA)
	if err != nil {
		return nil, fmt.Errorf("the service-account public key: %w", err)
	}
	return k, nil
}
