package cli

import (
	"bufio"
	"context"
	"crypto/x509/pkix"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	certv1 "k8s.io/api/certificates/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/kubeletserving"
	"github.com/certctl/certctl/pkg/pki"
)

// TestApproveOutputJSON: `approve -o json` against a real apiserver prints one JSON object per
// decision and line, the same decision the text output gives; --dry-run changes nothing.
func TestApproveOutputJSON(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and kube-apiserver")
	}
	tr := testenv.KubeadmTree(t, testenv.TreeOptions{})
	l := tr.Layout
	cp := testenv.StartControlPlane(t, testenv.ControlPlaneOptions{PKIDir: l.PKIDir, KubeconfigDir: l.KubeconfigDir})
	data, err := os.ReadFile(cp.AdminKubeconfig(t))
	if err != nil {
		t.Fatal(err)
	}
	const kc = "/etc/kubernetes/test-admin.conf"
	if err := os.WriteFile(filepath.Join(tr.Root, kc), data, 0o600); err != nil {
		t.Fatal(err)
	}
	// A kubelet-serving CSR filed by the admin, not by a node: denied ("not a node identity").
	key, _ := pki.GenerateKey(pki.AlgECDSAP256)
	req, err := pki.CreateCSR(key, pki.Template{Subject: pkix.Name{CommonName: "system:node:w1", Organization: []string{"system:nodes"}}})
	if err != nil {
		t.Fatal(err)
	}
	cs := cp.Clientset(t)
	if _, err := cs.CertificatesV1().CertificateSigningRequests().Create(context.Background(), &certv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{Name: "csr-admin"},
		Spec: certv1.CertificateSigningRequestSpec{Request: req, SignerName: certv1.KubeletServingSignerName,
			Usages: []certv1.KeyUsage{certv1.UsageDigitalSignature, certv1.UsageServerAuth}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		format string
		parse  func(t *testing.T, out string) kubeletserving.Decision
	}{
		{"json", func(t *testing.T, out string) kubeletserving.Decision {
			var lines []string
			for sc := bufio.NewScanner(strings.NewReader(out)); sc.Scan(); {
				lines = append(lines, sc.Text())
			}
			if len(lines) != 1 {
				t.Fatalf("want one line per decision, got %q", out)
			}
			var d kubeletserving.Decision
			if err := json.Unmarshal([]byte(lines[0]), &d); err != nil {
				t.Fatalf("not JSON: %v: %q", err, lines[0])
			}
			return d
		}},
		{"text", func(t *testing.T, out string) kubeletserving.Decision {
			f := strings.Split(strings.TrimSuffix(out, "\n"), "\t")
			if len(f) != 4 {
				t.Fatalf("want csr, requestor, action, reason: %q", out)
			}
			return kubeletserving.Decision{CSR: f[0], Requestor: f[1], Action: f[2], Reason: f[3]}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.format, func(t *testing.T) {
			code, out, errOut := run(t, "--root", tr.Root, "kubelet-serving", "approve", "--all", "--dry-run", "--kubeconfig", kc, "-o", tc.format)
			if code != ExitOK {
				t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
			}
			d := tc.parse(t, out)
			if d.CSR != "csr-admin" || d.Action != kubeletserving.ActionWouldDeny || !strings.Contains(d.Reason, "not a node identity") {
				t.Errorf("decision %+v, want csr-admin would-deny (not a node identity)", d)
			}
		})
	}
	got, err := cs.CertificatesV1().CertificateSigningRequests().Get(context.Background(), "csr-admin", metav1.GetOptions{})
	if err != nil || len(got.Status.Conditions) != 0 {
		t.Errorf("--dry-run decided the CSR: %v %v", got.Status.Conditions, err)
	}
	if code, _, errOut := run(t, "--root", tr.Root, "kubelet-serving", "approve", "--all", "--kubeconfig", kc, "-o", "yaml"); code != ExitError || !strings.Contains(errOut, `unknown output format "yaml"`) {
		t.Errorf("-o yaml: exit %d, %q", code, errOut)
	}
}
