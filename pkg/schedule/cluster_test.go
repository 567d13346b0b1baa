package schedule_test

import (
	"bytes"
	"context"
	"crypto/sha256"
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
	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/sandbox"
	"github.com/certctl/certctl/pkg/schedule"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// TestCronJobsServerSideDryRun: the control-plane node names come from a real apiserver, and
// every rendered CronJob is accepted by it (server-side dry run: full validation and
// admission, nothing stored).
func TestCronJobsServerSideDryRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and kube-apiserver")
	}
	tr := testenv.KubeadmTree(t, testenv.TreeOptions{})
	cp := testenv.StartControlPlane(t, testenv.ControlPlaneOptions{PKIDir: tr.Layout.PKIDir, KubeconfigDir: tr.Layout.KubeconfigDir})
	cs := cp.Clientset(t)
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
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(out), 4096)
	var schedules []string
	for {
		var cj batchv1.CronJob
		if err := dec.Decode(&cj); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		got, err := cs.BatchV1().CronJobs(cj.Namespace).Create(ctx, &cj, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			t.Fatalf("the apiserver refuses CronJob %s: %v", cj.Name, err)
		}
		spec := got.Spec.JobTemplate.Spec.Template.Spec
		if spec.NodeName == "" || !*spec.Containers[0].SecurityContext.Privileged || spec.Volumes[0].HostPath.Path != "/" {
			t.Errorf("CronJob %s: %+v", cj.Name, spec)
		}
		schedules = append(schedules, got.Spec.Schedule)
	}
	if strings.Join(schedules, "|") != "30 3 * * 1|30 4 * * 1" {
		t.Errorf("schedules %v: want them staggered an hour apart", schedules)
	}
	if list, _ := cs.BatchV1().CronJobs("kube-system").List(ctx, metav1.ListOptions{}); len(list.Items) != 0 {
		t.Errorf("a dry run stored %d CronJobs", len(list.Items))
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
