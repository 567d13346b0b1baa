package schedule_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/inspect"
	"github.com/certctl/certctl/pkg/lastrun"
	"github.com/certctl/certctl/pkg/lease"
	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/sandbox"
	"github.com/certctl/certctl/pkg/schedule"
	batchv1 "k8s.io/api/batch/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
)

// decodeManifests decodes every document of the rendered stream into its typed object with the
// Kubernetes scheme, strictly (an unknown or duplicate field is an error, as for kubectl).
func decodeManifests(t *testing.T, out []byte) []runtime.Object {
	t.Helper()
	codecs := serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict)
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(out)))
	var objs []runtime.Object
	for {
		doc, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			t.Fatalf("an empty document in the stream:\n%s", out)
		}
		obj, gvk, err := codecs.UniversalDeserializer().Decode(doc, nil, nil)
		if err != nil {
			t.Fatalf("document %d does not decode: %v\n%s", len(objs), err, doc)
		}
		if gvk.Kind == "" || gvk.Version == "" {
			t.Fatalf("document %d has no kind: %s", len(objs), doc)
		}
		objs = append(objs, obj)
	}
	return objs
}

// create stores obj on the apiserver (server-side dry run when dryRun: full validation and
// admission, nothing stored) and returns what the apiserver made of it.
func create(t *testing.T, cs kubernetes.Interface, obj runtime.Object, dryRun bool) runtime.Object {
	t.Helper()
	ctx := context.Background()
	o := metav1.CreateOptions{}
	if dryRun {
		o.DryRun = []string{metav1.DryRunAll}
	}
	var got runtime.Object
	var err error
	switch x := obj.(type) {
	case *corev1.ServiceAccount:
		got, err = cs.CoreV1().ServiceAccounts(x.Namespace).Create(ctx, x, o)
	case *coordinationv1.Lease:
		got, err = cs.CoordinationV1().Leases(x.Namespace).Create(ctx, x, o)
	case *rbacv1.Role:
		got, err = cs.RbacV1().Roles(x.Namespace).Create(ctx, x, o)
	case *rbacv1.RoleBinding:
		got, err = cs.RbacV1().RoleBindings(x.Namespace).Create(ctx, x, o)
	case *batchv1.CronJob:
		got, err = cs.BatchV1().CronJobs(x.Namespace).Create(ctx, x, o)
	default:
		t.Fatalf("unexpected object %T in the manifest", obj)
	}
	if err != nil {
		t.Fatalf("the apiserver refuses %T: %v", obj, err)
	}
	return got
}

func controlPlane(t *testing.T) (*testenv.ControlPlane, kubernetes.Interface) {
	t.Helper()
	tr := testenv.KubeadmTree(t, testenv.TreeOptions{})
	cp := testenv.StartControlPlane(t, testenv.ControlPlaneOptions{PKIDir: tr.Layout.PKIDir, KubeconfigDir: tr.Layout.KubeconfigDir})
	return cp, cp.Clientset(t)
}

// TestManifestServerSideDryRun: the control-plane node names come from a real apiserver;
// every document of the manifest decodes strictly into its typed object and is accepted by
// the apiserver (server-side dry run); the CronJobs' pods run as the service account, with its
// token, and pass --lease; the service account itself mounts no token elsewhere.
func TestManifestServerSideDryRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and kube-apiserver")
	}
	_, cs := controlPlane(t)
	ctx := context.Background()
	for name, labels := range map[string]map[string]string{
		"cp-b": {schedule.ControlPlaneLabel: ""}, "cp-a.example.com": {schedule.ControlPlaneLabel: ""}, "worker-1": {},
	} {
		if _, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	nodes, err := schedule.ControlPlaneNodes(ctx, cs)
	if err != nil || strings.Join(nodes, ",") != "cp-a.example.com,cp-b" {
		t.Fatalf("control-plane nodes %v %v", nodes, err)
	}
	out, err := schedule.Manifests(schedule.ManifestOptions{Nodes: nodes, Image: "registry.example.com/certctl:v1", Restart: false})
	if err != nil {
		t.Fatal(err)
	}
	var schedules, kinds []string
	for _, obj := range decodeManifests(t, out) {
		got := create(t, cs, obj, true)
		kinds = append(kinds, fmt.Sprintf("%T", got))
		switch x := got.(type) {
		case *corev1.ServiceAccount:
			if ptr.Deref(x.AutomountServiceAccountToken, true) {
				t.Errorf("the service account %s mounts its token into every pod that uses it", x.Name)
			}
		case *batchv1.CronJob:
			spec := x.Spec.JobTemplate.Spec.Template.Spec
			if spec.NodeName == "" || !*spec.Containers[0].SecurityContext.Privileged || spec.Volumes[0].HostPath.Path != "/" {
				t.Errorf("CronJob %s: %+v", x.Name, spec)
			}
			if spec.ServiceAccountName != schedule.ServiceAccount || !ptr.Deref(spec.AutomountServiceAccountToken, false) {
				t.Errorf("CronJob %s: service account %q, automount %v", x.Name, spec.ServiceAccountName, spec.AutomountServiceAccountToken)
			}
			if args := strings.Join(spec.Containers[0].Args, " "); !strings.Contains(args, "--lease "+lease.DefaultRef+" --lease-wait 30m0s") {
				t.Errorf("CronJob %s does not take the lease: %s", x.Name, args)
			}
			if args := strings.Join(spec.Containers[0].Args, " "); !strings.HasSuffix(args, "--events-node "+spec.NodeName) {
				t.Errorf("CronJob %s does not record Events on its node %s: %s", x.Name, spec.NodeName, args)
			}
			schedules = append(schedules, x.Spec.Schedule)
		}
	}
	if want := "*v1.ServiceAccount *v1.Lease *v1.Role *v1.RoleBinding *v1.Role *v1.RoleBinding *v1.CronJob *v1.CronJob"; strings.Join(kinds, " ") != want {
		t.Errorf("objects %v, want %s", kinds, want)
	}
	if strings.Join(schedules, "|") != "30 3 * * 1|30 4 * * 1" {
		t.Errorf("schedules %v: want them staggered an hour apart", schedules)
	}
	if list, _ := cs.BatchV1().CronJobs("kube-system").List(ctx, metav1.ListOptions{}); len(list.Items) != 0 {
		t.Errorf("a dry run stored %d CronJobs", len(list.Items))
	}
}

// TestManifestRBAC applies the manifest's ServiceAccount, Lease, Role and RoleBinding to a real
// apiserver and acts as that service account (impersonation, so RBAC decides exactly as for
// the CronJob's token): it can take and release the Lease as certctl renew --lease does, and
// nothing else: not another Lease, not create or delete, not a Secret.
func TestManifestRBAC(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and kube-apiserver")
	}
	cp, admin := controlPlane(t)
	ctx := context.Background()
	out, err := schedule.Manifests(schedule.ManifestOptions{Nodes: []string{"cp-1"}, Image: "registry.example.com/certctl:v1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, obj := range decodeManifests(t, out) {
		if _, ok := obj.(*batchv1.CronJob); !ok {
			create(t, admin, obj, false)
		}
	}
	other, err := admin.CoordinationV1().Leases("kube-system").Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "kube-scheduler-like", Namespace: "kube-system"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := clientcmd.BuildConfigFromFlags(cp.URL, cp.AdminKubeconfig(t))
	if err != nil {
		t.Fatal(err)
	}
	rc.TLSClientConfig.ServerName = testenv.APIServerName
	rc.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:kube-system:" + schedule.ServiceAccount}
	sa := kubernetes.NewForConfigOrDie(rc)

	// What certctl renew --lease does: take, renew (Confirm), release.
	held, err := lease.Acquire(ctx, sa, lease.Options{Identity: "cronjob-on-cp-1", Duration: 3 * time.Second})
	if err != nil {
		t.Fatalf("the service account cannot take the lease: %v", err)
	}
	if err := held.Confirm(ctx); err != nil {
		t.Fatalf("the service account cannot renew the lease: %v", err)
	}
	if err := held.Release(ctx); err != nil {
		t.Fatalf("the service account cannot release the lease: %v", err)
	}

	leases := sa.CoordinationV1().Leases("kube-system")
	forbidden := []struct {
		what string
		do   func() error
	}{
		{"get another lease", func() error { _, err := leases.Get(ctx, other.Name, metav1.GetOptions{}); return err }},
		{"update another lease", func() error {
			o := other.DeepCopy()
			o.Spec.HolderIdentity = ptr.To("intruder")
			_, err := leases.Update(ctx, o, metav1.UpdateOptions{})
			return err
		}},
		{"create a lease", func() error {
			_, err := leases.Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "new", Namespace: "kube-system"}}, metav1.CreateOptions{})
			return err
		}},
		{"delete its lease", func() error { return leases.Delete(ctx, lease.Name, metav1.DeleteOptions{}) }},
		{"list leases", func() error { _, err := leases.List(ctx, metav1.ListOptions{}); return err }},
		{"the lease of the same name elsewhere", func() error {
			_, err := sa.CoordinationV1().Leases("default").Get(ctx, lease.Name, metav1.GetOptions{})
			return err
		}},
		{"list secrets", func() error { _, err := sa.CoreV1().Secrets("kube-system").List(ctx, metav1.ListOptions{}); return err }},
		{"read kubeadm-config", func() error {
			_, err := sa.CoreV1().ConfigMaps("kube-system").Get(ctx, "kubeadm-config", metav1.GetOptions{})
			return err
		}},
	}
	for _, f := range forbidden {
		if err := f.do(); !apierrors.IsForbidden(err) {
			t.Errorf("%s: want forbidden, got %v", f.what, err)
		}
	}

	// Without the Lease (deleted by hand), the service account cannot make one: the error
	// says what to do.
	if err := admin.CoordinationV1().Leases("kube-system").Delete(ctx, lease.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err = lease.Acquire(ctx, sa, lease.Options{Identity: "cronjob-on-cp-1"})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "apply it again") {
		t.Errorf("without the lease: want a forbidden error saying to apply the manifest again, got %v", err)
	}
}

func hashTree(t *testing.T, dirs ...string) map[string][32]byte {
	t.Helper()
	out := map[string][32]byte{}
	for _, d := range dirs {
		filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
			if err == nil && e.Type().IsRegular() {
				data, _ := os.ReadFile(p)
				out[p] = sha256.Sum256(data)
			}
			return nil
		})
	}
	return out
}

// TestTimerCommandEndToEnd runs the exact command the installed timer runs against two
// sandbox nodes: one whose certificates expire in 10 days is renewed; a healthy one is a
// no-op (exit 0, no file of the node changed, no backup made); both leave a run record.
func TestTimerCommandEndToEnd(t *testing.T) {
	bin := testenv.Certctl(t)
	o := schedule.Options{CertctlPath: bin}
	o.Defaults()
	files, err := o.Render()
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^ExecStart=(.+)$`).FindStringSubmatch(string(files[schedule.ServicePath]))
	if m == nil {
		t.Fatal("no ExecStart in the rendered service")
	}
	args := strings.Fields(m[1])
	if args[0] != bin {
		t.Fatalf("ExecStart runs %s", args[0])
	}
	run := func(root string) (string, error) {
		// The unit runs on the node's own root; here the node is a sandbox under root.
		cmd := exec.Command(args[0], append([]string{"--root", root}, args[1:]...)...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	now := time.Now()
	expiring, err := sandbox.Create(sandbox.Options{Dir: t.TempDir(), KeyAlgorithm: pki.AlgECDSAP256, LeafValidity: 10 * 24 * time.Hour, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	healthy, err := sandbox.Create(sandbox.Options{Dir: t.TempDir(), KeyAlgorithm: pki.AlgECDSAP256, Now: now})
	if err != nil {
		t.Fatal(err)
	}

	out, err := run(expiring.Root)
	if err != nil {
		t.Fatalf("timer command on the expiring node: %v\n%s", err, out)
	}
	r := inspect.Diagnose(pki.Load(expiring, pki.Default()), inspect.Options{})
	for _, c := range r.Certificates {
		for _, f := range c.Findings {
			if f.Code == inspect.CodeExpiringSoon && c.Kind != string(pki.KindKubeletServing) && c.Kind != string(pki.KindKubeletClient) && c.Name != "kubelet.conf" && c.Name != "user-kubeconfig" {
				t.Errorf("%s still expires soon after the scheduled run", c.Name)
			}
		}
	}
	rec, err := lastrun.Read(expiring)
	if err != nil || rec == nil || rec.Result != lastrun.ResultRenewed || len(rec.Renewed) == 0 {
		t.Fatalf("run record %+v %v", rec, err)
	}

	nodeDirs := []string{healthy.KubeconfigDir, healthy.KubeletDir, filepath.Dir(healthy.UserKubeconfig)}
	before := hashTree(t, nodeDirs...)
	out, err = run(healthy.Root)
	if err != nil {
		t.Fatalf("timer command on the healthy node: exit %v\n%s", err, out)
	}
	after := hashTree(t, nodeDirs...)
	if len(before) != len(after) {
		t.Errorf("files added or removed on the healthy node: %d -> %d", len(before), len(after))
	}
	for p, h := range before {
		if after[p] != h {
			t.Errorf("%s changed on the healthy node", p)
		}
	}
	if _, err := os.Stat(healthy.BackupRoot()); err == nil {
		t.Error("a backup was made on the healthy node")
	}
	rec, err = lastrun.Read(healthy)
	if err != nil || rec == nil || rec.Result != lastrun.ResultNoop {
		t.Fatalf("run record on the healthy node %+v %v", rec, err)
	}
	if !strings.Contains(out, "certctl renew: no-op") {
		t.Errorf("no one-line summary for the journal:\n%s", out)
	}
}
