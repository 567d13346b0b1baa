package monitoring_test

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/inspect"
	"github.com/certctl/certctl/pkg/monitoring"
	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/sandbox"
	"github.com/certctl/certctl/pkg/schedule"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
)

const nodeName = "master-1"

// TestEventsOnNodeAsTheCronJob runs against a real kube-apiserver and etcd. Acting as the
// CronJobs' service account with exactly the RBAC `certctl schedule manifest` prints
// (impersonation: RBAC decides as for the pod's token), certctl records one Event on the Node
// per warning or critical finding of the all-faults sandbox; recording the same findings again
// counts up the same Events (no duplicates); the account may create and patch Events in
// default and nothing more. Then the real binary runs what the CronJob runs (renew ...
// --events-node): the expired apiserver certificate is renewed, so its Event is not counted up
// again while the findings that remain are.
func TestEventsOnNodeAsTheCronJob(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and kube-apiserver")
	}
	healthy := newTree(t, sandbox.Options{})
	cp := testenv.StartControlPlane(t, testenv.ControlPlaneOptions{PKIDir: healthy.PKIDir, KubeconfigDir: healthy.KubeconfigDir})
	admin := cp.Clientset(t)
	ctx := context.Background()
	if _, err := admin.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	out, err := schedule.Manifests(schedule.ManifestOptions{Nodes: []string{nodeName}, Image: "registry.example.com/certctl:v1"})
	if err != nil {
		t.Fatal(err)
	}
	applyRBAC(t, admin, out)
	if schedule.EventsNamespace != monitoring.EventNamespace {
		t.Fatalf("the schedule's RBAC grants events in %s, certctl records them in %s", schedule.EventsNamespace, monitoring.EventNamespace)
	}
	saKubeconfig := impersonating(t, cp, "system:serviceaccount:kube-system:"+schedule.ServiceAccount)
	sa := cp.ClientsetFor(t, saKubeconfig)

	faulty := newTree(t, sandbox.Options{Faults: sandbox.AllFaults})
	diagnose := func() *inspect.Report {
		return inspect.Diagnose(pki.Load(faulty, pki.Default()), inspect.Options{})
	}
	// The reasons the findings call for, from the report itself.
	wantReasons := map[string]bool{}
	for _, c := range diagnose().Certificates {
		for _, f := range c.Findings {
			if f.Severity == inspect.SevWarning || f.Severity == inspect.SevCritical {
				wantReasons[monitoring.Reasons[f.Code]] = true
			}
		}
	}
	for _, r := range []string{"CertificateExpired", "KubeletServingCertificateNoIPSANs", "KubeconfigStale"} {
		if !wantReasons[r] {
			t.Fatalf("the all-faults sandbox has no finding for %s: %v", r, wantReasons)
		}
	}
	first, err := monitoring.Record(ctx, sa, monitoring.RecordOptions{Node: nodeName, Report: diagnose()})
	if err != nil {
		t.Fatalf("record as the CronJob's service account: %v", err)
	}
	// A minute later, the next run: the same findings, the same Events, counted.
	second, err := monitoring.Record(ctx, sa, monitoring.RecordOptions{Node: nodeName, Report: diagnose(), Now: time.Now().Add(time.Minute)})
	if err != nil {
		t.Fatalf("record again: %v", err)
	}
	if len(first) != len(second) || len(first) == 0 {
		t.Fatalf("first run %d events, second %d", len(first), len(second))
	}
	events := nodeEvents(t, admin)
	if len(events) != len(first) {
		t.Fatalf("%d Events on the node after two runs, want %d (one per finding, no duplicates): %v", len(events), len(first), reasonsOf(events))
	}
	gotReasons := map[string]bool{}
	for _, e := range events {
		gotReasons[e.Reason] = true
		if e.Count != 2 || e.Type != corev1.EventTypeWarning || e.Source.Component != monitoring.EventComponent ||
			e.InvolvedObject.Kind != "Node" || string(e.InvolvedObject.UID) != nodeName || !e.LastTimestamp.After(e.FirstTimestamp.Time) {
			t.Errorf("event %s: count %d type %s source %v involved %v first %v last %v", e.Name, e.Count, e.Type, e.Source, e.InvolvedObject, e.FirstTimestamp, e.LastTimestamp)
		}
		if !strings.Contains(e.Message, "Fix: ") || !strings.Contains(e.Message, "certctl") {
			t.Errorf("event %s %s names no certctl fix: %s", e.Name, e.Reason, e.Message)
		}
	}
	if strings.Join(keys(gotReasons), ",") != strings.Join(keys(wantReasons), ",") {
		t.Errorf("reasons %v, want %v", keys(gotReasons), keys(wantReasons))
	}

	// The account may do nothing else with Events.
	evAPI := sa.CoreV1().Events(monitoring.EventNamespace)
	forbidden := map[string]func() error{
		"get an event":    func() error { _, err := evAPI.Get(ctx, events[0].Name, metav1.GetOptions{}); return err },
		"list events":     func() error { _, err := evAPI.List(ctx, metav1.ListOptions{}); return err },
		"delete an event": func() error { return evAPI.Delete(ctx, events[0].Name, metav1.DeleteOptions{}) },
		"update an event": func() error { _, err := evAPI.Update(ctx, events[0].DeepCopy(), metav1.UpdateOptions{}); return err },
		"create an event in kube-system": func() error {
			e := events[0].DeepCopy()
			e.Namespace, e.Name, e.ResourceVersion = "kube-system", "x.certctl", ""
			_, err := sa.CoreV1().Events("kube-system").Create(ctx, e, metav1.CreateOptions{})
			return err
		},
	}
	for what, do := range forbidden {
		if err := do(); !apierrors.IsForbidden(err) {
			t.Errorf("the CronJobs' account may %s: want forbidden, got %v", what, err)
		}
	}

	// What the CronJob runs, with its account: renew what expires within a day (the expired
	// apiserver certificate), then the Events. --kubeconfig is a node path, under --root.
	data, err := os.ReadFile(saKubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(faulty.Root, "sa.kubeconfig"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(testenv.Certctl(t), "--root", faulty.Root, "renew", "all", "--if-expiring-within", "1d", "--yes",
		"--kubeconfig", "/sa.kubeconfig", "--events-node", nodeName)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("certctl renew --events-node: %v\n%s", err, stderr.String())
	}
	if strings.Contains(stderr.String(), "warning: events") {
		t.Fatalf("certctl renew --events-node: %s", stderr.String())
	}
	after := nodeEvents(t, admin)
	if len(after) != len(events) {
		t.Errorf("after the CronJob's run %d Events, want %d: %v", len(after), len(events), reasonsOf(after))
	}
	for _, e := range after {
		want := int32(3)
		if e.Reason == "CertificateExpired" && strings.Contains(e.Message, "apiserver (") {
			want = 2 // renewed: no longer a finding
		}
		if e.Count != want {
			t.Errorf("after the CronJob's run: %s %q count %d, want %d", e.Reason, e.Message, e.Count, want)
		}
	}
}

func nodeEvents(t *testing.T, cs kubernetes.Interface) []corev1.Event {
	t.Helper()
	// What kubectl describe node selects on.
	sel := fields.Set{"involvedObject.kind": "Node", "involvedObject.name": nodeName, "involvedObject.uid": nodeName}.AsSelector().String()
	list, err := cs.CoreV1().Events(monitoring.EventNamespace).List(context.Background(), metav1.ListOptions{FieldSelector: sel})
	if err != nil {
		t.Fatal(err)
	}
	return list.Items
}

func reasonsOf(evs []corev1.Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.Reason)
	}
	return out
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// applyRBAC creates the manifest's ServiceAccount, Lease, Roles and RoleBindings.
func applyRBAC(t *testing.T, cs kubernetes.Interface, manifest []byte) {
	t.Helper()
	ctx := context.Background()
	codecs := serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict)
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(manifest)))
	for {
		doc, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		obj, _, err := codecs.UniversalDeserializer().Decode(doc, nil, nil)
		if err != nil {
			t.Fatalf("decode: %v\n%s", err, doc)
		}
		var cerr error
		switch x := obj.(type) {
		case *corev1.ServiceAccount:
			_, cerr = cs.CoreV1().ServiceAccounts(x.Namespace).Create(ctx, x, metav1.CreateOptions{})
		case *coordinationv1.Lease:
			_, cerr = cs.CoordinationV1().Leases(x.Namespace).Create(ctx, x, metav1.CreateOptions{})
		case *rbacv1.Role:
			_, cerr = cs.RbacV1().Roles(x.Namespace).Create(ctx, x, metav1.CreateOptions{})
		case *rbacv1.RoleBinding:
			_, cerr = cs.RbacV1().RoleBindings(x.Namespace).Create(ctx, x, metav1.CreateOptions{})
		}
		// CronJobs are left out: the test acts as their account.
		if cerr != nil {
			t.Fatalf("create %T: %v", obj, cerr)
		}
	}
}

// impersonating writes a kubeconfig of the control plane's admin.conf that acts as user.
func impersonating(t *testing.T, cp *testenv.ControlPlane, user string) string {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(cp.AdminKubeconfig(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range cfg.AuthInfos {
		a.Impersonate = user
	}
	path := filepath.Join(t.TempDir(), "as-"+strings.ReplaceAll(user, ":", "-"))
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}
