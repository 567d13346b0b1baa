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
	ep, err := pod.HealthEndpoint()
	if want := (manifest.Endpoint{Scheme: "https", Host: "10.2.1.151", Port: 8443, Path: "/livez"}); err != nil || ep != want {
		t.Errorf("health endpoint %+v, %v; want the liveness probe %+v", ep, err, want)
	}
}

// TestHealthEndpointPorts: a probe's port as kubeadm writes it, before 1.34 (a number) and
// since (`port: probe-port`, the name of a container port), and shapes certctl refuses.
func TestHealthEndpointPorts(t *testing.T) {
	tests := []struct {
		name, container string
		want            manifest.Endpoint
		wantErr         string
	}{
		{"number (kubeadm <= 1.33)", `
    livenessProbe:
      httpGet: {host: 127.0.0.1, path: /livez, port: 2381, scheme: HTTP}`,
			manifest.Endpoint{Scheme: "http", Host: "127.0.0.1", Port: 2381, Path: "/livez"}, ""},
		{"named port (kubeadm >= 1.34)", `
    ports:
    - {containerPort: 6443, name: probe-port, protocol: TCP}
    livenessProbe:
      httpGet: {host: 10.2.1.151, path: /livez, port: probe-port, scheme: HTTPS}
    startupProbe:
      httpGet: {host: 10.2.1.151, path: /livez, port: probe-port, scheme: HTTPS}`,
			manifest.Endpoint{Scheme: "https", Host: "10.2.1.151", Port: 6443, Path: "/livez"}, ""},
		{"number as a string", `
    readinessProbe:
      httpGet: {path: /readyz, port: "10259", scheme: HTTPS}`,
			manifest.Endpoint{Scheme: "https", Port: 10259, Path: "/readyz"}, ""},
		{"unknown name", `
    ports:
    - {containerPort: 6443, name: https}
    livenessProbe:
      httpGet: {path: /livez, port: probe-port, scheme: HTTPS}`,
			manifest.Endpoint{}, `"probe-port" names none of the container's ports (https=6443)`},
		{"port out of range", `
    livenessProbe:
      httpGet: {path: /livez, port: 70000}`,
			manifest.Endpoint{}, "70000 is not a port number"},
		{"no http probe", `
    livenessProbe:
      exec: {command: [true]}`,
			manifest.Endpoint{}, "no HTTP probe"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := write(t, "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: c\n    command: [c]"+tc.container+"\n")
			pod, err := manifest.Load(p)
			if err != nil {
				t.Fatal(err)
			}
			ep, err := pod.HealthEndpoint()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), p) {
					t.Fatalf("err %v, want one naming %s and containing %q", err, p, tc.wantErr)
				}
				return
			}
			if err != nil || ep != tc.want {
				t.Fatalf("got %+v, %v; want %+v", ep, err, tc.want)
			}
		})
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

func TestSetFlags(t *testing.T) {
	block := `apiVersion: v1
kind: Pod
spec:
  containers:
  - command:
    - kube-apiserver
    # the CA clients present certificates of
    - --client-ca-file=/etc/kubernetes/pki/ca.crt   # kubeadm's
    - "--etcd-cafile=/etc/kubernetes/pki/etcd/ca.crt"
    - --tls-cert-file=/etc/kubernetes/pki/apiserver.crt
    name: kube-apiserver
`
	flow := "spec:\n  containers:\n  - command: [etcd, --trusted-ca-file=/a.crt, --peer-trusted-ca-file=/a.crt, --name=x]\n"
	tests := []struct {
		name    string
		in      string
		flags   map[string]string
		want    string // the exact result; empty with wantErr
		changes int
		wantErr string
	}{
		{name: "block style, comments and quoting kept", in: block,
			flags:   map[string]string{"client-ca-file": "/b.crt", "etcd-cafile": "/c.crt", "kubelet-certificate-authority": "/x.crt"},
			want:    strings.Replace(strings.Replace(block, "--client-ca-file=/etc/kubernetes/pki/ca.crt", "--client-ca-file=/b.crt", 1), "--etcd-cafile=/etc/kubernetes/pki/etcd/ca.crt", "--etcd-cafile=/c.crt", 1),
			changes: 2},
		{name: "flow style, two on one line", in: flow,
			flags:   map[string]string{"trusted-ca-file": "/bundle.crt", "peer-trusted-ca-file": "/bundle.crt"},
			want:    "spec:\n  containers:\n  - command: [etcd, --trusted-ca-file=/bundle.crt, --peer-trusted-ca-file=/bundle.crt, --name=x]\n",
			changes: 2},
		{name: "already set: unchanged", in: flow, flags: map[string]string{"trusted-ca-file": "/a.crt"}, want: flow},
		{name: "a value that needs quoting is refused", in: flow, flags: map[string]string{"name": "a, b"}, wantErr: "needs quoting"},
		{name: "not a pod", in: "kind: Pod\nspec: {}\n", flags: map[string]string{"a": "b"}, wantErr: "not a pod manifest"},
		{name: "not YAML", in: "spec: [\n", flags: map[string]string{"a": "b"}, wantErr: "not valid YAML"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, changes, err := manifest.SetFlags([]byte(tc.in), tc.flags)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(out) != tc.want {
				t.Errorf("got\n%s\nwant\n%s", out, tc.want)
			}
			if len(changes) != tc.changes {
				t.Errorf("%d changes %v, want %d", len(changes), changes, tc.changes)
			}
		})
	}
}
