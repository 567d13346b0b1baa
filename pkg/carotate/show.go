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

// shownBlock is the text after one "# CA:" line of WriteShown's output, up to the next.
type shownBlock struct {
	ca   string
	data []byte
}

// shownBlocks splits what WriteShown wrote (as a Job's log, with whatever else the log holds)
// at its "# CA:" lines, in order; text before the first is not any CA's.
func shownBlocks(out string) []shownBlock {
	var blocks []shownBlock
	var ca string
	var lines []string
	flush := func() {
		if ca != "" {
			blocks = append(blocks, shownBlock{ca, []byte(strings.Join(lines, "\n"))})
		}
		lines = lines[:0]
	}
	for _, l := range strings.Split(out, "\n") {
		if name, _, ok := strings.Cut(strings.TrimPrefix(l, "# "), ":"); strings.HasPrefix(l, "# ") && ok && slices.Contains(CAs, name) {
			flush()
			ca = name
			continue
		}
		lines = append(lines, l)
	}
	flush()
	return blocks
}

// ParseShown reads what WriteShown wrote (as a Job's log, with whatever else the log holds):
// each CA's certificate by name; a CA without a certificate after its line is left out.
func ParseShown(out string) map[string]*x509.Certificate {
	got := map[string]*x509.Certificate{}
	for _, b := range shownBlocks(out) {
		if certs := pki.CertificatesIn(b.data); len(certs) > 0 {
			got[b.ca] = certs[0]
		}
	}
	return got
}

// ParseShownSA reads the service-account public key (SA) of what WriteShown wrote; nil when
// there is none.
func ParseShownSA(out string) crypto.PublicKey {
	var key crypto.PublicKey
	for _, b := range shownBlocks(out) {
		if b.ca != SA {
			continue
		}
		if p, _ := pem.Decode(b.data); p != nil && p.Type == "PUBLIC KEY" {
			if k, err := x509.ParsePKIXPublicKey(p.Bytes); err == nil {
				key = k
			}
		}
	}
	return key
}
