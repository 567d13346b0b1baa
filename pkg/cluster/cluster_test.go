package cluster_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/cluster"
	"github.com/certctl/certctl/pkg/kubelet"
	"github.com/certctl/certctl/pkg/noderequest"
	"github.com/certctl/certctl/pkg/noderesult"
)

// controlPlane is a real etcd + kube-apiserver on a tree made by the real kubeadm.
func controlPlane(t *testing.T) (*testenv.Tree, *testenv.ControlPlane) {
	t.Helper()
	tr := testenv.KubeadmTree(t, testenv.TreeOptions{})
	return tr, testenv.StartControlPlane(t, testenv.ControlPlaneOptions{PKIDir: tr.Layout.PKIDir, KubeconfigDir: tr.Layout.KubeconfigDir})
}

// apiserver is a client of controlPlane, as admin.conf.
func apiserver(t *testing.T) kubernetes.Interface {
	t.Helper()
	_, cp := controlPlane(t)
	return cp.Clientset(t)
}

// TestJobSpecsAccepted: the status and renew Jobs are valid objects for a real apiserver
// (server-side dry run), pinned to their node, tolerating every taint, without a token.
func TestJobSpecsAccepted(t *testing.T) {
	cs := apiserver(t)
	for _, s := range []cluster.JobSpec{
		{Namespace: "kube-system", Node: "cp1", Image: "localhost/certctl:dev", Component: "status", Request: noderequest.Request{Op: noderequest.Inspect, Record: true}},
		{Namespace: "kube-system", Node: "a-very-long-node-name.with.dots.example.internal.cluster", Image: "localhost/certctl:dev", Component: "renew",
			Request: noderequest.Request{Op: noderequest.Renew, Names: []string{"all"}, Restart: &noderequest.Restart{}}, Privileged: true},
		{Namespace: "kube-system", Node: "cp2", Image: "localhost/certctl:dev", Component: "endpoint",
			Request: noderequest.Request{Op: noderequest.SetServer, Server: "https://10.2.1.139:6443", Result: true}, Privileged: true},
	} {
		job := s.Job()
		got, err := cs.BatchV1().Jobs(s.Namespace).Create(context.Background(), job, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			t.Fatalf("%s job for %s: %v", s.Component, s.Node, err)
		}
		pod := got.Spec.Template.Spec
		if pod.NodeName != s.Node || len(pod.Tolerations) != 1 || pod.Tolerations[0].Operator != "Exists" {
			t.Errorf("%s: not pinned to the node with every taint tolerated: %+v %+v", s.Component, pod.NodeName, pod.Tolerations)
		}
		if ptr.Deref(pod.AutomountServiceAccountToken, true) {
			t.Errorf("%s: the pod would mount a service-account token", s.Component)
		}
		mount := pod.Containers[0].VolumeMounts[0]
		if mount.MountPath != "/host" || mount.ReadOnly == s.Privileged {
			t.Errorf("%s: /host mount %+v (read-only must be %v)", s.Component, mount, !s.Privileged)
		}
		if pod.HostPID != s.Privileged {
			t.Errorf("%s: hostPID %v", s.Component, pod.HostPID)
		}
		// certctl works under /host and runs the typed request, of this version, as given.
		c := pod.Containers[0]
		if len(c.Args) != 6 || !slices.Equal(c.Args[:5], []string{"--root", "/host", "node", "run", "--request"}) {
			t.Fatalf("%s: args %v", s.Component, c.Args)
		}
		req, err := noderequest.Decode(c.Args[5])
		if err != nil || req.Op != s.Request.Op || req.Result != s.Request.Result || req.Record != s.Request.Record {
			t.Errorf("%s: the Job's request %+v (%v), want %+v", s.Component, req, err, s.Request)
		}
		// A typed result goes where the kubelet copies it into the pod's status: the
		// container's termination message file (what node run writes), as the apiserver
		// defaults it.
		if c.TerminationMessagePath != noderesult.Path {
			t.Errorf("%s: termination message path %q", s.Component, c.TerminationMessagePath)
		}
		// certctl learns its own pod through the downward API (a restarted kubelet must list
		// it again before certctl ends: kubelet.WaitOptions.Self).
		fields := map[string]string{}
		for _, e := range c.Env {
			if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
				fields[e.Name] = e.ValueFrom.FieldRef.FieldPath
			}
		}
		if fields[kubelet.EnvPodNamespace] != "metadata.namespace" || fields[kubelet.EnvPodName] != "metadata.name" {
			t.Errorf("%s: the container's downward-API variables %v, want %s and %s", s.Component, fields, kubelet.EnvPodNamespace, kubelet.EnvPodName)
		}
	}
}

// TestSinceRestart: a restarted kubelet's Lease renewal counts from certctl's start on the
// node when the Job's container status gave it, else from the caller's fallback.
func TestSinceRestart(t *testing.T) {
	start, fallback := time.Date(2026, 12, 6, 2, 0, 0, 0, time.UTC), time.Date(2026, 12, 6, 2, 0, 5, 0, time.UTC)
	for _, tc := range []struct {
		name string
		res  cluster.JobResult
		want time.Time
	}{
		{name: "started seen", res: cluster.JobResult{Started: start}, want: start},
		{name: "not seen", res: cluster.JobResult{}, want: fallback},
	} {
		if got := cluster.SinceRestart(tc.res, fallback); !got.Equal(tc.want) {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}

// TestJobResultRecord: a node's record is read from its Job's log; when there is none, the
// error says how certctl exited and what it said (an image of a certctl without --record says
// "unknown flag"), and is still ErrNoRecord to the code; a record of another version stays
// typed.
func TestJobResultRecord(t *testing.T) {
	type rep struct{ Node string }
	var rec strings.Builder
	if err := noderesult.WriteRecord(&rec, noderesult.KindInspect, rep{Node: "cp1"}); err != nil {
		t.Fatal(err)
	}
	var got rep
	if err := (cluster.JobResult{Logs: "recovered\n" + rec.String()}).Record(noderesult.KindInspect, &got); err != nil || got.Node != "cp1" {
		t.Errorf("got %+v, %v", got, err)
	}
	err := cluster.JobResult{ExitCode: 1, Logs: "Error: unknown flag: --record\n"}.Record(noderesult.KindInspect, &got)
	if !errors.Is(err, noderesult.ErrNoRecord) || !strings.Contains(err.Error(), "exited 1") || !strings.Contains(err.Error(), "unknown flag: --record") {
		t.Errorf("no record: %v", err)
	}
	var ve *noderesult.RecordVersionError
	if err := (cluster.JobResult{Logs: "certctl.io/node-record/v9 inspect {}\n"}).Record(noderesult.KindInspect, &got); !errors.As(err, &ve) {
		t.Errorf("another version: %v", err)
	}
}
