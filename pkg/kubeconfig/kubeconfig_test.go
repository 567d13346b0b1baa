package kubeconfig_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certctl/certctl/pkg/kubeconfig"
)

const base = `apiVersion: v1
kind: Config
clusters:
- name: kubernetes
  cluster:
    server: https://10.2.1.151:6443
    certificate-authority-data: Q0E=
users:
- name: admin
  user:
    client-certificate-data: Q0VSVA==
    client-key-data: S0VZ
- name: kubelet
  user:
    client-certificate: /var/lib/kubelet/pki/kubelet-client-current.pem
    client-key: /var/lib/kubelet/pki/kubelet-client-current.pem
- name: tok
  user:
    token: abc
contexts:
- name: admin@kubernetes
  context: {cluster: kubernetes, user: admin}
- name: kubelet
  context: {cluster: kubernetes, user: kubelet}
- name: tok
  context: {cluster: kubernetes, user: tok}
- name: broken
  context: {cluster: nowhere, user: admin}
current-context: admin@kubernetes
`

func write(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "admin.conf")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoad(t *testing.T) {
	tests := []struct {
		name, current string
		embedded      bool
		certFile      string
		token         bool
		wantErr       string
	}{
		{"embedded client certificate", "admin@kubernetes", true, "", false, ""},
		{"certificate by path", "kubelet", false, "/var/lib/kubelet/pki/kubelet-client-current.pem", false, ""},
		{"token user", "tok", false, "", true, ""},
		{"context names a missing cluster", "broken", false, "", false, `names cluster "nowhere", which is not defined`},
		{"current context not defined", "ghost", false, "", false, `current-context "ghost" is not defined`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := write(t, strings.Replace(base, "current-context: admin@kubernetes", "current-context: "+tc.current, 1))
			_, c, err := kubeconfig.Load(p)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), p) {
					t.Fatalf("err %v, want it to name %s and contain %q", err, p, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Embedded() != tc.embedded || c.CertFile != tc.certFile || c.Token != tc.token || c.Server != "https://10.2.1.151:6443" {
				t.Fatalf("credentials %+v", c)
			}
		})
	}
	if _, _, err := kubeconfig.Load(write(t, "clusters: [")); err == nil || !strings.Contains(err.Error(), "not a valid kubeconfig") {
		t.Errorf("unparsable kubeconfig: err %v", err)
	}
}

func TestSetClientCertificate(t *testing.T) {
	cfg, _, err := kubeconfig.Load(write(t, base))
	if err != nil {
		t.Fatal(err)
	}
	out, err := kubeconfig.SetClientCertificate(cfg, []byte("NEWCERT"), []byte("NEWKEY"), []byte("NEWCA"))
	if err != nil {
		t.Fatal(err)
	}
	if u := out.AuthInfos["admin"]; !bytes.Equal(u.ClientCertificateData, []byte("NEWCERT")) || !bytes.Equal(u.ClientKeyData, []byte("NEWKEY")) {
		t.Errorf("user not updated: %+v", u)
	}
	if !bytes.Equal(out.Clusters["kubernetes"].CertificateAuthorityData, []byte("NEWCA")) {
		t.Errorf("CA data not updated")
	}
	if !bytes.Equal(cfg.AuthInfos["admin"].ClientCertificateData, []byte("CERT")) {
		t.Errorf("the input was modified")
	}
	cfg.CurrentContext = "kubelet"
	if _, err := kubeconfig.SetClientCertificate(cfg, nil, nil, nil); err != kubeconfig.ErrNotEmbedded {
		t.Errorf("file-referenced user: err %v, want ErrNotEmbedded", err)
	}
	data, err := kubeconfig.Marshal(out)
	if err != nil || !strings.Contains(string(data), "client-certificate-data: TkVXQ0VSVA==") {
		t.Errorf("marshal: %v\n%s", err, data)
	}
}
