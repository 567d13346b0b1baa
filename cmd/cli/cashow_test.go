package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/carotate"
	"github.com/certctl/certctl/pkg/noderesult"
	"github.com/certctl/certctl/pkg/pki"
)

// TestCAShow: `certctl ca show` on a tree written by the real kubeadm prints each CA the node
// signs with as openssl reads it (PEM), and with --record as cluster ca-rotate's Jobs report it
// (one record line, carotate.Shown); a CA the node does not hold is named, not an error.
func TestCAShow(t *testing.T) {
	tr := testenv.KubeadmTree(t, testenv.TreeOptions{})
	files := map[string]string{"ca": "ca.crt", "etcd-ca": "etcd/ca.crt", "front-proxy-ca": "front-proxy-ca.crt"}
	code, out, errOut := run(t, "--root", tr.Root, "ca", "show")
	if code != ExitOK {
		t.Fatalf("ca show: exit %d: %s", code, errOut)
	}
	pemOut := out
	code, out, errOut = run(t, "--root", tr.Root, "--record", "ca", "show")
	if code != ExitOK || strings.Count(out, "\n") != 1 {
		t.Fatalf("ca show --record: exit %d (want one line): %s%s", code, out, errOut)
	}
	shown := shownRecord(t, out)
	for ca, f := range files {
		want := testenv.CertFile(t, filepath.Join(tr.Layout.PKIDir, f))
		if c, err := shown.Cert(ca); err != nil || c == nil || !c.Equal(want) {
			t.Errorf("ca show --record: %s is not %s: %v\n%s", ca, f, err, out)
		}
		if !strings.Contains(pemOut, string(pki.EncodeCertificates(want))) || !strings.Contains(pemOut, "# "+ca+": ") {
			t.Errorf("ca show: %s's certificate is not in the PEM output:\n%s", ca, pemOut)
		}
	}
	if code, out, _ := run(t, "--root", tr.Root, "ca", "show", "front-proxy-ca"); code != ExitOK || strings.Count(out, "BEGIN CERTIFICATE") != 1 || !strings.HasPrefix(out, "# front-proxy-ca: ") {
		t.Errorf("ca show front-proxy-ca: exit %d:\n%s", code, out)
	}
	// The service-account key pair: its public key, as sa.pub holds it.
	if code, out, errOut := run(t, "--root", tr.Root, "ca", "show", "sa"); code != ExitOK || !strings.HasPrefix(out, "# sa: ") || strings.Count(out, "BEGIN PUBLIC KEY") != 1 {
		t.Errorf("ca show sa: exit %d: %s%s", code, out, errOut)
	}
	if code, _, errOut := run(t, "--root", tr.Root, "ca", "show", "kubelet-ca"); code == ExitOK || !strings.Contains(errOut, `unknown CA "kubelet-ca"`) {
		t.Errorf("ca show kubelet-ca: exit %d: %s", code, errOut)
	}
	// Without the etcd CA (external etcd, a worker): named, the others still shown.
	if err := os.RemoveAll(filepath.Join(tr.Layout.PKIDir, "etcd")); err != nil {
		t.Fatal(err)
	}
	code, out, _ = run(t, "--root", tr.Root, "ca", "show", "all")
	if code != ExitOK || strings.Count(out, "BEGIN CERTIFICATE") != 2 || !strings.Contains(out, "# etcd-ca: not on this node") {
		t.Errorf("ca show without etcd: exit %d:\n%s", code, out)
	}
	code, out, _ = run(t, "--root", tr.Root, "--record", "ca", "show", "all")
	if shown := shownRecord(t, out); code != ExitOK || shown.CAs["etcd-ca"] != nil || shown.CAs["ca"] == nil || !strings.HasSuffix(shown.Missing["etcd-ca"], "etcd/ca.crt") {
		t.Errorf("ca show --record without etcd: exit %d:\n%s", code, out)
	}
}

func shownRecord(t *testing.T, out string) *carotate.Shown {
	t.Helper()
	var s carotate.Shown
	if err := noderesult.ReadRecord(out, noderesult.KindCAShow, &s); err != nil {
		t.Fatalf("ca show --record: %v\n%s", err, out)
	}
	return &s
}

// TestCARotateNewCADir: the way cluster ca-rotate's Jobs run: several CAs at once, their new
// CAs in one directory as CA.crt and CA.key (the Secret's keys); the new CAs end up the CAs of
// the node after issue. A directory that holds none of the CAs named is refused.
func TestCARotateNewCADir(t *testing.T) {
	first, other := testenv.KubeadmTree(t, testenv.TreeOptions{}), testenv.KubeadmTree(t, testenv.TreeOptions{})
	// The first node makes the new CAs; the Secret's layout is copied from its rotation dirs.
	if code, out, errOut := run(t, "--root", first.Root, "ca", "rotate", "front-proxy-ca", "etcd-ca", "front-proxy-ca", "--phase", "trust", "--generate"); code != ExitOK ||
		strings.Index(out, "etcd-ca:") > strings.Index(out, "front-proxy-ca:") {
		t.Fatalf("trust on the first node (etcd-ca before front-proxy-ca, each once): exit %d\n%s\n%s", code, out, errOut)
	}
	dir := t.TempDir()
	rot := map[string]string{"etcd-ca": "etcd/rotation/etcd-ca", "front-proxy-ca": "rotation/front-proxy-ca"}
	for ca, d := range rot {
		for from, to := range map[string]string{"new.crt": ca + ".crt", "new.key": ca + ".key"} {
			b, err := os.ReadFile(filepath.Join(first.Layout.PKIDir, d, from))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, to), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	if code, _, errOut := run(t, "--root", other.Root, "ca", "rotate", "ca", "--phase", "trust", "--new-ca-dir", dir); code == ExitOK || !strings.Contains(errOut, "holds no new CA of ca") {
		t.Errorf("--new-ca-dir without ca.crt for ca: exit %d: %s", code, errOut)
	}
	for _, phase := range []string{"trust", "issue", "drop"} {
		args := []string{"--root", other.Root, "ca", "rotate", "etcd-ca", "front-proxy-ca", "--phase", phase}
		if phase == "trust" {
			args = append(args, "--new-ca-dir", dir)
		}
		if code, out, errOut := run(t, args...); code != ExitOK {
			t.Fatalf("%s on the other node: exit %d\n%s\n%s", phase, code, out, errOut)
		}
	}
	for ca, f := range map[string]string{"etcd-ca": "etcd/ca.crt", "front-proxy-ca": "front-proxy-ca.crt"} {
		want := testenv.CertFile(t, filepath.Join(dir, ca+".crt"))
		if got := testenv.CertFile(t, filepath.Join(other.Layout.PKIDir, f)); !got.Equal(want) {
			t.Errorf("after drop the other node's %s is %s (serial %s), not the first node's new CA", f, got.Subject, got.SerialNumber)
		}
	}
	// The cluster CA was not named: untouched.
	if _, err := os.Stat(filepath.Join(other.Layout.PKIDir, "rotation", "ca")); err == nil {
		t.Errorf("rotating etcd-ca and front-proxy-ca made a rotation of ca")
	}
}
