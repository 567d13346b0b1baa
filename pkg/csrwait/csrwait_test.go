package csrwait_test

import (
	"context"
	"crypto/x509/pkix"
	"errors"
	"net/http"
	"path"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/csrwait"
	"github.com/certctl/certctl/pkg/pki"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// cluster is a real etcd + kube-apiserver + the controller-manager's CSR signer, on a tree
// made by the real kubeadm; it returns an admin client and the cluster CA.
func cluster(t *testing.T) (kubernetes.Interface, *pki.Item) {
	cs, ca, _ := clusterCP(t)
	return cs, ca
}

func clusterCP(t *testing.T) (kubernetes.Interface, *pki.Item, *testenv.ControlPlane) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts etcd, kube-apiserver and kube-controller-manager")
	}
	tr := testenv.KubeadmTree(t, testenv.TreeOptions{})
	cp := testenv.StartControlPlane(t, testenv.ControlPlaneOptions{PKIDir: tr.Layout.PKIDir, KubeconfigDir: tr.Layout.KubeconfigDir, CSRSigner: true})
	return cp.Clientset(t), pki.Load(tr.Layout, pki.Default()).Get("ca"), cp
}

func request(t *testing.T, prefix, signer string, subject pkix.Name, approve bool) csrwait.Request {
	t.Helper()
	key, err := pki.GenerateKey(pki.AlgECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	req, err := pki.CreateCSR(key, pki.Template{Subject: subject})
	if err != nil {
		t.Fatal(err)
	}
	r := csrwait.Request{NamePrefix: prefix, CSR: req, Key: key, Signer: signer,
		Usages: []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth}}
	if approve {
		r.Approval = certificatesv1.CertificateSigningRequestCondition{Reason: "CertctlTest", Message: "approved by the test"}
	}
	return r
}

// csrNamed waits (polling, with a deadline) until a CSR whose name starts with prefix exists.
func csrNamed(t *testing.T, cs kubernetes.Interface, prefix string) *certificatesv1.CertificateSigningRequest {
	t.Helper()
	var found *certificatesv1.CertificateSigningRequest
	if err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		list, err := cs.CertificatesV1().CertificateSigningRequests().List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		for i := range list.Items {
			if strings.HasPrefix(list.Items[i].Name, prefix) {
				found = &list.Items[i]
				return true, nil
			}
		}
		return false, nil
	}); err != nil {
		t.Fatalf("no CSR %s* within 30s", prefix)
	}
	return found
}

func deny(t *testing.T, cs kubernetes.Interface, c *certificatesv1.CertificateSigningRequest) {
	t.Helper()
	c.Status.Conditions = append(c.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
		Type: certificatesv1.CertificateDenied, Status: corev1.ConditionTrue, Reason: "TestDenies", Message: "denied by the test"})
	if _, err := cs.CertificatesV1().CertificateSigningRequests().UpdateApproval(context.Background(), c.Name, c, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("deny %s: %v", c.Name, err)
	}
}

// TestIssue: on a real apiserver and signer, an approved CSR comes back signed by the cluster
// CA and is deleted; a CSR that someone denies, or that its signer fails, ends the wait at once
// (seconds, not the 2-minute timeout) with a *RefusedError carrying that condition; a CSR
// nobody approves ends at the timeout with ErrTimeout.
func TestIssue(t *testing.T) {
	cs, ca := cluster(t)
	ctx := context.Background()
	csrs := cs.CertificatesV1().CertificateSigningRequests()

	t.Run("approved", func(t *testing.T) {
		certPEM, name, err := csrwait.Issue(ctx, cs, request(t, "test-ok-", certificatesv1.KubeAPIServerClientSignerName, pkix.Name{CommonName: "operator"}, true))
		if err != nil {
			t.Fatal(err)
		}
		c, err := pki.ParseCertificates(name, certPEM)
		if err != nil || c[0].CheckSignatureFrom(ca.Cert()) != nil || c[0].Subject.CommonName != "operator" {
			t.Fatalf("certificate %v: %v", c, err)
		}
		if _, err := csrs.Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("the CSR %s is left: %v", name, err)
		}
	})

	t.Run("denied ends the wait at once", func(t *testing.T) {
		r := request(t, "test-denied-", certificatesv1.KubeAPIServerClientSignerName, pkix.Name{CommonName: "operator"}, false)
		r.Timeout = 2 * time.Minute
		type result struct {
			err      error
			returned time.Time
		}
		done := make(chan result, 1)
		go func() {
			_, _, err := csrwait.Issue(ctx, cs, r)
			done <- result{err, time.Now()}
		}()
		c := csrNamed(t, cs, "test-denied-")
		denied := time.Now()
		deny(t, cs, c)
		var res result
		select {
		case res = <-done:
		case <-time.After(30 * time.Second):
			t.Fatal("Issue still waits 30s after the CSR was denied")
		}
		var refused *csrwait.RefusedError
		if !errors.As(res.err, &refused) || refused.CSR != c.Name || refused.Condition.Type != certificatesv1.CertificateDenied || refused.Condition.Reason != "TestDenies" {
			t.Fatalf("err %v, want a RefusedError with the Denied condition", res.err)
		}
		took := res.returned.Sub(denied)
		t.Logf("denied: Issue returned %s after the denial (timeout %s)", took.Round(time.Millisecond), r.Timeout)
		if took > 10*time.Second {
			t.Errorf("Issue returned %s after the denial", took)
		}
	})

	t.Run("failed by the signer ends the wait at once", func(t *testing.T) {
		// The kubelet client signer signs only system:node:<name> in system:nodes.
		r := request(t, "test-failed-", certificatesv1.KubeAPIServerClientKubeletSignerName, pkix.Name{CommonName: "operator"}, true)
		start := time.Now()
		_, name, err := csrwait.Issue(ctx, cs, r)
		took := time.Since(start)
		var refused *csrwait.RefusedError
		if !errors.As(err, &refused) || refused.CSR != name || refused.Condition.Type != certificatesv1.CertificateFailed {
			t.Fatalf("err %v, want a RefusedError with the Failed condition", err)
		}
		t.Logf("failed (%s): Issue returned after %s (timeout %s)", refused.Condition.Reason, took.Round(time.Millisecond), 2*time.Minute)
		if took > 20*time.Second {
			t.Errorf("Issue returned after %s", took)
		}
	})

	t.Run("nobody approves: timeout", func(t *testing.T) {
		r := request(t, "test-pending-", certificatesv1.KubeAPIServerClientSignerName, pkix.Name{CommonName: "operator"}, false)
		r.Timeout = 2 * time.Second
		_, name, err := csrwait.Issue(ctx, cs, r)
		if !errors.Is(err, csrwait.ErrTimeout) {
			t.Fatalf("err %v, want ErrTimeout", err)
		}
		if _, err := csrs.Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("the CSR %s is left: %v", name, err)
		}
	})
}

// TestUntilRefused: a watch on one CSR ends as soon as someone denies it, with its condition.
func TestUntilRefused(t *testing.T) {
	cs, _ := cluster(t)
	ctx := context.Background()
	r := request(t, "test-watched-", certificatesv1.KubeAPIServerClientSignerName, pkix.Name{CommonName: "operator"}, false)
	c, err := cs.CertificatesV1().CertificateSigningRequests().Create(ctx, &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{Name: "test-watched"},
		Spec:       certificatesv1.CertificateSigningRequestSpec{Request: r.CSR, SignerName: r.Signer, Usages: r.Usages},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- csrwait.UntilRefused(wctx, cs, c.Name) }()
	// Pending: the watch keeps waiting.
	select {
	case err := <-done:
		t.Fatalf("UntilRefused returned on a pending CSR: %v", err)
	case <-time.After(time.Second):
	}
	denied := time.Now()
	deny(t, cs, c)
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("UntilRefused still waits 30s after the denial")
	}
	var refused *csrwait.RefusedError
	if !errors.As(err, &refused) || refused.Condition.Type != certificatesv1.CertificateDenied {
		t.Fatalf("err %v, want a RefusedError with the Denied condition", err)
	}
	t.Logf("UntilRefused returned %s after the denial", time.Since(denied).Round(time.Millisecond))
}

// TestIssueWithoutWatchPermission: a user who may file CSRs but not list or watch them gets
// the apiserver's Forbidden at once, not a timeout (client-go's wait would retry until then).
func TestIssueWithoutWatchPermission(t *testing.T) {
	admin, _, cp := clusterCP(t)
	ctx := context.Background()
	if _, err := admin.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "csr-file-only"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{"certificates.k8s.io"}, Resources: []string{"certificatesigningrequests"}, Verbs: []string{"create", "get", "delete"}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "csr-file-only"},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "csr-file-only"},
		Subjects: []rbacv1.Subject{{Kind: "User", Name: "filer"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", cp.AdminKubeconfig(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "filer"}
	filer, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := request(t, "test-filer-", certificatesv1.KubeAPIServerClientSignerName, pkix.Name{CommonName: "filer"}, false)
	start := time.Now()
	_, name, err := csrwait.Issue(ctx, filer, r)
	if !apierrors.IsForbidden(err) || time.Since(start) > 20*time.Second {
		t.Fatalf("err %v after %s, want Forbidden at once", err, time.Since(start))
	}
	if _, err := admin.CertificatesV1().CertificateSigningRequests().Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the CSR %s is left: %v", name, err)
	}
}

// conflictOnce is a transport that, before the first approval it carries, changes the CSR
// through another client: the approval then carries a stale resourceVersion and the real
// apiserver answers 409 Conflict, as on the lab when something wrote the CSR between certctl's
// read and its approval.
type conflictOnce struct {
	next  http.RoundTripper
	other kubernetes.Interface
	done  atomic.Bool
}

func (c *conflictOnce) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodPut && strings.HasSuffix(req.URL.Path, "/approval") && c.done.CompareAndSwap(false, true) {
		name := path.Base(path.Dir(req.URL.Path))
		patch := []byte(`{"metadata":{"labels":{"touched-by":"test"}}}`)
		if _, err := c.other.CertificatesV1().CertificateSigningRequests().Patch(req.Context(), name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			return nil, err
		}
	}
	return c.next.RoundTrip(req)
}

// TestIssueApprovalConflict: the CSR changes between Issue's read and its approval (a real 409
// from a real apiserver); Issue reads it again, approves it and gets the signed certificate.
func TestIssueApprovalConflict(t *testing.T) {
	admin, ca, cp := clusterCP(t)
	rc := cp.RESTConfig(t)
	ct := &conflictOnce{other: admin}
	rc.Wrap(func(rt http.RoundTripper) http.RoundTripper { ct.next = rt; return ct })
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, name, err := csrwait.Issue(context.Background(), cs, request(t, "test-conflict-", certificatesv1.KubeAPIServerClientSignerName, pkix.Name{CommonName: "operator"}, true))
	if err != nil {
		t.Fatalf("Issue with the CSR changed before its approval: %v", err)
	}
	if !ct.done.Load() {
		t.Fatal("the approval never went through the transport that makes the conflict")
	}
	c, err := pki.ParseCertificates(name, certPEM)
	if err != nil || c[0].CheckSignatureFrom(ca.Cert()) != nil {
		t.Fatalf("certificate %v: %v", c, err)
	}
}
