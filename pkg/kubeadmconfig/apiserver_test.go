package kubeadmconfig_test

import (
	"context"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/kubeadmconfig"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// cluster is a kubeadm tree with apiServer.certSANs [10.2.0.100], a real etcd +
// kube-apiserver on it, and kubeadm-config uploaded by the real kubeadm.
func cluster(t *testing.T) (*testenv.Tree, *testenv.ControlPlane, kubernetes.Interface) {
	t.Helper()
	tr := testenv.KubeadmTree(t, testenv.TreeOptions{CertSANs: []string{"10.2.0.100"}})
	cp := testenv.StartControlPlane(t, testenv.ControlPlaneOptions{PKIDir: tr.Layout.PKIDir, KubeconfigDir: tr.Layout.KubeconfigDir})
	tr.UploadConfig(t, cp)
	return tr, cp, cp.Clientset(t)
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

func sans(c *x509.Certificate) []string {
	out := slices.Clone(c.DNSNames)
	for _, ip := range c.IPAddresses {
		out = append(out, ip.String())
	}
	return out
}

// TestApplyKubeadmKeepsSAN adds 10.2.1.139 to the kubeadm-config that the real kubeadm
// uploaded, reads it back, and has the real kubeadm make the apiserver certificate from it:
// the certificate covers 10.2.1.139 and every SAN the old one had.
func TestApplyKubeadmKeepsSAN(t *testing.T) {
	tr, _, cs := cluster(t)
	before, rv0, err := kubeadmconfig.Read(ctx(t), cs)
	if err != nil {
		t.Fatal(err)
	}
	if got := list(t, before, kubeadmconfig.APIServerSANs); strings.Join(got, ",") != "10.2.0.100" {
		t.Fatalf("kubeadm uploaded certSANs %v, want [10.2.0.100]:\n%s", got, before)
	}
	res, err := kubeadmconfig.Apply(ctx(t), cs, []kubeadmconfig.Edit{{Field: kubeadmconfig.APIServerSANs, SANs: []string{"10.2.1.139"}}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Attempts != 1 || len(res.Added) != 1 || strings.Join(res.Added[0].SANs, ",") != "10.2.1.139" || res.ResourceVersion == rv0 {
		t.Fatalf("Apply = %+v (resourceVersion before %s)", res, rv0)
	}
	after, rv1, err := kubeadmconfig.Read(ctx(t), cs)
	if err != nil {
		t.Fatal(err)
	}
	if got := list(t, after, kubeadmconfig.APIServerSANs); strings.Join(got, ",") != "10.2.0.100,10.2.1.139" {
		t.Fatalf("certSANs after Apply %v, want [10.2.0.100 10.2.1.139]:\n%s", got, after)
	}
	if rv1 != res.ResourceVersion {
		t.Errorf("resourceVersion %s, Apply said %s", rv1, res.ResourceVersion)
	}
	// Everything but the list is as kubeadm wrote it.
	var b, a map[string]any
	if err := yaml2map(before, &b); err != nil {
		t.Fatal(err)
	}
	if err := yaml2map(after, &a); err != nil {
		t.Fatal(err)
	}
	delete(b["apiServer"].(map[string]any), "certSANs")
	delete(a["apiServer"].(map[string]any), "certSANs")
	if !equalYAML(a, b) {
		t.Errorf("other fields changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	// Idempotent: a second run writes nothing.
	res2, err := kubeadmconfig.Apply(ctx(t), cs, []kubeadmconfig.Edit{{Field: kubeadmconfig.APIServerSANs, SANs: []string{"10.2.1.139"}}})
	if err != nil || len(res2.Added) != 0 || res2.ResourceVersion != rv1 {
		t.Errorf("second Apply = %+v, %v; want nothing written (resourceVersion %s)", res2, err, rv1)
	}

	// What the next `kubeadm init phase certs apiserver --config` makes of it.
	pkiDir := tr.CertsFromConfig(t, after, "apiserver")
	made := testenv.CertFile(t, filepath.Join(pkiDir, "apiserver.crt"))
	old := testenv.CertFile(t, filepath.Join(tr.Layout.PKIDir, "apiserver.crt"))
	for _, s := range append(sans(old), "10.2.1.139") {
		if !slices.Contains(sans(made), s) {
			t.Errorf("kubeadm's apiserver.crt from the edited config lacks %s: it has %v", s, sans(made))
		}
	}
	if !slices.ContainsFunc(made.IPAddresses, func(ip net.IP) bool { return ip.Equal(net.ParseIP("10.2.1.139")) }) {
		t.Errorf("10.2.1.139 is not an IP SAN of %v", made.IPAddresses)
	}
}

// conflictOnce makes the first PUT to kubeadm-config lose a race: just before it reaches the
// API server, another writer (another node's certctl, kubeadm upgrade) updates the ConfigMap.
type conflictOnce struct {
	rt    http.RoundTripper
	other func() error
	once  sync.Once
	err   error
}

func (c *conflictOnce) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, "/configmaps/"+kubeadmconfig.Name) {
		c.once.Do(func() { c.err = c.other() })
	}
	return c.rt.RoundTrip(r)
}

// TestApplyConflict: the ConfigMap changes between Apply's read and its write. The write is
// refused by the API server (409), Apply reads again and writes both changes.
func TestApplyConflict(t *testing.T) {
	_, cp, cs := cluster(t)
	rc, err := clientcmd.BuildConfigFromFlags("", cp.AdminKubeconfig(t))
	if err != nil {
		t.Fatal(err)
	}
	cc := &conflictOnce{other: func() error {
		cm, err := cs.CoreV1().ConfigMaps(kubeadmconfig.Namespace).Get(context.Background(), kubeadmconfig.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		doc, _, err := kubeadmconfig.AddSANs(cm.Data[kubeadmconfig.Key], kubeadmconfig.APIServerSANs, []string{"10.2.0.200"})
		if err != nil {
			return err
		}
		cm.Data[kubeadmconfig.Key] = doc
		_, err = cs.CoreV1().ConfigMaps(kubeadmconfig.Namespace).Update(context.Background(), cm, metav1.UpdateOptions{})
		return err
	}}
	rc.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { cc.rt = rt; return cc }
	racing, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	res, err := kubeadmconfig.Apply(ctx(t), racing, []kubeadmconfig.Edit{{Field: kubeadmconfig.APIServerSANs, SANs: []string{"10.2.1.139"}}})
	if cc.err != nil {
		t.Fatalf("the concurrent writer failed: %v", cc.err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if res.Attempts != 2 {
		t.Errorf("Apply took %d attempts, want 2 (one conflict)", res.Attempts)
	}
	doc, _, err := kubeadmconfig.Read(ctx(t), cs)
	if err != nil {
		t.Fatal(err)
	}
	if got := list(t, doc, kubeadmconfig.APIServerSANs); strings.Join(got, ",") != "10.2.0.100,10.2.0.200,10.2.1.139" {
		t.Errorf("certSANs %v: the concurrent change or ours was lost", got)
	}
}

// TestNotKubeadm: a cluster without kubeadm-config is a clear error, and nothing is created.
func TestNotKubeadm(t *testing.T) {
	tr := testenv.KubeadmTree(t, testenv.TreeOptions{})
	cp := testenv.StartControlPlane(t, testenv.ControlPlaneOptions{PKIDir: tr.Layout.PKIDir, KubeconfigDir: tr.Layout.KubeconfigDir})
	cs := cp.Clientset(t)
	_, err := kubeadmconfig.Apply(ctx(t), cs, []kubeadmconfig.Edit{{Field: kubeadmconfig.APIServerSANs, SANs: []string{"10.2.1.139"}}})
	if !errors.Is(err, kubeadmconfig.ErrNotFound) {
		t.Fatalf("err %v, want ErrNotFound", err)
	}
	if _, _, err := kubeadmconfig.Read(ctx(t), cs); !errors.Is(err, kubeadmconfig.ErrNotFound) {
		t.Errorf("Apply created something: Read err %v", err)
	}
}

// TestKubeadmReadsEditedDoc: the real kubeadm accepts what AddSANs writes (yaml.v3's
// indentation, comments kept) and makes an apiserver certificate with the old and new SANs.
func TestKubeadmReadsEditedDoc(t *testing.T) {
	tr := testenv.KubeadmTree(t, testenv.TreeOptions{})
	doc, added, err := kubeadmconfig.AddSANs(kubeadmDoc, kubeadmconfig.APIServerSANs, []string{"10.2.1.139", "lb.example.com"})
	if err != nil || len(added) != 2 {
		t.Fatalf("AddSANs: %v, added %v", err, added)
	}
	made := testenv.CertFile(t, filepath.Join(tr.CertsFromConfig(t, doc, "apiserver"), "apiserver.crt"))
	for _, s := range []string{"10.2.0.100", "10.2.1.139", "lb.example.com", "kubernetes.default.svc", "10.96.0.1"} {
		if !slices.Contains(sans(made), s) {
			t.Errorf("kubeadm's apiserver.crt lacks %s: %v", s, sans(made))
		}
	}
}
