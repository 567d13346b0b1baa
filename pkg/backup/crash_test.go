package backup_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io/fs"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/certctl/certctl/pkg/backup"
	"github.com/certctl/certctl/pkg/fsutil"
	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/txn"
)

// crashWriter exits the process (no deferred cleanup, like a kill -9) right before operation at.
type crashWriter struct {
	fsutil.Writer
	n, at int
}

func (w *crashWriter) step() {
	if w.n++; w.n == w.at {
		os.Exit(137)
	}
}
func (w *crashWriter) WriteFile(p string, d []byte, m os.FileMode) error {
	w.step()
	return w.Writer.WriteFile(p, d, m)
}
func (w *crashWriter) WriteNew(p string, d []byte, m os.FileMode) error {
	w.step()
	return w.Writer.WriteNew(p, d, m)
}
func (w *crashWriter) Rename(a, b string) error { w.step(); return w.Writer.Rename(a, b) }
func (w *crashWriter) Remove(p string) error    { w.step(); return w.Writer.Remove(p) }
func (w *crashWriter) SyncDir(d string) error   { w.step(); return w.Writer.SyncDir(d) }
func (w *crashWriter) MkdirAll(p string, m os.FileMode) error {
	w.step()
	return w.Writer.MkdirAll(p, m)
}

// pairs are the cert/key pairs of the crash test's tree, relative to the PKI dir.
var pairs = [][2]string{{"apiserver.crt", "apiserver.key"}, {"front-proxy-client.crt", "front-proxy-client.key"}, {"etcd/server.crt", "etcd/server.key"}}

// writePairs writes a fresh key and self-signed certificate for every pair, named gen.
func writePairs(t *testing.T, l pki.Layout, gen string) {
	t.Helper()
	for _, p := range pairs {
		key, err := pki.GenerateKey(pki.AlgECDSAP256)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: gen + " " + p[0]},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
		der, err := x509.CreateCertificate(nil, tmpl, tmpl, key.Public(), key)
		if err != nil {
			t.Fatal(err)
		}
		keyPEM, err := pki.EncodePrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		cert, _ := x509.ParseCertificate(der)
		os.MkdirAll(filepath.Dir(filepath.Join(l.PKIDir, p[0])), 0o755)
		if err := os.WriteFile(filepath.Join(l.PKIDir, p[1]), keyPEM, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(l.PKIDir, p[0]), pki.EncodeCertificates(cert), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// generations checks every pair matches and returns which generation each cert is.
func generations(l pki.Layout) ([]string, error) {
	var gens []string
	for _, p := range pairs {
		crt, key := filepath.Join(l.PKIDir, p[0]), filepath.Join(l.PKIDir, p[1])
		pair, err := tls.LoadX509KeyPair(crt, key)
		if err != nil {
			return nil, err
		}
		c, _ := x509.ParseCertificate(pair.Certificate[0])
		gens = append(gens, strings.Fields(c.Subject.CommonName)[0])
	}
	return gens, nil
}

func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(to, info.Mode().Perm())
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(to, data, info.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestRestoreCrashAtEveryStep restores a backup of three pairs (and a file the backup does not
// have, which restoring removes) in a child process that dies right before each file-system
// operation in turn (as a kill -9 there would), so every instant between two operations is
// covered; after the next certctl run's recovery every certificate has its matching key and
// the restore is all or nothing: every pair old (restored) or every pair as before.
func TestRestoreCrashAtEveryStep(t *testing.T) {
	if at := os.Getenv("CERTCTL_CRASH_AT"); at != "" {
		n, _ := strconv.Atoi(at)
		l := pki.NewLayout(pki.LayoutOptions{Root: os.Getenv("CERTCTL_CRASH_ROOT"), Home: "/root"})
		if _, err := backup.Restore(&crashWriter{Writer: fsutil.OS{}, at: n}, l, os.Getenv("CERTCTL_CRASH_ID")); err != nil {
			os.Exit(3)
		}
		os.Exit(0)
	}
	src := t.TempDir()
	l := pki.NewLayout(pki.LayoutOptions{Root: src, Home: "/root"})
	writePairs(t, l, "old")
	extra := filepath.Join(l.KubeconfigDir, "extra.conf")
	var paths []string
	for _, p := range pairs {
		paths = append(paths, filepath.Join(l.PKIDir, p[0]), filepath.Join(l.PKIDir, p[1]))
	}
	m, err := backup.Create(fsutil.OS{}, l, "test", append(paths, extra), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	writePairs(t, l, "new")
	os.WriteFile(extra, []byte("made after the backup"), 0o600)

	outcomes := map[string]int{}
	for step := 1; ; step++ {
		root := t.TempDir()
		copyDir(t, src, root)
		cl := pki.NewLayout(pki.LayoutOptions{Root: root, Home: "/root"})
		cmd := exec.Command(os.Args[0], "-test.run=^TestRestoreCrashAtEveryStep$")
		cmd.Env = append(os.Environ(), "CERTCTL_CRASH_AT="+strconv.Itoa(step), "CERTCTL_CRASH_ROOT="+root, "CERTCTL_CRASH_ID="+m.ID)
		out, err := cmd.CombinedOutput()
		var log bytes.Buffer
		if rerr := txn.Recover(cl, &log); rerr != nil {
			t.Fatalf("step %d: recover: %v", step, rerr)
		}
		gens, perr := generations(cl)
		if perr != nil {
			t.Fatalf("step %d: after recovery (%s) a pair does not match: %v", step, log.String(), perr)
		}
		all := strings.Join(gens, ",")
		_, extraErr := os.Stat(filepath.Join(root, "etc/kubernetes/extra.conf"))
		switch {
		case all == "old,old,old" && errors.Is(extraErr, fs.ErrNotExist):
			outcomes["restored"]++
		case all == "new,new,new" && extraErr == nil:
			outcomes["unchanged"]++
		default:
			t.Fatalf("step %d: a partial restore after recovery: pairs %s, extra.conf %v; recovery said %q", step, all, extraErr, log.String())
		}
		if _, err := os.Stat(txn.JournalPath(cl)); err == nil {
			t.Fatalf("step %d: the journal is still there after recovery", step)
		}
		leftovers, _ := filepath.Glob(filepath.Join(cl.PKIDir, "*"+txn.StagedSuffix))
		if len(leftovers) > 0 {
			t.Fatalf("step %d: staged files left: %v", step, leftovers)
		}
		if err == nil {
			t.Logf("crashed before each of %d operations; outcomes %v", step-1, outcomes)
			if step < 10 || outcomes["restored"] == 0 || outcomes["unchanged"] == 0 {
				t.Fatalf("only %d operations, outcomes %v: %s", step, outcomes, out)
			}
			return
		}
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 137 {
			t.Fatalf("step %d: child: %v\n%s", step, err, out)
		}
	}
}
