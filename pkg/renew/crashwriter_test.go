package renew_test

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"strconv"

	"github.com/certctl/certctl/pkg/fsutil"
)

type renewWriter = fsutil.Writer

func osWriter() fsutil.Writer { return fsutil.OS{} }

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

func (w *crashWriter) step() {
	w.n++
	if w.n == w.at {
		os.Exit(137)
	}
}

func (w *crashWriter) WriteFile(p string, d []byte, m os.FileMode) error {
	w.step()
	return w.renewWriter.WriteFile(p, d, m)
}

func (w *crashWriter) Rename(a, b string) error { w.step(); return w.renewWriter.Rename(a, b) }

func (w *crashWriter) Remove(p string) error { w.step(); return w.renewWriter.Remove(p) }

func (w *crashWriter) MkdirAll(p string, m os.FileMode) error {
	w.step()
	return w.renewWriter.MkdirAll(p, m)
}

func parseCSR(data []byte) (*x509.CertificateRequest, error) {
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, errors.New("no PEM")
	}
	return x509.ParseCertificateRequest(b.Bytes)
}

func (w *crashWriter) WriteNew(p string, d []byte, m os.FileMode) error {
	w.step()
	return w.renewWriter.WriteNew(p, d, m)
}

func (w *crashWriter) SyncDir(d string) error { w.step(); return w.renewWriter.SyncDir(d) }
