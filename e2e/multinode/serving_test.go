package multinode

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/certctl/certctl/internal/multilab"
)

// A machine that joins after the approver is in place.
const (
	lateNode = "worker3"
	lateIP   = "10.2.1.156"
)

const approverName = "certctl-kubelet-serving-approver"

// TestKubeletServingApproverInCluster is issue 13's in-cluster approver on the lab: `kubelet-serving
// enable --cluster --install-approver` on cp1 installs the approver (two replicas, leader
// election); every node's kubelet is switched to serverTLSBootstrap by `kubelet-serving enable`
// on the node and gets its certificate approved; a machine that joins later gets its serving
// certificate approved with no command run (CSR to approved under 10 s); a strict client that
// verifies against the cluster CA (metrics-server without --kubelet-insecure-tls) reaches every
// kubelet; a CSR naming another node's IP is denied with its reason; killing the leader hands
// over to the other replica, which approves the next CSR; /metrics counts the decisions.
func TestKubeletServingApproverInCluster(t *testing.T) {
	nodes := requireLab(t)
	roots := caPool(t)
	cs := clientset(t)
	ctx := context.Background()
	cp1 := nodes[0]

	r := certctlOn(t, cp1, "kubelet-serving", "enable", "--approve", "--cluster", "--install-approver", "--image", multilab.Image)
	if r.Code != 0 {
		t.Fatalf("kubelet-serving enable --cluster --install-approver on %s: %s", cp1.Name, r)
	}
	var last string
	if err := wait.PollUntilContextTimeout(ctx, time.Second, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		d, err := cs.AppsV1().Deployments("kube-system").Get(ctx, approverName, metav1.GetOptions{})
		if err != nil {
			last = err.Error()
			return false, nil
		}
		last = fmt.Sprintf("%d of %d replicas available", d.Status.AvailableReplicas, *d.Spec.Replicas)
		return d.Status.AvailableReplicas == 2, nil
	}); err != nil {
		t.Fatalf("the approver Deployment is not available: %s", last)
	}
	leader := waitLeader(t, cs, "")
	t.Logf("approver up, leader %s", leader)

	// Every node's kubelet onto serverTLSBootstrap; the approver approves what the nodes
	// without admin credentials file.
	for _, n := range nodes {
		if _, err := tlsDialVerified(ctx, n.IP+":10250", roots, n.IP); err == nil {
			continue
		}
		if r := certctlOn(t, n, "kubelet-serving", "enable"); r.Code != 0 {
			t.Fatalf("kubelet-serving enable on %s: %s", n.Name, r)
		}
	}

	// A machine joins later: its serving CSR is approved with no command run.
	endpoint := controlPlaneEndpoint(t, cs)
	lab(t, "add-node", lateNode, lateIP)
	t.Cleanup(func() {
		if r, err := multilab.Lab(context.Background(), "remove-node", lateNode); err != nil || r.Code != 0 {
			t.Errorf("remove-node %s: %v %s", lateNode, err, r)
		}
		_ = cs.CoreV1().Nodes().Delete(context.Background(), lateNode, metav1.DeleteOptions{})
	})
	lab(t, "join", lateNode, endpoint, "--discovery-timeout", "2m")
	waitNodeReady(t, cs, lateNode, 3*time.Minute)
	csr := waitCSRDecided(t, cs, "system:node:"+lateNode, 2*time.Minute)
	took := decided(csr).Sub(csr.CreationTimestamp.Time)
	t.Logf("%s's serving CSR %s: %s %s after it was filed", lateNode, csr.Name, decision(csr), took)
	if decision(csr) != certificatesv1.CertificateApproved {
		t.Fatalf("%s's serving CSR was not approved: %+v", lateNode, csr.Status.Conditions)
	}
	if took > 10*time.Second {
		t.Errorf("CSR to approved took %s (target under 10 s)", took)
	}

	// A strict client reaches every kubelet, the late one included.
	all := append(nodes, multilab.Node{Name: lateNode, IP: lateIP})
	for _, n := range all {
		err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
			c, err := tlsDialVerified(ctx, n.IP+":10250", roots, n.IP)
			if err != nil {
				last = err.Error()
				return false, nil
			}
			return c.Subject.CommonName == "system:node:"+n.Name, nil
		})
		if err != nil {
			t.Errorf("a verifying client cannot reach %s's kubelet: %s", n.Name, last)
		}
	}

	// A CSR from the late node naming cp1's IP: denied, with the reason.
	bad := fileServingCSR(t, lateNode, cp1.IP)
	got := waitCSRDecided(t, cs, "", time.Minute, bad)
	reason := conditionMessage(got)
	t.Logf("CSR for %s's IP from %s: %s: %s", cp1.Name, lateNode, decision(got), reason)
	if decision(got) != certificatesv1.CertificateDenied || !strings.Contains(reason, cp1.IP) {
		t.Errorf("a CSR naming another node's IP: want denied with a reason naming %s, got %s %q", cp1.IP, decision(got), reason)
	}

	// The leader killed: the other replica takes over and approves the next CSR.
	start := time.Now()
	zero := int64(0)
	if err := cs.CoreV1().Pods("kube-system").Delete(ctx, leader, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	next := waitLeader(t, cs, leader)
	handover := time.Since(start)
	good := fileServingCSR(t, lateNode, lateIP)
	got = waitCSRDecided(t, cs, "", time.Minute, good)
	t.Logf("leader %s killed: %s leads after %s; the next CSR %s", leader, next, handover.Round(100*time.Millisecond), decision(got))
	if decision(got) != certificatesv1.CertificateApproved {
		t.Errorf("after the hand-over, a valid CSR was not approved: %+v", got.Status.Conditions)
	}

	// /metrics of the new leader counts its decisions.
	pod, err := cs.CoreV1().Pods("kube-system").Get(ctx, next, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	body := httpGet(t, "http://"+net.JoinHostPort(pod.Status.PodIP, "9402")+"/metrics")
	if !strings.Contains(body, "approved") {
		t.Errorf("the leader's /metrics has no approval count:\n%s", body)
	}
}

// waitLeader waits for the approver's Lease to name a live pod other than not, and returns it.
func waitLeader(t *testing.T, cs kubernetes.Interface, not string) string {
	t.Helper()
	var holder string
	err := wait.PollUntilContextTimeout(context.Background(), 250*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		l, err := cs.CoordinationV1().Leases("kube-system").Get(ctx, approverName, metav1.GetOptions{})
		if err != nil || l.Spec.HolderIdentity == nil {
			return false, nil
		}
		holder = *l.Spec.HolderIdentity
		if holder == "" || holder == not {
			return false, nil
		}
		p, err := cs.CoreV1().Pods("kube-system").Get(ctx, holder, metav1.GetOptions{})
		return err == nil && p.Status.Phase == corev1.PodRunning, nil
	})
	if err != nil {
		t.Fatalf("no approver replica other than %q leads (lease holder %q)", not, holder)
	}
	return holder
}

// fileServingCSR files a kubelet-serving CSR as the node's kubelet would (impersonating
// system:node:NODE) for the IP given, and returns its name.
func fileServingCSR(t *testing.T, node, ip string) string {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", multilab.AdminKubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:node:" + node, Groups: []string{"system:nodes", "system:authenticated"}}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:     pkix.Name{CommonName: "system:node:" + node, Organization: []string{"system:nodes"}},
		IPAddresses: []net.IP{net.ParseIP(ip)},
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := cs.CertificatesV1().CertificateSigningRequests().Create(context.Background(), &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "e2e-serving-" + node + "-"},
		Spec: certificatesv1.CertificateSigningRequestSpec{
			Request:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
			SignerName: "kubernetes.io/kubelet-serving",
			Usages:     []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = clientset(t).CertificatesV1().CertificateSigningRequests().Delete(context.Background(), c.Name, metav1.DeleteOptions{})
	})
	return c.Name
}

// waitCSRDecided waits until a kubelet-serving CSR (the one named, or the newest of username)
// is approved or denied.
func waitCSRDecided(t *testing.T, cs kubernetes.Interface, username string, timeout time.Duration, name ...string) *certificatesv1.CertificateSigningRequest {
	t.Helper()
	var found *certificatesv1.CertificateSigningRequest
	err := wait.PollUntilContextTimeout(context.Background(), 250*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		list, err := cs.CertificatesV1().CertificateSigningRequests().List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		found = nil
		for i := range list.Items {
			c := &list.Items[i]
			if c.Spec.SignerName != "kubernetes.io/kubelet-serving" {
				continue
			}
			if (len(name) > 0 && c.Name == name[0]) || (len(name) == 0 && c.Spec.Username == username &&
				(found == nil || c.CreationTimestamp.After(found.CreationTimestamp.Time))) {
				found = c
			}
		}
		return found != nil && decision(found) != "", nil
	})
	if err != nil {
		t.Fatalf("no decision on the kubelet-serving CSR of %s %v within %s (last seen %+v)", username, name, timeout, found)
	}
	return found
}

func decision(c *certificatesv1.CertificateSigningRequest) certificatesv1.RequestConditionType {
	for _, cond := range c.Status.Conditions {
		if cond.Type == certificatesv1.CertificateApproved || cond.Type == certificatesv1.CertificateDenied {
			return cond.Type
		}
	}
	return ""
}

func decided(c *certificatesv1.CertificateSigningRequest) time.Time {
	for _, cond := range c.Status.Conditions {
		if cond.Type == certificatesv1.CertificateApproved || cond.Type == certificatesv1.CertificateDenied {
			return cond.LastUpdateTime.Time
		}
	}
	return time.Time{}
}

func conditionMessage(c *certificatesv1.CertificateSigningRequest) string {
	for _, cond := range c.Status.Conditions {
		if cond.Type == certificatesv1.CertificateApproved || cond.Type == certificatesv1.CertificateDenied {
			return cond.Reason + ": " + cond.Message
		}
	}
	return ""
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	var body string
	var last error
	err := wait.PollUntilContextTimeout(context.Background(), 500*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := (&http.Client{Timeout: 3 * time.Second}).Do(req)
		if err != nil {
			last = err
			return false, nil
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		body, last = string(b), err
		return err == nil && resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		t.Fatalf("GET %s: %v", url, last)
	}
	return body
}
