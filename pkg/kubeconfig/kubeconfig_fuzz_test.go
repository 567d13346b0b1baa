package kubeconfig

// Fuzz targets for the kubeconfigs certctl reads on a node (admin.conf, kubelet.conf, the
// user's ~/.kube/config) and the API server addresses it is given. Seeds: kubeadm v1.37.2's
// admin.conf and kubelet.conf (testdata/README.md) and hand-written variants. `make fuzz`
// runs them; without -fuzz the seeds and testdata/fuzz/FuzzX run as ordinary tests.

import (
	"bytes"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/client-go/tools/clientcmd"
)

func seedKubeconfig(f *testing.F, name string) []byte {
	f.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "kubeadm-v1.37.2", name))
	if err != nil {
		f.Fatal(err)
	}
	return data
}

// addKubeconfigSeeds adds kubeadm's files and the shapes certctl meets besides them.
func addKubeconfigSeeds(f *testing.F) {
	admin := seedKubeconfig(f, "admin.conf")
	f.Add(admin)
	f.Add(seedKubeconfig(f, "kubelet.conf"))
	// The kubelet's after its first rotation: the client certificate is a file.
	f.Add([]byte(`apiVersion: v1
clusters:
- cluster:
    certificate-authority: /etc/kubernetes/pki/ca.crt
    server: https://10.2.1.151:6443
  name: default-cluster
contexts:
- context:
    cluster: default-cluster
    namespace: default
    user: default-auth
  name: default-context
current-context: default-context
kind: Config
users:
- name: default-auth
  user:
    client-certificate: /var/lib/kubelet/pki/kubelet-client-current.pem
    client-key: /var/lib/kubelet/pki/kubelet-client-current.pem
`))
	// A user's ~/.kube/config with a second cluster and a token user.
	f.Add(append(append([]byte{}, admin...), []byte(`
- name: other
  user:
    token: abcdef.0123456789abcdef
`)...))
	f.Add([]byte("apiVersion: v1\nkind: Config\ncontexts:\n- name: a\n  context: {cluster: c, user: u}\n"))
	f.Add([]byte("apiVersion: v1\nkind: Config\ncurrent-context: missing\n"))
	f.Add([]byte("{}"))
	f.Add([]byte("clusters: [\n"))
}

// FuzzLoad: a kubeconfig file never panics Load; an error names the file. What loads is
// written back by Marshal (as certctl rewrites kubeconfigs) and reads back with the same
// credentials; SetClientCertificate's copy carries the new certificate through the same
// round trip, and MoveServer/Servers do not panic on it.
func FuzzLoad(f *testing.F) {
	addKubeconfigSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "admin.conf")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, creds, err := Load(path)
		if err != nil {
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("error %q does not name %s", err, path)
			}
			return
		}
		if creds.Path != path {
			t.Fatalf("Path = %q, want %q", creds.Path, path)
		}
		out, err := Marshal(cfg)
		if err != nil {
			return // client-go cannot write it back: certctl reports the error
		}
		again, err := clientcmd.Load(out)
		if err != nil {
			t.Fatalf("what Marshal wrote does not load: %v\n%s", err, out)
		}
		got, err := CurrentCredentials(path, again)
		if err != nil {
			t.Fatalf("credentials lost in a round trip: %v\n%s", err, out)
		}
		if !sameCredentials(creds, got) {
			t.Fatalf("credentials changed in a round trip:\n%+v\n%+v", creds, got)
		}

		certPEM, keyPEM, caPEM := []byte("new certificate\n"), []byte("new key\n"), []byte("new CA\n")
		next, err := SetClientCertificate(cfg, certPEM, keyPEM, caPEM)
		if err == nil {
			out, err := Marshal(next)
			if err != nil {
				t.Fatalf("a kubeconfig that Marshal wrote before does not marshal after SetClientCertificate: %v", err)
			}
			again, err := clientcmd.Load(out)
			if err != nil {
				t.Fatalf("kubeconfig after SetClientCertificate does not load: %v", err)
			}
			c, err := CurrentCredentials(path, again)
			if err != nil {
				t.Fatalf("credentials lost after SetClientCertificate: %v", err)
			}
			if !bytes.Equal(c.CertData, certPEM) || !bytes.Equal(c.KeyData, keyPEM) || !bytes.Equal(c.CAData, caPEM) || c.CAFile != "" {
				t.Fatalf("SetClientCertificate's credentials did not stick: %+v", c)
			}
		}
		moved := cfg.DeepCopy()
		MoveServer(moved, creds.Server, "https://10.2.1.139:6443")
		Servers(moved)
	})
}

func sameCredentials(a, b *Credentials) bool {
	return a.Context == b.Context && a.ClusterName == b.ClusterName && a.UserName == b.UserName &&
		a.Server == b.Server && bytes.Equal(a.CAData, b.CAData) && a.CAFile == b.CAFile &&
		bytes.Equal(a.CertData, b.CertData) && bytes.Equal(a.KeyData, b.KeyData) &&
		a.CertFile == b.CertFile && a.KeyFile == b.KeyFile && a.Token == b.Token
}

// FuzzNormalizeServer: any --server / controlPlaneEndpoint string. No panic; what it accepts
// is https://HOST:PORT with both parts, and normalising it again changes nothing.
func FuzzNormalizeServer(f *testing.F) {
	for _, s := range []string{"10.2.1.139:6443", "10.2.1.139", "https://10.2.1.139:6443", "https://10.2.1.139:6443/",
		"lb.example.com", "[fd00::1]:6443", "fd00::1", "https://[fd00::1]", "http://10.2.1.139:6443",
		"https://user@host:6443", "https://host:6443/path", "https://host:6443?x=1", ":6443", "", "https://"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := NormalizeServer(s)
		if err != nil {
			return
		}
		u, err := url.Parse(n)
		if err != nil || u.Scheme != "https" || u.Hostname() == "" || u.Port() == "" || u.Path != "" || u.User != nil || u.RawQuery != "" {
			t.Fatalf("NormalizeServer(%q) = %q: not https://HOST:PORT (%v)", s, n, err)
		}
		again, err := NormalizeServer(n)
		if err != nil || again != n {
			t.Fatalf("NormalizeServer(%q) = %q, then %q, %v: not idempotent", s, n, again, err)
		}
	})
}

// FuzzMerge: `certctl kubeconfig refresh` merging kubeadm's admin.conf into a user's
// kubeconfig (any bytes that load). No panic; every user that a context pairs with the
// admin's server and that has a client certificate now carries admin.conf's; the result is
// written and read back.
func FuzzMerge(f *testing.F) {
	addKubeconfigSeeds(f)
	admin, err := clientcmd.Load(seedKubeconfig(f, "admin.conf"))
	if err != nil {
		f.Fatal(err)
	}
	src, err := CurrentCredentials("admin.conf", admin)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		target, err := clientcmd.Load(data)
		if err != nil {
			return
		}
		out, _, err := Merge(target, admin)
		if err != nil {
			return
		}
		for name, ctx := range out.Contexts {
			if ctx == nil {
				continue
			}
			c := out.Clusters[ctx.Cluster]
			u := out.AuthInfos[ctx.AuthInfo]
			if c == nil || u == nil || c.Server != src.Server {
				continue
			}
			if (len(u.ClientCertificateData) > 0 || u.ClientCertificate != "") && !bytes.Equal(u.ClientCertificateData, src.CertData) {
				t.Fatalf("context %q uses the admin's cluster but user %q kept its old certificate", name, ctx.AuthInfo)
			}
		}
		written, err := Marshal(out)
		if err != nil {
			return
		}
		if _, err := clientcmd.Load(written); err != nil {
			t.Fatalf("the merged kubeconfig does not load: %v", err)
		}
	})
}
