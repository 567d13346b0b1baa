package cluster_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/certctl/certctl/pkg/cluster"
	"github.com/certctl/certctl/pkg/kubelet"
	"github.com/certctl/certctl/pkg/noderequest"
	"github.com/certctl/certctl/pkg/pki"
)

// TestKubeletProbeInTheSecret, on a real apiserver: a rotation of the cluster CA puts into its
// Secret a client certificate of the new CA for the workers (no groups, its key beside it);
// the worker's Job gets it and ca.crt from the Secret, never a CA key, and the apiserver takes
// the Job (server-side dry run). A second run makes a new one.
func TestKubeletProbeInTheSecret(t *testing.T) {
	tr, cp := controlPlane(t)
	cs := cp.Clientset(t)
	ctx := context.Background()
	oldData, err := os.ReadFile(filepath.Join(tr.Layout.PKIDir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	old := pki.CertificatesIn(oldData)[0]
	key, err := pki.GenerateKey(pki.KeyAlgorithm(old.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	ca, err := pki.NewCA(key, old, now.Add(-time.Minute), now.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := pki.EncodePrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Secrets("kube-system").Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: cluster.CARotationSecret, Namespace: "kube-system"},
		Data:       map[string][]byte{"ca.crt": pki.EncodeCertificates(ca), "ca.key": keyPEM},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var first []byte
	for _, phase := range []string{"trust", "issue"} {
		spec, err := cluster.WorkerRotationSpec(ctx, cs, "kube-system", phase, ca)
		if err != nil {
			t.Fatalf("%s: %v", phase, err)
		}
		sec, err := cs.CoreV1().Secrets("kube-system").Get(ctx, cluster.CARotationSecret, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		data := sec.Data[kubelet.ProbeFile]
		_, leaf, err := kubelet.ReadProbe(kubelet.ProbeFile, data)
		if err != nil {
			t.Fatalf("%s: %v", phase, err)
		}
		if leaf.CheckSignatureFrom(ca) != nil || leaf.Subject.CommonName != kubelet.ProbeCN || len(leaf.Subject.Organization) != 0 {
			t.Errorf("%s: the probe is %s, issued by %s; want a client of the new CA without groups", phase, leaf.Subject, leaf.Issuer)
		}
		if slices.Equal(data, first) {
			t.Errorf("%s: the run kept the previous run's probe", phase)
		}
		first = data
		if spec.Secret != cluster.CARotationSecret || !slices.Contains(spec.SecretItems, kubelet.ProbeFile) || slices.ContainsFunc(spec.SecretItems, func(i string) bool { return strings.HasSuffix(i, ".key") }) {
			t.Errorf("%s: the worker's Job mounts %s items %v; want the probe, never a key", phase, spec.Secret, spec.SecretItems)
		}
		req := spec.Request
		if req.Op != noderequest.CARotate || req.KubeletProbe != cluster.SecretDir+"/"+kubelet.ProbeFile {
			t.Errorf("%s: the worker's request %+v does not name the probe", phase, req)
		}
		spec.Namespace, spec.Image = "kube-system", "localhost/certctl:dev"
		if _, err := cs.BatchV1().Jobs("kube-system").Create(ctx, spec.Job(), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
			t.Errorf("%s: the worker's Job: %v", phase, err)
		}
	}
}
