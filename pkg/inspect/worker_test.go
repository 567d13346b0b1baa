package inspect_test

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/inspect"
	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/sandbox"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// controlPlaneOnly are the rows a worker does not have: the eight false "missing" findings
// seen on a real kubeadm worker, plus the optional ones.
var controlPlaneOnly = []string{"etcd-ca", "front-proxy-ca", "sa", "apiserver", "apiserver-kubelet-client",
	"apiserver-etcd-client", "front-proxy-client", "etcd-server", "etcd-peer", "etcd-healthcheck-client",
	"admin.conf", "super-admin.conf", "controller-manager.conf", "scheduler.conf"}

// checkWorker asserts what inspect must say of a healthy worker.
func checkWorker(t *testing.T, r *inspect.Report) {
	t.Helper()
	if r.Role != string(pki.RoleWorker) || r.ControlPlane {
		t.Errorf("role %q (controlPlane %v), want worker", r.Role, r.ControlPlane)
	}
	for _, name := range controlPlaneOnly {
		if c := r.Get(name); c == nil || c.Status != inspect.StatusAbsent || len(c.Findings) != 0 {
			t.Errorf("%s on a worker: want absent without findings, got %+v", name, c)
		}
	}
	for _, name := range []string{"ca", "kubelet.conf", "kubelet-client", "kubelet-serving"} {
		c := r.Get(name)
		if c == nil || c.Status != inspect.StatusOK || c.NotAfter == nil {
			t.Errorf("%s on a worker: want checked and ok, got %+v", name, c)
		}
	}
	if w := r.Worst(); w != "" {
		for _, c := range r.Certificates {
			if len(c.Findings) > 0 {
				t.Logf("%s: %+v", c.Name, c.Findings)
			}
		}
		t.Errorf("a healthy worker has findings (worst %s): it would alarm forever", w)
	}
}

func TestWorkerSandbox(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(t *testing.T, l pki.Layout)
		role   pki.Role
		want   []want
	}{
		{name: "worker as kubeadm join leaves it", mutate: func(t *testing.T, l pki.Layout) { testenv.ToWorker(t, l) }, role: pki.RoleWorker},
		{name: "worker whose kubelet client certificate is from another CA",
			mutate: func(t *testing.T, l pki.Layout) {
				testenv.ToWorker(t, l)
				other := tree(t, sandbox.Options{})
				cur := filepath.Join(l.KubeletDir, "pki", "kubelet-client-current.pem")
				// The link is absolute, as the kubelet writes it: resolve it under its root.
				target := other.Resolve(filepath.Join(other.KubeletDir, "pki", "kubelet-client-current.pem"))
				os.Remove(cur)
				copyFile(t, target, cur)
			},
			role: pki.RoleWorker,
			// kubelet.conf's row is the same file: it says so too.
			want: []want{{"kubelet.conf", inspect.CodeNotSignedByCA}, {"kubelet-client", inspect.CodeNotSignedByCA}}},
		{name: "worker with an expiring kubelet client certificate",
			mutate: func(t *testing.T, l pki.Layout) {
				ca, caKey := clusterCA(t, l)
				testenv.ToWorker(t, l)
				cur := filepath.Join(l.KubeletDir, "pki", "kubelet-client-current.pem")
				writeKubeletPEM(t, cur, ca, caKey, func(c *x509.Certificate) { c.NotAfter = now.Add(5 * 24 * time.Hour) })
			},
			role: pki.RoleWorker,
			want: []want{{"kubelet.conf", inspect.CodeExpiringSoon}, {"kubelet-client", inspect.CodeExpiringSoon}}},
		{name: "control plane with its manifests moved out for a restart",
			mutate: func(t *testing.T, l pki.Layout) {
				if err := os.Rename(l.ManifestsDir, l.ManifestsDir+".moved"); err != nil {
					t.Fatal(err)
				}
			},
			role: pki.RoleControlPlane},
		{name: "control plane", role: pki.RoleControlPlane},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := tree(t, sandbox.Options{})
			if tc.mutate != nil {
				tc.mutate(t, l)
			}
			r := inspect.Diagnose(pki.Load(l, pki.Default()), inspect.Options{Now: now})
			if r.Role != string(tc.role) {
				t.Fatalf("role %q (%s), want %s", r.Role, r.RoleReason, tc.role)
			}
			if tc.role == pki.RoleWorker && len(tc.want) == 0 {
				checkWorker(t, r)
			}
			if tc.role == pki.RoleControlPlane {
				for _, c := range r.Certificates {
					if c.Status == inspect.StatusAbsent {
						t.Errorf("%s absent on a control-plane node", c.Name)
					}
				}
			}
			var codes []string
			for _, c := range r.Certificates {
				for _, f := range c.Findings {
					codes = append(codes, c.Name+"/"+f.Code)
				}
			}
			var wantCodes []string
			for _, w := range tc.want {
				wantCodes = append(wantCodes, w.name+"/"+w.code)
			}
			if strings.Join(codes, ",") != strings.Join(wantCodes, ",") {
				t.Errorf("findings %v, want exactly %v", codes, wantCodes)
			}
		})
	}
}

// clusterCA reads the tree's cluster CA pair (before testenv.ToWorker removes ca.key).
func clusterCA(t *testing.T, l pki.Layout) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	certPEM, err := os.ReadFile(filepath.Join(l.PKIDir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	certs, err := pki.ParseCertificates("ca.crt", certPEM)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(l.PKIDir, "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := pki.ParsePrivateKey("ca.key", keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return certs[0], key
}

// writeKubeletPEM writes a certificate signed by ca (edited by edit) and its key into one
// PEM file, the way the kubelet keeps kubelet-client-current.pem and kubelet-server-current.pem.
func writeKubeletPEM(t *testing.T, path string, ca *x509.Certificate, caKey crypto.Signer, edit func(*x509.Certificate)) {
	t.Helper()
	key, err := pki.GenerateKey(pki.AlgECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		NotBefore:    now.Add(-time.Hour), NotAfter: now.Add(365 * 24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	tmpl.Subject.CommonName, tmpl.Subject.Organization = "system:node:worker-1", []string{"system:nodes"}
	edit(tmpl)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := pki.EncodePrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(path)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, append(pki.EncodeCertificates(cert), keyPEM...), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestWorkerKubeadm makes a worker the way kubeadm join leaves it, from a tree written by the
// real kubeadm: ca.crt only in pki/, kubelet.conf pointing at the rotating
// kubelet-client-current.pem (TLS bootstrap), an empty manifests dir, the kubelet's config
// and flags. inspect must call it a worker, check the kubelet's certificates against the CA
// in kubelet.conf, and report nothing of the control plane.
func TestWorkerKubeadm(t *testing.T) {
	tr := testenv.KubeadmTree(t, testenv.TreeOptions{NodeName: "worker-1", AdvertiseIP: "10.2.1.154"})
	l := tr.Layout
	ca, caKey := clusterCA(t, l)
	now := time.Now()
	kpki := filepath.Join(l.KubeletDir, "pki")
	stamp := now.UTC().Format("2006-01-02-15-04-05")
	writeKubeletPEM(t, filepath.Join(kpki, "kubelet-client-"+stamp+".pem"), ca, caKey, func(c *x509.Certificate) {
		c.NotBefore, c.NotAfter = now.Add(-time.Minute), now.Add(365*24*time.Hour)
	})
	writeKubeletPEM(t, filepath.Join(kpki, "kubelet-server-"+stamp+".pem"), ca, caKey, func(c *x509.Certificate) {
		c.NotBefore, c.NotAfter = now.Add(-time.Minute), now.Add(365*24*time.Hour)
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		c.DNSNames, c.IPAddresses = []string{"worker-1"}, []net.IP{net.ParseIP("10.2.1.154")}
	})
	for _, f := range []string{"client", "server"} {
		if err := os.Symlink("kubelet-"+f+"-"+stamp+".pem", filepath.Join(kpki, "kubelet-"+f+"-current.pem")); err != nil {
			t.Fatal(err)
		}
	}
	// kubelet.conf after the TLS bootstrap: the kubeadm-written one, with its user pointing
	// at the rotating file, as kubeadm's kubelet-finalize phase leaves it.
	kc := filepath.Join(l.KubeconfigDir, "kubelet.conf")
	cfg, err := clientcmd.LoadFromFile(kc)
	if err != nil {
		t.Fatal(err)
	}
	cfg.AuthInfos = map[string]*clientcmdapi.AuthInfo{"default-auth": {
		ClientCertificate: "/var/lib/kubelet/pki/kubelet-client-current.pem",
		ClientKey:         "/var/lib/kubelet/pki/kubelet-client-current.pem",
	}}
	for _, c := range cfg.Contexts {
		c.AuthInfo = "default-auth"
	}
	if err := clientcmd.WriteToFile(*cfg, kc); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{
		"config.yaml":       "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nrotateCertificates: true\nserverTLSBootstrap: true\n",
		"kubeadm-flags.env": "KUBELET_KUBEADM_ARGS=\"--container-runtime-endpoint=unix:///var/run/containerd/containerd.sock --node-ip=10.2.1.154\"\n",
	} {
		if err := os.WriteFile(filepath.Join(l.KubeletDir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	testenv.ToWorker(t, l)

	r := inspect.Diagnose(pki.Load(l, pki.Default()), inspect.Options{})
	checkWorker(t, r)
	if c := r.Get("kubelet-client"); c == nil || c.CA != "ca" {
		t.Errorf("kubelet-client: want checked against ca, got %+v", c)
	}
	var buf bytes.Buffer
	if err := inspect.Render(&buf, r, "json"); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Role         string `json:"role"`
		ControlPlane *bool  `json:"controlPlane"`
	}
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Role != "worker" || doc.ControlPlane == nil || *doc.ControlPlane {
		t.Errorf("inspect -o json: role %q controlPlane %v, want worker/false", doc.Role, doc.ControlPlane)
	}
	buf.Reset()
	if err := inspect.Render(&buf, r, "table"); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(buf.String(), "Node role: worker (") || !strings.Contains(buf.String(), "No findings.") {
		t.Errorf("table does not say the role, or has findings:\n%s", buf.String())
	}

	// The same tree with the control plane's manifests is a control-plane node again, and the
	// PKI it lacks is then missing (a real finding).
	if err := os.WriteFile(filepath.Join(l.ManifestsDir, "kube-apiserver.yaml"), []byte("apiVersion: v1\nkind: Pod\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r = inspect.Diagnose(pki.Load(l, pki.Default()), inspect.Options{})
	if r.Role != string(pki.RoleControlPlane) || !r.HasCode("apiserver", inspect.CodeMissing) {
		t.Errorf("with kube-apiserver.yaml: role %q, apiserver %+v; want control-plane and missing", r.Role, r.Get("apiserver"))
	}
}
