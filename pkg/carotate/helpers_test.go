package carotate_test

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/carotate"
	"github.com/certctl/certctl/pkg/kubeconfig"
	"github.com/certctl/certctl/pkg/manifest"
	"github.com/certctl/certctl/pkg/pki"
)

// node is a control-plane node tree written by the real kubeadm: certificates, kubeconfigs,
// the four static-pod manifests, the kubelet's config.yaml, and ~/.kube/config as a copy of
// admin.conf (what the runbook's "cp admin.conf ~/.kube/config" leaves).
func node(t *testing.T) pki.Layout {
	t.Helper()
	return nodeOf(t, testenv.Version())
}

// nodeOf is node as the kubeadm of version writes it.
func nodeOf(t *testing.T, version string) pki.Layout {
	t.Helper()
	tr := testenv.KubeadmTree(t, testenv.TreeOptions{Version: version, Node: true})
	l := tr.Layout
	if err := os.MkdirAll(filepath.Dir(l.UserKubeconfig), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(l.UserKubeconfig, read(t, filepath.Join(l.KubeconfigDir, "admin.conf")), 0o600); err != nil {
		t.Fatal(err)
	}
	return l
}

// clone copies the tree of l into a new directory.
func clone(t *testing.T, l pki.Layout) pki.Layout {
	t.Helper()
	dst := t.TempDir()
	if out, err := exec.Command("cp", "-a", l.Root+"/.", dst+"/").CombinedOutput(); err != nil {
		t.Fatalf("cp: %v: %s", err, out)
	}
	return pki.NewLayout(pki.LayoutOptions{Root: dst, Home: "/root"})
}

func read(t *testing.T, p string) []byte {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// snapshot is every regular file and link under the root (mode and content, or link target),
// leaving out certctl's own backups and state directory.
func snapshot(t *testing.T, l pki.Layout) map[string]string {
	t.Helper()
	out := map[string]string{}
	skip := map[string]bool{l.BackupRoot(): true, l.StateDir(): true}
	err := filepath.WalkDir(l.Root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if skip[p] {
			return filepath.SkipDir
		}
		if d.Type()&fs.ModeSymlink != 0 {
			target, _ := os.Readlink(p)
			out[p] = "link " + target
			return nil
		}
		if d.IsDir() {
			return nil
		}
		st, err := os.Stat(p)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		s := sha256.Sum256(data)
		out[p] = fmt.Sprintf("%v %s", st.Mode().Perm(), hex.EncodeToString(s[:]))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameSnapshot(t *testing.T, what string, before, after map[string]string) {
	t.Helper()
	for p, v := range before {
		if after[p] != v {
			t.Errorf("%s: %s changed (%q -> %q)", what, p, v, after[p])
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("%s: %s appeared", what, p)
		}
	}
}

func opts(l pki.Layout, ca string) carotate.Options {
	return carotate.Options{Layout: l, CA: ca, LockTimeout: 5 * time.Second}
}

// phase runs one phase (or "rollback") of o.CA.
func phase(o carotate.Options, name string) (*carotate.Result, error) {
	switch name {
	case carotate.PhaseTrust:
		return carotate.Trust(o)
	case carotate.PhaseIssue:
		return carotate.Issue(o)
	case carotate.PhaseDrop:
		return carotate.Drop(o)
	}
	return carotate.Rollback(o)
}

func mustPhase(t *testing.T, name string, o carotate.Options) *carotate.Result {
	t.Helper()
	r, err := phase(o, name)
	if err != nil {
		t.Fatalf("%s %s: %v", o.CA, name, err)
	}
	return r
}

func certs(t *testing.T, p string) []*x509.Certificate {
	t.Helper()
	cs, err := pki.ParseCertificates(p, read(t, p))
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// flags returns the flags of a component's manifest.
func flags(t *testing.T, l pki.Layout, component string) map[string]string {
	t.Helper()
	p, err := manifest.LoadComponent(l.ManifestsDir, component)
	if err != nil {
		t.Fatal(err)
	}
	return p.Flags()
}

// kubeconfigCA returns the certificates a kubeconfig's current cluster trusts, and its
// client certificate.
func kubeconfigCA(t *testing.T, p string) (ca []*x509.Certificate, client *x509.Certificate) {
	t.Helper()
	_, creds, err := kubeconfig.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	ca, err = pki.ParseCertificates(p, creds.CAData)
	if err != nil {
		t.Fatal(err)
	}
	if len(creds.CertData) > 0 {
		cs, err := pki.ParseCertificates(p, creds.CertData)
		if err != nil {
			t.Fatal(err)
		}
		client = cs[0]
	}
	return ca, client
}

func sameCerts(a, b []*x509.Certificate) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].Equal(b[i]) {
			return false
		}
	}
	return true
}

func kubeletClientCAFile(t *testing.T, l pki.Layout) string {
	t.Helper()
	for _, line := range strings.Split(string(read(t, filepath.Join(l.KubeletDir, "config.yaml"))), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "clientCAFile: "); ok {
			return v
		}
	}
	return ""
}
