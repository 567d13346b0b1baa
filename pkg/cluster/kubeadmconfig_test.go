package cluster_test

import (
	"context"
	"crypto/x509"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/cluster"
	"github.com/certctl/certctl/pkg/kubeadmconfig"
	"github.com/certctl/certctl/pkg/noderequest"
	"github.com/certctl/certctl/pkg/pki"
)

// kubeadmCluster is a real apiserver whose kube-system/kubeadm-config was uploaded by the real
// kubeadm.
func kubeadmCluster(t *testing.T) kubernetes.Interface {
	t.Helper()
	tr, cp := controlPlane(t)
	tr.UploadConfig(t, cp)
	return cp.Clientset(t)
}

func sanLists(t *testing.T, cs kubernetes.Interface) (api, etcdServer []string, rv string) {
	t.Helper()
	doc, rv, err := kubeadmconfig.Read(context.Background(), cs)
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		APIServer struct {
			CertSANs []string `yaml:"certSANs"`
		} `yaml:"apiServer"`
		Etcd struct {
			Local struct {
				ServerCertSANs []string `yaml:"serverCertSANs"`
			} `yaml:"local"`
		} `yaml:"etcd"`
	}
	if err := yaml.Unmarshal([]byte(doc), &cfg); err != nil {
		t.Fatal(err)
	}
	return cfg.APIServer.CertSANs, cfg.Etcd.Local.ServerCertSANs, rv
}

// TestUpdateKubeadmConfig, on a real apiserver with the kubeadm-config kubeadm uploaded: the
// dry run says what it would add and changes nothing; the update adds the SAN to the field of
// the certificate renewed; again, it changes nothing; a cluster without kubeadm-config gets an
// error that says what to do.
func TestUpdateKubeadmConfig(t *testing.T) {
	cs := kubeadmCluster(t)
	ctx := context.Background()
	_, _, rv0 := sanLists(t, cs)

	c, err := cluster.UpdateKubeadmConfig(ctx, cs, []string{"all"}, []string{"10.2.1.139"}, true)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.String(); got != "kube-system/kubeadm-config: would add 10.2.1.139 to ClusterConfiguration.apiServer.certSANs (dry run: not changed)" {
		t.Errorf("dry run: %s", got)
	}
	if api, _, rv := sanLists(t, cs); rv != rv0 || slices.Contains(api, "10.2.1.139") {
		t.Fatalf("the dry run changed kubeadm-config: %s -> %s, %v", rv0, rv, api)
	}

	c, err = cluster.UpdateKubeadmConfig(ctx, cs, nil, []string{"10.2.1.139"}, false)
	if err != nil {
		t.Fatal(err)
	}
	api, _, rv1 := sanLists(t, cs)
	if !slices.Contains(api, "10.2.1.139") || rv1 == rv0 {
		t.Fatalf("not recorded: certSANs %v", api)
	}
	if got := c.String(); got != "kube-system/kubeadm-config: added 10.2.1.139 to ClusterConfiguration.apiServer.certSANs" {
		t.Errorf("update: %s", got)
	}

	c, err = cluster.UpdateKubeadmConfig(ctx, cs, []string{"apiserver"}, []string{"10.2.1.139"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, rv := sanLists(t, cs); rv != rv1 || len(c.Added) != 0 || !strings.Contains(c.String(), "already has 10.2.1.139") {
		t.Errorf("a second update changed kubeadm-config (%s -> %s) or says %q", rv1, rv, c)
	}

	if _, err := cluster.UpdateKubeadmConfig(ctx, cs, []string{"etcd-server"}, []string{"etcd-1.example.com"}, false); err != nil {
		t.Fatal(err)
	}
	if _, etcd, _ := sanLists(t, cs); !slices.Contains(etcd, "etcd-1.example.com") {
		t.Errorf("etcd-server's SAN not in etcd.local.serverCertSANs: %v", etcd)
	}
	if c, err := cluster.UpdateKubeadmConfig(ctx, cs, []string{"admin.conf"}, []string{"10.0.0.1"}, false); c != nil || err != nil {
		t.Errorf("a certificate without a kubeadm-config field: %v %v", c, err)
	}

	if err := cs.CoreV1().ConfigMaps(kubeadmconfig.Namespace).Delete(ctx, kubeadmconfig.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err = cluster.UpdateKubeadmConfig(ctx, cs, nil, []string{"10.2.1.139"}, false)
	if !errors.Is(err, kubeadmconfig.ErrNotFound) || !strings.Contains(err.Error(), "--skip-kubeadm-config") {
		t.Errorf("without kubeadm-config: %v", err)
	}
}

// TestRenewRecordsSANOnce runs `cluster renew apiserver --san` against a real apiserver with
// one control-plane Node and no kubelet (the node's Job never runs, so the run stops at that
// node): kubeadm-config is modified exactly once, before the node's Job is created, and that
// Job runs certctl renew --skip-kubeadm-config without --lease. A rerun does not modify it
// again.
func TestRenewRecordsSANOnce(t *testing.T) {
	cs := kubeadmCluster(t)
	ctx := context.Background()
	if _, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "cp1", Labels: map[string]string{pki.ControlPlaneLabel: ""}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	testenv.SetNodeReady(t, cs, "cp1", corev1.ConditionTrue) // else no Job is made there
	_, _, rv0 := sanLists(t, cs)
	w, err := cs.CoreV1().ConfigMaps(kubeadmconfig.Namespace).Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + kubeadmconfig.Name, ResourceVersion: rv0})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	jobs, err := cs.BatchV1().Jobs("kube-system").Watch(ctx, metav1.ListOptions{LabelSelector: cluster.LabelComponent + "=renew"})
	if err != nil {
		t.Fatal(err)
	}
	defer jobs.Stop()

	type event struct {
		what string
		args []string
	}
	var mu sync.Mutex
	var events []event
	record := func(ch <-chan watch.Event, what string) {
		for ev := range ch {
			mu.Lock()
			switch o := ev.Object.(type) {
			case *corev1.ConfigMap:
				if ev.Type == watch.Modified {
					events = append(events, event{what: what})
				}
			case *batchv1.Job:
				if ev.Type == watch.Added {
					events = append(events, event{what: what, args: o.Spec.Template.Spec.Containers[0].Args})
				}
			}
			mu.Unlock()
		}
	}
	go record(w.ResultChan(), "kubeadm-config modified")
	go record(jobs.ResultChan(), "job created")

	o := cluster.RenewOptions{Names: []string{"apiserver"}, SANs: []string{"10.2.1.139"}, Roots: x509.NewCertPool(),
		Runner: cluster.Runner{Image: "localhost/certctl:dev", JobTimeout: 2 * time.Second}}
	for run := 1; run <= 2; run++ {
		rep, err := cluster.Renew(ctx, cs, o)
		if err == nil || !strings.Contains(err.Error(), "node cp1 failed") {
			t.Fatalf("run %d: want the run to stop at cp1, whose Job cannot run here; got %v", run, err)
		}
		if rep.KubeadmConfig == nil {
			t.Fatalf("run %d: no kubeadm-config change reported", run)
		}
		t.Logf("run %d: %s", run, rep.KubeadmConfig)
	}
	var got []event
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		got = slices.Clone(events)
		return len(got) >= 3, nil
	})
	if err != nil {
		t.Fatalf("events seen: %+v", got)
	}
	if got[0].what != "kubeadm-config modified" || got[1].what != "job created" || got[2].what != "job created" {
		t.Fatalf("want kubeadm-config modified once, before the first Job; then only Jobs: %+v", got)
	}
	for _, e := range got[1:] {
		var args string
		if len(e.args) == 6 {
			if req, err := noderequest.Decode(e.args[5]); err == nil {
				cmd, _ := req.Args()
				args = strings.Join(cmd, " ")
			}
		}
		if !strings.Contains(args, "renew apiserver --san 10.2.1.139 --skip-kubeadm-config") || strings.Contains(args, "--lease") {
			t.Errorf("the node's Job runs %q (%q): want --skip-kubeadm-config and no --lease", args, e.args)
		}
	}
	if api, _, _ := sanLists(t, cs); !slices.Contains(api, "10.2.1.139") {
		t.Errorf("certSANs %v", api)
	}
	mu.Lock()
	defer mu.Unlock()
	if n := len(slices.DeleteFunc(slices.Clone(events), func(e event) bool { return e.what != "kubeadm-config modified" })); n != 1 {
		t.Errorf("kubeadm-config modified %d times over two runs: %+v", n, events)
	}
}
