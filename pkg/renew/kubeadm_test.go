package renew_test

import (
	"bytes"
	"crypto/x509"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/kubeconfig"
	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/renew"
)

// pemPair is a certificate and key as files openssl can read.
type pemPair struct{ name, crt, key, ca string }

// pairFiles returns, for every renewable item, files holding its certificate and key (a
// kubeconfig's embedded ones are written out to dir) and its CA certificate.
func pairFiles(t *testing.T, l pki.Layout, dir string) []pemPair {
	t.Helper()
	var out []pemPair
	caFile := map[string]string{"ca": "ca.crt", "etcd-ca": "etcd/ca.crt", "front-proxy-ca": "front-proxy-ca.crt"}
	for _, n := range renew.All {
		s, _ := pki.Lookup(pki.Default(), n)
		p := pemPair{name: n, ca: filepath.Join(l.PKIDir, caFile[s.CAName])}
		if s.Kind == pki.KindKubeconfig {
			_, creds, err := kubeconfig.Load(filepath.Join(l.KubeconfigDir, n))
			if err != nil {
				t.Fatal(err)
			}
			p.crt, p.key = filepath.Join(dir, n+".crt"), filepath.Join(dir, n+".key")
			mustWrite(t, p.crt, creds.CertData)
			mustWrite(t, p.key, creds.KeyData)
		} else {
			p.crt, p.key = filepath.Join(l.PKIDir, s.BaseName+".crt"), filepath.Join(l.PKIDir, s.BaseName+".key")
		}
		out = append(out, p)
	}
	return out
}

func openssl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("openssl", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// sanLine is the "X509v3 Subject Alternative Name" line of openssl x509 -text.
func sanLine(t *testing.T, crt string) string {
	text := openssl(t, "x509", "-in", crt, "-noout", "-text")
	i := strings.Index(text, "X509v3 Subject Alternative Name")
	if i < 0 {
		return ""
	}
	lines := strings.SplitN(text[i:], "\n", 3)
	return strings.TrimSpace(lines[1])
}

// TestRenewKubeadmTree renews a tree made by the real kubeadm of each release of the version
// matrix and checks the result with openssl and with that kubeadm itself.
func TestRenewKubeadmTree(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		if os.Getenv("CERTCTL_REQUIRE_K8S") == "1" {
			t.Fatal("openssl is required (apt-get install openssl)")
		}
		t.Skip("SKIP (loud): openssl not installed")
	}
	bin := testenv.Certctl(t)
	for _, v := range testenv.MatrixVersions {
		t.Run(v, func(t *testing.T) { renewKubeadmTree(t, bin, v) })
	}
}

func renewKubeadmTree(t *testing.T, bin, version string) {
	tr := testenv.KubeadmTree(t, testenv.TreeOptions{CertSANs: []string{"10.2.0.100"}, Version: version, Node: true})
	root, kubeadm := tr.Root, testenv.VersionBinary(t, version, "kubeadm")
	l := tr.Layout
	scratch := t.TempDir()

	oldSANs := map[string][]string{}
	for _, p := range pairFiles(t, l, filepath.Join(scratch)) {
		var items []string
		if s := sanLine(t, p.crt); s != "" {
			items = strings.Split(s, ", ")
		}
		oldSANs[p.name] = items
	}
	if !strings.Contains(strings.Join(oldSANs["apiserver"], ","), "DNS:kubernetes") {
		t.Fatalf("kubeadm's apiserver SANs look wrong: %v", oldSANs["apiserver"])
	}

	for _, args := range [][]string{
		{"renew", "--days", "3650", "--san", "10.2.1.139", "--yes"},
		{"renew", "all", "--yes"},
		{"renew", "apiserver", "--san", "10.2.0.200", "--key", "reuse", "--yes"},
	} {
		out, err := exec.Command(bin, append([]string{"--root", root}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("certctl %v: %v\n%s", args, err, out)
		}
		dir := filepath.Join(scratch, strings.Join(args[:2], "-"))
		os.MkdirAll(dir, 0o700)
		newCerts := map[string]*x509.Certificate{}
		for _, p := range pairFiles(t, l, dir) {
			// every old SAN, plus the new ones on the apiserver
			got := sanLine(t, p.crt)
			for _, s := range oldSANs[p.name] {
				if !strings.Contains(got+",", s+",") {
					t.Errorf("%v: %s lost SAN %s (now %s)", args, p.name, s, got)
				}
			}
			if p.name == "apiserver" && !strings.Contains(got, "IP Address:10.2.1.139") {
				t.Errorf("%v: apiserver SANs %s lack 10.2.1.139", args, got)
			}
			if v := openssl(t, "verify", "-CAfile", p.ca, p.crt); !strings.Contains(v, ": OK") {
				t.Errorf("%v: %s does not verify: %s", args, p.name, v)
			}
			if a, b := openssl(t, "pkey", "-in", p.key, "-pubout"), openssl(t, "x509", "-in", p.crt, "-noout", "-pubkey"); a != b {
				t.Errorf("%v: %s key does not match its certificate", args, p.name)
			}
			c := cert(t, p.crt)
			newCerts[p.name] = c
		}
		if !strings.Contains(sanLine(t, filepath.Join(l.PKIDir, "apiserver.crt")), "10.2.0.200") == (args[1] == "apiserver") {
			t.Errorf("%v: 10.2.0.200 presence wrong", args)
		}
		// kubeadm reads certctl's dates.
		exp, err := exec.Command(kubeadm, "certs", "check-expiration", "--rootfs", root, "--config", "/kubeadm.yaml").CombinedOutput()
		if err != nil {
			t.Fatalf("kubeadm certs check-expiration: %v\n%s", err, exp)
		}
		for name, c := range newCerts {
			want := c.NotAfter.UTC().Format("Jan 02, 2006 15:04 UTC")
			found := false
			for _, line := range strings.Split(string(exp), "\n") {
				if f := strings.Fields(line); len(f) > 0 && f[0] == name {
					found = true
					if !strings.Contains(line, want) {
						t.Errorf("%v: kubeadm says %q, certctl wrote %s", args, line, want)
					}
				}
			}
			if !found {
				t.Errorf("kubeadm does not list %s:\n%s", name, exp)
			}
		}
	}
	// kubeadm can still renew what certctl wrote (it parses our files).
	if out, err := exec.Command(kubeadm, "certs", "renew", "apiserver", "--rootfs", root, "--config", "/kubeadm.yaml").CombinedOutput(); err != nil {
		t.Fatalf("kubeadm certs renew apiserver on certctl's tree: %v\n%s", err, out)
	}
	if !bytes.Contains([]byte(sanLine(t, filepath.Join(l.PKIDir, "apiserver.crt"))), []byte("10.2.1.151")) {
		t.Error("kubeadm's renewal lost the node IP")
	}
}
