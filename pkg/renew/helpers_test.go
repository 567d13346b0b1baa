package renew_test

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"github.com/certctl/certctl/internal/testenv"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certctl/certctl/pkg/lastrun"
	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/renew"
	"github.com/certctl/certctl/pkg/sandbox"
)

var (
	templOnce sync.Once
	templDir  string
	templErr  error
)

// template returns a sandbox node tree (ecdsa, no faults) made once per test binary; tests
// copy it with copyTree.
func template(t *testing.T) string {
	t.Helper()
	templOnce.Do(func() {
		templDir, templErr = os.MkdirTemp("", "certctl-renew-template-")
		if templErr != nil {
			return
		}
		_, templErr = sandbox.Create(sandbox.Options{Dir: templDir, KeyAlgorithm: pki.AlgECDSAP256})
	})
	if templErr != nil {
		t.Fatal(templErr)
	}
	return templDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if templDir != "" {
		os.RemoveAll(templDir)
	}
	testenv.RemoveCertctl()
	os.Exit(code)
}

// copyTree copies src into a new directory (dst, or a t.TempDir()) and returns its layout.
func copyTree(t *testing.T, src, dst string) pki.Layout {
	t.Helper()
	if dst == "" {
		dst = t.TempDir()
	}
	if out, err := exec.Command("cp", "-a", src+"/.", dst+"/").CombinedOutput(); err != nil {
		t.Fatalf("cp: %v: %s", err, out)
	}
	return pki.NewLayout(pki.LayoutOptions{Root: dst, Home: "/root"})
}

func newTree(t *testing.T) pki.Layout { return copyTree(t, template(t), "") }

// treeHash hashes every regular file under root (path, mode, content), leaving out the
// lock file (its existence is not a change of the tree's content) and the run record under
// /var/lib/certctl (certctl's own state: scheduled checks record even a refused run).
func treeHash(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && p == lastrun.Dir(pki.NewLayout(pki.LayoutOptions{Root: root})) {
			return filepath.SkipDir
		}
		if d.IsDir() || filepath.Base(p) == renew.LockName {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			// The kubelet's links are absolute node paths: compare the link, not what it
			// would name on this machine.
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out[p] = "-> " + target
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		s := sha256.Sum256(data)
		out[p] = fmt.Sprintf("%v %s", info.Mode(), hex.EncodeToString(s[:]))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func diffHash(a, b map[string]string) []string {
	var d []string
	for k, v := range a {
		if b[k] != v {
			d = append(d, "changed or removed: "+k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			d = append(d, "added: "+k)
		}
	}
	sort.Strings(d)
	return d
}

// checkPairs verifies every renewable pair of the tree: the key matches the certificate and
// the certificate verifies against its CA; kubeconfigs likewise, and their CA data is ca.crt.
// It also fails on leftover staged or temp files and on a leftover journal.
func checkPairs(l pki.Layout) error {
	inv := pki.Load(l, pki.Default())
	var errs []string
	for _, n := range renew.All {
		it := inv.Get(n)
		if it.Absent {
			continue
		}
		if it.CertErr != nil || it.KeyErr != nil || it.Key == nil {
			errs = append(errs, fmt.Sprintf("%s: cert %v key %v", n, it.CertErr, it.KeyErr))
			continue
		}
		if err := pki.VerifyKeyPair(it.Cert().PublicKey, it.Key); err != nil {
			errs = append(errs, fmt.Sprintf("%s: key does not match: %v", n, err))
		}
		ca := inv.Get(it.Spec.CAName).Cert()
		if err := it.Cert().CheckSignatureFrom(ca); err != nil {
			errs = append(errs, fmt.Sprintf("%s: not signed by %s: %v", n, it.Spec.CAName, err))
		}
		if it.Spec.Kind == pki.KindKubeconfig && (len(it.KubeconfigCA) == 0 || !it.KubeconfigCA[0].Equal(ca)) {
			errs = append(errs, fmt.Sprintf("%s: certificate-authority-data is not ca.crt", n))
		}
	}
	filepath.WalkDir(l.Root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && (strings.HasSuffix(p, renew.StagedSuffix) || strings.HasPrefix(d.Name(), ".certctl-tmp-") && !strings.Contains(p, "certctl-backups") &&
			// a half-written run record is cleared by the next one (lastrun.Write)
			!strings.HasPrefix(p, lastrun.Dir(l)+"/")) {
			errs = append(errs, "leftover "+p)
		}
		return nil
	})
	if _, err := os.Stat(filepath.Join(l.StateDir(), renew.JournalName)); err == nil {
		errs = append(errs, "leftover journal")
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	return nil
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustWrite(t *testing.T, p string, data []byte) {
	t.Helper()
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
