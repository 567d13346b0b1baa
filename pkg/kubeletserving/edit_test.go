package kubeletserving

import (
	"strings"
	"testing"
)

const kubeadmConfig = `# Written by kubeadm; edited by hand since.
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  x509:
    clientCAFile: /etc/kubernetes/pki/ca.crt
cgroupDriver: systemd
clusterDNS:
- 10.96.0.10
healthzPort: 10248 # plain HTTP
rotateCertificates: true
staticPodPath: /etc/kubernetes/manifests
`

func TestEditConfig(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		fields  []Field
		want    string
		changed bool
		wantErr string
	}{
		{"adds serverTLSBootstrap at the end, all else byte for byte", kubeadmConfig,
			[]Field{{"serverTLSBootstrap", "true"}}, kubeadmConfig + "serverTLSBootstrap: true\n", true, ""},
		{"no-op when already set", kubeadmConfig + "serverTLSBootstrap: true\n",
			[]Field{{"serverTLSBootstrap", "true"}}, kubeadmConfig + "serverTLSBootstrap: true\n", false, ""},
		{"flips false in place keeping its comment",
			strings.Replace(kubeadmConfig, "rotateCertificates: true\n", "rotateCertificates: true\nserverTLSBootstrap: false # off for now\n", 1),
			[]Field{{"serverTLSBootstrap", "true"}},
			strings.Replace(kubeadmConfig, "rotateCertificates: true\n", "rotateCertificates: true\nserverTLSBootstrap: true # off for now\n", 1), true, ""},
		{"sets two paths", kubeadmConfig,
			[]Field{{"tlsCertFile", "/var/lib/kubelet/pki/kubelet-server-certctl.crt"}, {"tlsPrivateKeyFile", "/var/lib/kubelet/pki/kubelet-server-certctl.key"}},
			kubeadmConfig + "tlsCertFile: /var/lib/kubelet/pki/kubelet-server-certctl.crt\ntlsPrivateKeyFile: /var/lib/kubelet/pki/kubelet-server-certctl.key\n", true, ""},
		{"no final newline", strings.TrimSuffix(kubeadmConfig, "\n"),
			[]Field{{"serverTLSBootstrap", "true"}}, kubeadmConfig + "serverTLSBootstrap: true\n", true, ""},
		{"empty file", "", []Field{{"serverTLSBootstrap", "true"}}, "serverTLSBootstrap: true\n", true, ""},
		{"not YAML", "a: [", []Field{{"serverTLSBootstrap", "true"}}, "", false, "not valid YAML"},
		{"a list, not a mapping", "- a\n- b\n", []Field{{"serverTLSBootstrap", "true"}}, "", false, "not a mapping"},
		{"flow style", "{kind: KubeletConfiguration}\n", []Field{{"serverTLSBootstrap", "true"}}, "", false, "flow mapping"},
		{"key holds a mapping", "serverTLSBootstrap:\n  a: b\n", []Field{{"serverTLSBootstrap", "true"}}, "", false, "not a scalar"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, changed, err := EditConfig([]byte(tc.in), tc.fields...)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if changed != tc.changed || string(out) != tc.want {
				t.Fatalf("changed %v, got:\n%s\nwant:\n%s", changed, out, tc.want)
			}
		})
	}
}
