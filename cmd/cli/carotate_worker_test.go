package cli

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/sandbox"
)

// TestCARotateWorkerInPlace: phase trust on a worker (the control-plane node's new CA given as a
// certificate) writes the bundle into ca.crt, the kubelet's clientCAFile, and asks for no
// restart; in the middle of the rotation `inspect` still finds nothing wrong and `ca show` shows
// the CA the node had (the old one, kept in old.crt), not an error about ca.crt's two
// certificates.
func TestCARotateWorkerInPlace(t *testing.T) {
	cp := sandboxTree(t, sandbox.Options{})
	wk := t.TempDir()
	if out, err := exec.Command("cp", "-a", cp+"/.", wk+"/").CombinedOutput(); err != nil {
		t.Fatalf("cp: %v: %s", err, out)
	}
	if code, out, errOut := run(t, "--root", cp, "ca", "rotate", "ca", "--phase", "trust", "--generate"); code != ExitOK {
		t.Fatalf("control-plane trust: exit %d\n%s\n%s", code, out, errOut)
	}
	l := pki.NewLayout(pki.LayoutOptions{Root: wk, Home: "/root"})
	testenv.ToWorker(t, l)
	oldCA, err := os.ReadFile(filepath.Join(l.PKIDir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	newCA, err := os.ReadFile(filepath.Join(cp, "etc", "kubernetes", "pki", "rotation", "ca", "new.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(wk, "new-ca.crt"), newCA, 0o644); err != nil {
		t.Fatal(err)
	}

	code, out, errOut := run(t, "--root", wk, "ca", "rotate", "ca", "--phase", "trust", "--new-ca-cert", "/new-ca.crt")
	if code != ExitOK || !strings.Contains(out, "in place") || strings.Contains(out, "restart to use the new files") {
		t.Fatalf("worker trust: exit %d, want the bundle in place and no restart asked for\n%s\n%s", code, out, errOut)
	}
	if got := pki.CertificatesIn(mustRead(t, filepath.Join(l.PKIDir, "ca.crt"))); len(got) != 2 {
		t.Errorf("ca.crt holds %d certificates after trust, want old + new", len(got))
	}
	if code, out, errOut := run(t, "--root", wk, "inspect"); code != ExitOK || !strings.Contains(out, "No findings.") {
		t.Errorf("inspect on the worker in phase trust: exit %d\n%s\n%s", code, out, errOut)
	}
	code, out, errOut = run(t, "--root", wk, "ca", "show", "ca")
	if code != ExitOK {
		t.Fatalf("ca show on the worker in phase trust: exit %d\n%s\n%s", code, out, errOut)
	}
	shown := pki.CertificatesIn([]byte(out))
	old := pki.CertificatesIn(oldCA)
	if len(shown) != 1 || !shown[0].Equal(old[0]) {
		t.Errorf("ca show on the worker in phase trust: %d certificates, want the old CA alone\n%s", len(shown), out)
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
