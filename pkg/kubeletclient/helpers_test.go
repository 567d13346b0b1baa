package kubeletclient_test

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	coordv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/kubeletclient"
	"github.com/certctl/certctl/pkg/pki"
)

// joinedNode makes a kubeadm tree (the real kubeadm) look like a node after kubeadm's
// kubelet-finalize phase: kubelet.conf's user reads /var/lib/kubelet/pki/kubelet-client-current.pem,
// an absolute link (as the kubelet writes it) to kubelet-client-<time>.pem signed by the
// cluster CA for system:node:<node>, valid from notBefore to notAfter. A zero notAfter
// leaves the certificate out (missing).
func joinedNode(t *testing.T, tr *testenv.Tree, node string, notBefore, notAfter time.Time) {
	t.Helper()
	l := tr.Layout
	dir := kubeletclient.PKIDir(l)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if !notAfter.IsZero() {
		ca := pki.Load(l, pki.Default()).Get("ca")
		key, _ := pki.GenerateKey(pki.AlgECDSAP256)
		cert, err := pki.Sign(ca.Cert(), ca.Key, key, pki.Template{
			Subject:  pkix.Name{CommonName: "system:node:" + node, Organization: []string{"system:nodes"}},
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			NotBefore: notBefore, NotAfter: notAfter})
		if err != nil {
			t.Fatal(err)
		}
		keyPEM, _ := pki.EncodePrivateKey(key)
		name := "kubelet-client-" + notBefore.UTC().Format("2006-01-02-15-04-05") + ".pem"
		if err := os.WriteFile(filepath.Join(dir, name), append(pki.EncodeCertificates(cert), keyPEM...), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("/var/lib/kubelet/pki/"+name, kubeletclient.CurrentPath(l)); err != nil {
			t.Fatal(err)
		}
	}
	conf := kubeletclient.KubeletConfPath(l)
	cfg, err := clientcmd.LoadFromFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range cfg.AuthInfos {
		*u = clientcmdapi.AuthInfo{ClientCertificate: "/var/lib/kubelet/pki/kubelet-client-current.pem", ClientKey: "/var/lib/kubelet/pki/kubelet-client-current.pem"}
	}
	if err := clientcmd.WriteToFile(*cfg, conf); err != nil {
		t.Fatal(err)
	}
	// A kubelet config, as on every node: it must not change.
	if err := os.WriteFile(filepath.Join(l.KubeletDir, "config.yaml"), []byte("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nrotateCertificates: true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// snapshot hashes every regular file under root except those keep says may change.
func snapshot(t *testing.T, root string, keep func(rel string) bool) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if d.IsDir() || keep(rel) {
			return nil
		}
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		if info.Mode()&fs.ModeSymlink != 0 {
			target, _ := os.Readlink(p)
			out[rel] = "link:" + target
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		out[rel] = info.Mode().String() + hex.EncodeToString(sum[:])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// kubeletFiles are the files kubelet-client may change (plus certctl's own backups/state).
func kubeletFiles(rel string) bool {
	return strings.HasPrefix(rel, "var/lib/kubelet/pki/") || rel == "etc/kubernetes/kubelet.conf" || rel == "etc/kubernetes/bootstrap-kubelet.conf" ||
		strings.HasPrefix(rel, "etc/kubernetes/certctl-backups/") || strings.HasPrefix(rel, "etc/kubernetes/.certctl/")
}

func sameSnapshots(t *testing.T, before, after map[string]string) {
	t.Helper()
	for k, v := range before {
		if after[k] != v {
			t.Errorf("%s changed (or disappeared): only kubelet files may change", k)
		}
	}
	for k := range after {
		if _, ok := before[k]; !ok {
			t.Errorf("%s appeared: only kubelet files may change", k)
		}
	}
}

// whoAmI asks the apiserver who cs is (SelfSubjectReview).
func whoAmI(ctx context.Context, cs kubernetes.Interface) (authnv1.UserInfo, error) {
	r, err := cs.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authnv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		return authnv1.UserInfo{}, err
	}
	return r.Status.UserInfo, nil
}

// fakeKubeletStatus is what a kubelet does once it authenticates: register its Node, report
// it Ready and renew its Lease, with its own credentials (NodeRestriction lets it touch only
// its own objects).
func reportReady(ctx context.Context, cs kubernetes.Interface, node string) error {
	n, err := cs.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		n, err = cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}}, metav1.CreateOptions{})
	}
	if err != nil {
		return err
	}
	now := metav1.Now()
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", Message: "kubelet is posting ready status", LastHeartbeatTime: now, LastTransitionTime: now}}
	if _, err := cs.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		return err
	}
	dur := int32(40)
	_, err = cs.CoordinationV1().Leases(corev1.NamespaceNodeLease).Create(ctx, &coordv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: node},
		Spec: coordv1.LeaseSpec{HolderIdentity: &node, LeaseDurationSeconds: &dur, RenewTime: &metav1.MicroTime{Time: time.Now()}}}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		err = nil
	}
	return err
}

// restartFunc is a kubelet.Restarter calling f: what the "restarted kubelet" does in a test.
type restartFunc func(ctx context.Context) error

func (f restartFunc) Restart(ctx context.Context) error { return f(ctx) }

func checkNodeCert(t *testing.T, tr *testenv.Tree, c *x509.Certificate, node string) {
	t.Helper()
	caPEM, err := os.ReadFile(filepath.Join(tr.Layout.PKIDir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	if _, err := c.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("new certificate does not verify against ca.crt as a client certificate: %v", err)
	}
	if c.Subject.CommonName != "system:node:"+node || !slices.Equal(c.Subject.Organization, []string{"system:nodes"}) {
		t.Errorf("subject %v, want CN system:node:%s O [system:nodes]", c.Subject, node)
	}
}
