package kubeletserving_test

import (
	"bytes"
	"context"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/csrwait"
	"github.com/certctl/certctl/pkg/kubeletserving"
	"github.com/certctl/certctl/pkg/pki"
	certv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
)

// filingKubelet, when "restarted", files the kubelet-serving CSR a kubelet with
// serverTLSBootstrap files for its addresses, before returning; then (deny) the test, playing
// another approver, denies it at once. It never serves anything.
type filingKubelet struct {
	t      *testing.T
	c      *cluster
	node   string
	ip     string
	client kubernetes.Interface
	deny   bool
}

func (k *filingKubelet) Restart(ctx context.Context) error {
	key, _ := pki.GenerateKey(pki.AlgECDSAP256)
	req, err := pki.CreateCSR(key, pki.Template{Subject: pkix.Name{CommonName: "system:node:" + k.node, Organization: []string{"system:nodes"}},
		IPAddresses: []net.IP{net.ParseIP(k.ip)}, DNSNames: []string{k.node}})
	if err != nil {
		return err
	}
	csr, err := k.client.CertificatesV1().CertificateSigningRequests().Create(ctx, &certv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "csr-"},
		Spec: certv1.CertificateSigningRequestSpec{Request: req, SignerName: certv1.KubeletServingSignerName,
			Usages: []certv1.KeyUsage{certv1.UsageDigitalSignature, certv1.UsageServerAuth}},
	}, metav1.CreateOptions{})
	if err != nil || !k.deny {
		return err
	}
	csr.Status.Conditions = append(csr.Status.Conditions, certv1.CertificateSigningRequestCondition{
		Type: certv1.CertificateDenied, Status: corev1.ConditionTrue, Reason: "OtherApproverDenies", Message: "denied by another approver"})
	_, err = k.c.admin.CertificatesV1().CertificateSigningRequests().UpdateApproval(ctx, csr.Name, csr, metav1.UpdateOptions{})
	return err
}

// enableNode is a node's files (a kubelet config.yaml) and its Node with an address.
func enableNode(t *testing.T, c *cluster, node, ip string) pki.Layout {
	t.Helper()
	c.addNode(t, node, addr(corev1.NodeInternalIP, ip), addr(corev1.NodeHostName, node))
	l := pki.NewLayout(pki.LayoutOptions{Root: c.dir, Home: "/root"})
	if err := os.MkdirAll(l.KubeletDir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n"
	if err := os.WriteFile(kubeletserving.ConfigPath(l), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return l
}

// TestEnableDeniedCSREndsAtOnce: the kubelet's CSR, denied by another approver before enable
// looks at it, ends enable at once (seconds, not the 2-minute timeout) with a
// *csrwait.RefusedError carrying the Denied condition; before, enable waited the timeout for
// a certificate that never comes.
func TestEnableDeniedCSREndsAtOnce(t *testing.T) {
	c := newCluster(t)
	const ip = "127.0.5.2"
	l := enableNode(t, c, "node-d", ip)
	k := &filingKubelet{t: t, c: c, node: "node-d", ip: ip, client: c.nodeClient(t, "node-d"), deny: true}
	var out bytes.Buffer
	start := time.Now()
	_, err := kubeletserving.Enable(context.Background(), kubeletserving.EnableOptions{
		Layout: l, NodeName: "node-d", Client: c.admin, Approve: true, Restart: k,
		ServingAddr: fmt.Sprintf("%s:%d", ip, testenv.FreePort(t, ip)), HealthzURL: fmt.Sprintf("http://%s:%d/healthz", ip, testenv.FreePort(t, ip)),
		Timeout: 2 * time.Minute, Out: &out,
	})
	took := time.Since(start)
	var refused *csrwait.RefusedError
	if !errors.As(err, &refused) || refused.Condition.Type != certv1.CertificateDenied || refused.Condition.Reason != "OtherApproverDenies" {
		t.Fatalf("enable: %v, want a csrwait.RefusedError with the Denied condition\n%s", err, out.String())
	}
	// The typed error is the proof that the refusal, not the timeout, ended the wait (a timeout
	// returns csrwait.ErrTimeout); the time is logged, a benchmark's business rather than a test's.
	t.Logf("a denied CSR: enable returned after %s (timeout 2m)", took.Round(time.Millisecond))
}

// TestEnableFailedCSREndsAtOnce: enable approves the kubelet's CSR, then its signer fails it
// (the test plays the signer: this control plane runs none): the wait for the kubelet to serve
// the signed certificate ends at once with the Failed condition, not after the timeout.
func TestEnableFailedCSREndsAtOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and kube-apiserver")
	}
	tr := testenv.KubeadmTree(t, testenv.TreeOptions{})
	cp := testenv.StartControlPlane(t, testenv.ControlPlaneOptions{PKIDir: tr.Layout.PKIDir, KubeconfigDir: tr.Layout.KubeconfigDir})
	caPEM, err := os.ReadFile(filepath.Join(tr.Layout.PKIDir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{cp: cp, admin: cp.Clientset(t), ca: pki.Load(tr.Layout, pki.Default()).Get("ca"), caPEM: caPEM, dir: tr.Root}
	const ip = "127.0.5.3"
	l := enableNode(t, c, "node-f", ip)
	k := &filingKubelet{t: t, c: c, node: "node-f", ip: ip, client: c.nodeClient(t, "node-f")}

	// The signer: once the CSR is approved, it fails it.
	failed := make(chan time.Time, 1)
	go func() {
		_ = wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			list, err := c.admin.CertificatesV1().CertificateSigningRequests().List(ctx, metav1.ListOptions{})
			if err != nil {
				return false, nil
			}
			for i := range list.Items {
				csr := &list.Items[i]
				if csr.Spec.Username != "system:node:node-f" || csrwait.Pending(csr) {
					continue
				}
				csr.Status.Conditions = append(csr.Status.Conditions, certv1.CertificateSigningRequestCondition{
					Type: certv1.CertificateFailed, Status: corev1.ConditionTrue, Reason: "SignerFails", Message: "the test's signer fails it"})
				at := time.Now()
				if _, err := c.admin.CertificatesV1().CertificateSigningRequests().UpdateStatus(ctx, csr, metav1.UpdateOptions{}); err != nil {
					return false, nil
				}
				failed <- at
				return true, nil
			}
			return false, nil
		})
	}()
	var out bytes.Buffer
	res, err := kubeletserving.Enable(context.Background(), kubeletserving.EnableOptions{
		Layout: l, NodeName: "node-f", Client: c.admin, Approve: true, Restart: k,
		ServingAddr: fmt.Sprintf("%s:%d", ip, testenv.FreePort(t, ip)), HealthzURL: fmt.Sprintf("http://%s:%d/healthz", ip, testenv.FreePort(t, ip)),
		Timeout: 2 * time.Minute, Out: &out,
	})
	returned := time.Now()
	var refused *csrwait.RefusedError
	if !errors.As(err, &refused) || refused.Condition.Type != certv1.CertificateFailed || refused.Condition.Reason != "SignerFails" {
		t.Fatalf("enable: %v, want a csrwait.RefusedError with the Failed condition\n%s", err, out.String())
	}
	if res.Decision == nil || res.Decision.Action != kubeletserving.ActionApproved {
		t.Errorf("enable did not approve the CSR first: %+v", res.Decision)
	}
	select {
	case at := <-failed:
		took := returned.Sub(at)
		t.Logf("a failed CSR: enable returned %s after the signer failed it (timeout 2m)", took.Round(time.Millisecond))
	case <-time.After(30 * time.Second):
		t.Fatal("enable returned a Failed condition the test's signer never reported setting")
	}
}
