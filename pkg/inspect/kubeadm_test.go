package inspect_test

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/inspect"
	"github.com/certctl/certctl/pkg/pki"
)

func needOpenSSL(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		if os.Getenv("CERTCTL_REQUIRE_K8S") == "1" {
			t.Fatal("openssl is required (apt-get install openssl)")
		}
		t.Skip("SKIP (loud): openssl not installed")
	}
}

// opensslView is what openssl says of a certificate file.
type opensslView struct {
	notAfter time.Time
	issuer   string
	sans     []string
}

func viewWithOpenSSL(t *testing.T, file string) opensslView {
	t.Helper()
	out, err := exec.Command("openssl", "x509", "-in", file, "-noout", "-enddate", "-issuer", "-nameopt", "RFC2253", "-ext", "subjectAltName").CombinedOutput()
	if err != nil {
		t.Fatalf("openssl x509 %s: %v\n%s", file, err, out)
	}
	var v opensslView
	lines := strings.Split(string(out), "\n")
	for i, line := range lines {
		switch {
		case strings.HasPrefix(line, "notAfter="):
			v.notAfter, err = time.Parse("Jan _2 15:04:05 2006 MST", strings.TrimPrefix(line, "notAfter="))
			if err != nil {
				t.Fatal(err)
			}
		case strings.HasPrefix(line, "issuer="):
			v.issuer = strings.TrimPrefix(line, "issuer=")
		case strings.Contains(line, "Subject Alternative Name") && i+1 < len(lines):
			for _, s := range strings.Split(lines[i+1], ",") {
				s = strings.TrimSpace(s)
				s = strings.TrimPrefix(strings.TrimPrefix(s, "DNS:"), "IP Address:")
				if ip := net.ParseIP(s); ip != nil {
					s = ip.String() // openssl writes ::1 as 0:0:0:0:0:0:0:1
				}
				v.sans = append(v.sans, s)
			}
		}
	}
	sort.Strings(v.sans)
	return v
}

// TestAgreesWithOpenSSLAndKubeadm inspects a tree written by the real kubeadm of each
// release of the version matrix (the whole node: certificates, kubeconfigs, static-pod
// manifests, kubelet files): every item must be found, healthy, and agree with openssl
// (expiry, issuer, SANs) and with that kubeadm's `kubeadm certs check-expiration` (expiry).
func TestAgreesWithOpenSSLAndKubeadm(t *testing.T) {
	needOpenSSL(t)
	for _, v := range testenv.MatrixVersions {
		t.Run(v, func(t *testing.T) { agreesWithKubeadm(t, v) })
	}
}

func agreesWithKubeadm(t *testing.T, version string) {
	tr := testenv.KubeadmTree(t, testenv.TreeOptions{CertSANs: []string{"10.2.0.100"}, Version: version, Node: true})
	inv := pki.Load(tr.Layout, pki.Default())
	r := inspect.Diagnose(inv, inspect.Options{CheckSANs: []string{"10.2.0.100"}})
	kubeadmSays := tr.CheckExpiration(t)
	scratch := t.TempDir()
	checked := 0
	for _, c := range r.Certificates {
		it := inv.Get(c.Name)
		switch c.Name {
		case "user-kubeconfig":
			// kubeadm's init phases write no ~/.kube/config.
			if c.Status != inspect.StatusAbsent {
				t.Errorf("%s: status %s, want absent", c.Name, c.Status)
			}
			continue
		case "kubelet-serving", "kubelet-client":
			// kubelet-start wrote the kubelet's config, but no kubelet ever ran here to make
			// its certificates: a node in that state has none, which is critical.
			if !r.HasCode(c.Name, inspect.CodeMissing) {
				t.Errorf("%s: %s %+v, want %s (the kubelet never ran on this tree)", c.Name, c.Status, c.Findings, inspect.CodeMissing)
			}
			continue
		case "kubelet.conf":
			continue
		}
		if c.Status != inspect.StatusOK {
			t.Errorf("%s: status %s on a fresh kubeadm tree: %+v", c.Name, c.Status, c.Findings)
		}
		if it.Cert() == nil {
			continue // sa: a key pair
		}
		file := it.Path
		if it.Spec.Kind == pki.KindKubeconfig {
			file = filepath.Join(scratch, c.Name+".crt")
			if err := os.WriteFile(file, pki.EncodeCertificates(it.Certs...), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		v := viewWithOpenSSL(t, file)
		if !v.notAfter.Equal(*c.NotAfter) {
			t.Errorf("%s: certctl says it expires %s, openssl %s", c.Name, c.NotAfter, v.notAfter)
		}
		if v.issuer != c.Issuer {
			t.Errorf("%s: certctl says issuer %q, openssl %q", c.Name, c.Issuer, v.issuer)
		}
		ours := append(append([]string{}, c.DNSNames...), c.IPAddresses...)
		sort.Strings(ours)
		if strings.Join(ours, ",") != strings.Join(v.sans, ",") {
			t.Errorf("%s: certctl SANs %v, openssl %v", c.Name, ours, v.sans)
		}
		if exp, ok := kubeadmSays[c.Name]; ok {
			if !exp.Equal(*c.NotAfter) {
				t.Errorf("%s: certctl says it expires %s, kubeadm %s", c.Name, c.NotAfter, exp)
			}
			delete(kubeadmSays, c.Name)
		}
		checked++
	}
	if checked < 14 {
		t.Errorf("compared %d certificates, want every one kubeadm writes", checked)
	}
	if len(kubeadmSays) != 0 {
		t.Errorf("kubeadm reports certificates certctl did not: %v", kubeadmSays)
	}
	if !r.HasCode("apiserver", inspect.CodeSANMissing) {
		// 10.2.0.100 is in apiServer.certSANs: it must be covered, and 10.2.1.139 is not.
		r2 := inspect.Diagnose(inv, inspect.Options{CheckSANs: []string{"10.2.1.139"}})
		if !r2.HasCode("apiserver", inspect.CodeSANMissing) {
			t.Errorf("10.2.1.139 is not in kubeadm's apiserver.crt but no san-missing finding")
		}
	} else {
		t.Errorf("10.2.0.100 is in apiServer.certSANs but certctl says it is missing")
	}
}
