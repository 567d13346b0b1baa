package cluster

import (
	"bytes"
	"context"
	"crypto/x509"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/pki"
)

// TestSettleAuthCA, on a real kube-apiserver: what it publishes in
// kube-system/extension-apiserver-authentication (client-ca-file: its --client-ca-file).
// settleAuthCA waits while the new CA is not published, accepts old + new, takes the new CA
// out after trust's rollback, and never empties the key. The apiserver puts back a CA it
// verifies with when someone takes it out: why certctl prunes only what no apiserver trusts.
func TestSettleAuthCA(t *testing.T) {
	tr := testenv.KubeadmTree(t, testenv.TreeOptions{})
	cp := testenv.StartControlPlane(t, testenv.ControlPlaneOptions{PKIDir: tr.Layout.PKIDir, KubeconfigDir: tr.Layout.KubeconfigDir})
	cs := cp.Clientset(t)
	ctx := context.Background()
	caPEM, err := os.ReadFile(filepath.Join(tr.Layout.PKIDir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	old := pki.CertificatesIn(caPEM)[0]
	other, err := pki.NewCA(mustKey(t), old, old.NotBefore, old.NotAfter)
	if err != nil {
		t.Fatal(err)
	}
	published := func() []*x509.Certificate {
		t.Helper()
		cm, err := cs.CoreV1().ConfigMaps("kube-system").Get(ctx, AuthConfigMap, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return pki.CertificatesIn([]byte(cm.Data[authClientCA]))
	}
	waitFor := func(what string, cond func([]*x509.Certificate) bool) {
		t.Helper()
		if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			cm, err := cs.CoreV1().ConfigMaps("kube-system").Get(ctx, AuthConfigMap, metav1.GetOptions{})
			return err == nil && cond(pki.CertificatesIn([]byte(cm.Data[authClientCA]))), nil
		}); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	only := func(c *x509.Certificate) func([]*x509.Certificate) bool {
		return func(in []*x509.Certificate) bool { return len(in) == 1 && in[0].Equal(c) }
	}
	waitFor("the apiserver publishes its client CA", only(old))

	// Trust not applied anywhere: the new CA is not published, settle waits and says so.
	if _, err := settleAuthCA(ctx, cs, authClientCA, other, authWant("trust", false), 2*time.Second); err == nil || !strings.Contains(err.Error(), "not yet the new one") {
		t.Fatalf("settle before the new CA is published: %v", err)
	}
	// A drop before the new CA is published never leaves the key empty.
	if _, err := settleAuthCA(ctx, cs, authClientCA, other, authWant("drop", false), 2*time.Second); err == nil {
		t.Fatalf("settle (drop) with the new CA unpublished succeeded")
	}
	if got := published(); !only(old)(got) {
		t.Fatalf("a failed settle changed %s: %d CA(s)", authClientCA, len(got))
	}

	// As after trust on an apiserver: old + new published.
	setAuthCA(t, cs, old, other)
	line, err := settleAuthCA(ctx, cs, authClientCA, other, authWant("trust", false), 30*time.Second)
	if err != nil || line != "client-ca-file: old + new" {
		t.Fatalf("settle after trust: %q %v", line, err)
	}
	// Trust rolled back: no apiserver verifies with the new CA; certctl takes it out.
	line, err = settleAuthCA(ctx, cs, authClientCA, other, authWant("trust", true), 30*time.Second)
	if err != nil || line != "client-ca-file: the old CA alone again" {
		t.Fatalf("settle after trust's rollback: %q %v", line, err)
	}
	if got := published(); !only(old)(got) {
		t.Fatalf("after trust's rollback %s holds %d CA(s), want the old alone", authClientCA, len(got))
	}

	// The apiserver adds back what it verifies with.
	setAuthCA(t, cs, other)
	waitFor("the apiserver puts its client CA back", func(in []*x509.Certificate) bool {
		return slices.ContainsFunc(in, old.Equal) && slices.ContainsFunc(in, other.Equal)
	})
}

// setAuthCA writes client-ca-file of extension-apiserver-authentication.
func setAuthCA(t *testing.T, cs kubernetes.Interface, cas ...*x509.Certificate) {
	t.Helper()
	ctx := context.Background()
	cm, err := cs.CoreV1().ConfigMaps("kube-system").Get(ctx, AuthConfigMap, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data[authClientCA] = string(pki.EncodeCertificates(cas...))
	if _, err := cs.CoreV1().ConfigMaps("kube-system").Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestNewCAsFromTheSecret, on a real kube-apiserver: a phase after trust takes the new CAs from
// the rotation's Secret, and refuses other CAs than the Secret holds (one rotation at a time),
// naming the rotation in progress; without the Secret only trust may start. The Secret is in
// the Jobs' namespace (--namespace), the one their pods can mount: trust makes it there, and
// the later phases read it from there (before, always kube-system: with another --namespace
// the trust Jobs' pods never started).
func TestNewCAsFromTheSecret(t *testing.T) {
	tr := testenv.KubeadmTree(t, testenv.TreeOptions{})
	cp := testenv.StartControlPlane(t, testenv.ControlPlaneOptions{PKIDir: tr.Layout.PKIDir, KubeconfigDir: tr.Layout.KubeconfigDir})
	cs := cp.Clientset(t)
	ctx := context.Background()
	old := testenv.CertFile(t, filepath.Join(tr.Layout.PKIDir, "ca.crt"))
	const ns = "certctl-jobs"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	run := Runner{Progress: io.Discard, Namespace: ns}
	o := &CARotateOptions{Phase: "issue", Runner: run}
	if _, _, err := o.newCAs(ctx, cs, []string{"ca"}, old, nil); err == nil || !strings.Contains(err.Error(), "starts with --phase trust") {
		t.Fatalf("issue without the Secret: %v", err)
	}
	// Trust makes the Secret in the Jobs' namespace, not in kube-system.
	trust := &CARotateOptions{Phase: "trust", Runner: run, Days: 30}
	made, madeSec, err := trust.newCAs(ctx, cs, []string{"ca"}, old, nil)
	if err != nil {
		t.Fatal(err)
	}
	if madeSec == nil || madeSec.ResourceVersion == "" || !bytes.Equal(madeSec.Data["ca.crt"], pki.EncodeCertificates(made["ca"])) {
		t.Fatalf("trust returned %v, want the Secret it made (the new CA in it, a resource version)", madeSec)
	}
	if sec, err := cs.CoreV1().Secrets(ns).Get(ctx, CARotationSecret, metav1.GetOptions{}); err != nil || !bytes.Equal(sec.Data["ca.crt"], pki.EncodeCertificates(made["ca"])) {
		t.Fatalf("trust with --namespace %s: the Secret there: %v", ns, err)
	}
	if _, err := cs.CoreV1().Secrets("kube-system").Get(ctx, CARotationSecret, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("trust with --namespace %s made a Secret in kube-system (%v)", ns, err)
	}
	if err := cs.CoreV1().Secrets(ns).Delete(ctx, CARotationSecret, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	newCA, err := pki.NewCA(mustKey(t), old, old.NotBefore, old.NotAfter)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: CARotationSecret, Namespace: ns},
		Data:       map[string][]byte{"ca.crt": pki.EncodeCertificates(newCA), "ca.key": []byte("not read here")},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	got, gotSec, err := o.newCAs(ctx, cs, []string{"ca"}, old, nil)
	if err != nil || len(got) != 1 || !got["ca"].Equal(newCA) {
		t.Fatalf("issue of ca with the Secret: %v %v", got, err)
	}
	if gotSec == nil || string(gotSec.Data["ca.key"]) != "not read here" {
		t.Fatalf("issue of ca returned %v, want the Secret it read", gotSec)
	}
	for _, cas := range [][]string{{"etcd-ca"}, {"ca", "front-proxy-ca"}} {
		if _, _, err := o.newCAs(ctx, cs, cas, old, nil); err == nil || !strings.Contains(err.Error(), "holds the rotation of ca") {
			t.Errorf("issue of %v while ca's rotation is in progress: %v", cas, err)
		}
	}
}
