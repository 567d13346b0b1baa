package carotate

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/certctl/certctl/pkg/pki"
)

// WriteShown writes what `certctl ca show` prints for each of cas on the node at l: a line
// "# CA: PATH (subject, key algorithm, expiry)" and the certificate in PEM (openssl reads the
// whole as is), or "# CA: not on this node (no PATH)"; for SA the public key in PEM.
// ParseShown reads the certificates back.
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
// (a CN is any UTF-8) would otherwise start a line that ParseShown reads as another CA's
// header, and the certificate would be read back as that CA's.
func oneLine(s string) string {
	if !strings.ContainsFunc(s, unicode.IsControl) {
		return s
	}
	q := strconv.Quote(s)
	return q[1 : len(q)-1]
}

// ParseShown reads what WriteShown wrote (as a Job's log, with whatever else the log holds):
// each CA's certificate by name; a CA without a certificate after its line is left out.
func ParseShown(out string) map[string]*x509.Certificate {
	got := map[string]*x509.Certificate{}
	var ca string
	var block []string
	flush := func() {
		if ca != "" {
			if certs := pki.CertificatesIn([]byte(strings.Join(block, "\n"))); len(certs) > 0 {
				got[ca] = certs[0]
			}
		}
		block = block[:0]
	}
	for _, l := range strings.Split(out, "\n") {
		if name, _, ok := strings.Cut(strings.TrimPrefix(l, "# "), ":"); strings.HasPrefix(l, "# ") && ok && slices.Contains(CAs, name) {
			flush()
			ca = name
			continue
		}
		block = append(block, l)
	}
	flush()
	return got
}

// ParseShownKeys reads the public keys of what WriteShown wrote: each CA certificate's, and
// SA's public key, by name.
func ParseShownKeys(out string) map[string]crypto.PublicKey {
	got := map[string]crypto.PublicKey{}
	for ca, c := range ParseShown(out) {
		got[ca] = c.PublicKey
	}
	var block []string
	in := false
	for _, l := range strings.Split(out, "\n") {
		if name, _, ok := strings.Cut(strings.TrimPrefix(l, "# "), ":"); strings.HasPrefix(l, "# ") && ok && slices.Contains(CAs, name) {
			in = name == SA
			continue
		}
		if in {
			block = append(block, l)
		}
	}
	if b, _ := pem.Decode([]byte(strings.Join(block, "\n"))); b != nil && b.Type == "PUBLIC KEY" {
		if k, err := x509.ParsePKIXPublicKey(b.Bytes); err == nil {
			got[SA] = k
		}
	}
	return got
}
