package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/sandbox"
)

// podToken writes a projected token of pod default/NAME signed with the key file keyPath of
// the tree, where and how the kubelet keeps it.
func podToken(t *testing.T, root, uid, name, keyPath string) {
	t.Helper()
	data, err := os.ReadFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	key, err := pki.ParsePrivateKey(keyPath, data)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Add(-10 * time.Minute)
	tok := testenv.SignSAToken(t, key, jwt.Claims{Subject: "system:serviceaccount:default:default", IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(time.Hour))},
		map[string]any{"namespace": "default", "pod": map[string]string{"name": name}}, "")
	testenv.ProjectToken(t, filepath.Join(root, "var/lib/kubelet"), uid, tok)
}

// TestCATokensCLI: `certctl ca tokens` names the key that signed each pod's token on the node,
// and phase drop of the service-account key rotation is refused while a pod's token is the
// old key's (--ignore-old-tokens goes on); bad keys and a worker without --key are refused,
// naming what to do.
func TestCATokensCLI(t *testing.T) {
	root := sandboxTree(t, sandbox.Options{})
	pkiDir := filepath.Join(root, "etc/kubernetes/pki")
	podToken(t, root, "uid-web", "web", filepath.Join(pkiDir, "sa.key"))
	if code, out, errOut := run(t, "--root", root, "ca", "tokens"); code != ExitOK || !strings.Contains(out, "default/web") || !strings.Contains(out, "sa.pub") || strings.Contains(out, "eyJ") {
		t.Fatalf("ca tokens before the rotation: exit %d\n%s%s", code, out, errOut)
	}
	steps := []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{"trust", []string{"ca", "rotate", "sa", "--phase", "trust", "--generate"}, ExitOK, "--service-account-key-file: /etc/kubernetes/pki/sa.pub -> /etc/kubernetes/pki/rotation/sa/bundle.pub", ""},
		{"issue", []string{"ca", "rotate", "sa", "--phase", "issue"}, ExitOK, "restart to use the new files: certctl restart apiserver controller-manager", ""},
		{"a pod's token is the old key's", []string{"ca", "tokens"}, ExitWarning, "old.pub", "certctl ca tokens --refresh"},
		{"drop refused", []string{"ca", "rotate", "sa", "--phase", "drop"}, ExitError, "", "default/web"},
		{"a key file that is not one", []string{"ca", "tokens", "--key", filepath.Join(pkiDir, "ca.crt")}, ExitError, "", "ca.crt"},
		{"a key file that is not there", []string{"ca", "tokens", "--key", "/nonexistent.pub"}, ExitError, "", "/nonexistent.pub"},
		{"drop anyway", []string{"ca", "rotate", "sa", "--phase", "drop", "--ignore-old-tokens"}, ExitOK, "--service-account-key-file: /etc/kubernetes/pki/rotation/sa/bundle.pub -> /etc/kubernetes/pki/sa.pub", ""},
	}
	for _, s := range steps {
		code, out, errOut := run(t, append([]string{"--root", root}, s.args...)...)
		if code != s.code || !strings.Contains(out, s.stdout) || !strings.Contains(errOut, s.stderr) {
			t.Fatalf("%s: certctl %s: exit %d (want %d)\nstdout:\n%s\nstderr:\n%s\nwant stdout %q, stderr %q", s.name, strings.Join(s.args, " "), code, s.code, out, errOut, s.stdout, s.stderr)
		}
	}
	// A worker holds no sa.pub: the key comes with --key.
	worker := sandboxTree(t, sandbox.Options{})
	if err := os.Remove(filepath.Join(worker, "etc/kubernetes/pki/sa.pub")); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := run(t, "--root", worker, "ca", "tokens"); code != ExitError || !strings.Contains(errOut, "--key FILE") {
		t.Errorf("ca tokens on a worker without --key: exit %d: %s", code, errOut)
	}
	podToken(t, worker, "uid-job", "job", filepath.Join(pkiDir, "sa.key")) // the new key, after issue above
	if code, out, errOut := run(t, "--root", worker, "ca", "tokens", "--key", filepath.Join(pkiDir, "sa.pub")); code != ExitOK || !strings.Contains(out, "default/job") {
		t.Errorf("ca tokens --key on a worker: exit %d\n%s%s", code, out, errOut)
	}
}
