package manifest_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certctl/certctl/pkg/manifest"
)

func write(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "kube-apiserver.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFlagsAndHealth(t *testing.T) {
	p := write(t, `apiVersion: v1
kind: Pod
metadata: {name: kube-apiserver}
spec:
  containers:
  - name: kube-apiserver
    command: [kube-apiserver, --secure-port=6443, --advertise-address, 10.2.1.151, --etcd-servers=https://127.0.0.1:2379, --secure-port=8443, --allow-privileged]
    livenessProbe:
      httpGet: {host: 10.2.1.151, path: /livez, port: 8443, scheme: HTTPS}
    readinessProbe:
      httpGet: {host: 10.2.1.151, path: /readyz, port: 8443, scheme: HTTPS}
`)
	pod, err := manifest.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	flags := pod.Flags()
	for k, v := range map[string]string{"secure-port": "8443", "advertise-address": "10.2.1.151", "etcd-servers": "https://127.0.0.1:2379", "allow-privileged": ""} {
		if got, ok := flags[k]; !ok || got != v {
			t.Errorf("flag %s = %q (present %v), want %q", k, got, ok, v)
		}
	}
	scheme, host, port, path, ok := pod.HealthEndpoint()
	if !ok || scheme != "https" || host != "10.2.1.151" || port != "8443" || path != "/livez" {
		t.Errorf("health endpoint %s://%s:%s%s %v, want the liveness probe", scheme, host, port, path, ok)
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct{ name, body, want string }{
		{"not yaml", "spec: [", "not a valid pod manifest"},
		{"no containers", "apiVersion: v1\nkind: Pod\nspec: {}\n", "pod has no containers"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := write(t, tc.body)
			_, err := manifest.Load(p)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), p) {
				t.Fatalf("err %v, want one naming %s and containing %q", err, p, tc.want)
			}
		})
	}
	if _, err := manifest.LoadComponent(t.TempDir(), "kube-proxy"); err == nil || !strings.Contains(err.Error(), `unknown component "kube-proxy"`) {
		t.Errorf("unknown component: err %v", err)
	}
}
