package multinode

// This file's name sorts last on purpose: TestClusterCARotate replaces the lab's cluster CA,
// and the other tests of the package verify against the CA the lab was made with.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/certctl/certctl/internal/multilab"
	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/cluster"
	"github.com/certctl/certctl/pkg/pki"
)

// TestClusterCARotate is issue 15 on the lab: `certctl cluster ca-rotate all` runs trust and
// rolls it back everywhere, then takes the cluster, etcd and front-proxy CAs through trust,
// issue and drop on three control-plane nodes and a worker, with clients polling through the
// balancer; a pod on the worker keeps its container; after drop a client certificate of the
// old CA is refused by the apiservers (401) and by the worker's kubelet, one of the old etcd CA
// by every etcd, one of the old front-proxy CA by the apiservers' request-header
// authentication (the new ones' accepted), extension-apiserver-authentication carries the new
// CAs alone, a pod whose client-go loaded only the old CA kept talking to the API throughout,
// the command's own refreshed kubeconfig works, `kubectl logs` on the worker works, and a new
// machine joins with a fresh `kubeadm token create --print-join-command`. "all" takes the
// service-account key pair too (issue 23): a token signed offline with the old sa.key is
// accepted until drop and refused after it, one of the new key from trust on, /openid/v1/jwks
// publishes old + new during the overlap and the new alone after drop, and the in-cluster
// client's projected token (the old key's until the kubelet re-requested it before drop) is
// never refused.
func TestClusterCARotate(t *testing.T) {
	nodes := requireLab(t)
	ctx := context.Background()
	var w multilab.Node
	for _, n := range nodes {
		if !n.ControlPlane() {
			w = n
		}
	}
	local := adminCopy(t)
	here := func(args ...string) multilab.Result {
		t.Helper()
		return certctlWith(t, local, args...)
	}
	localCS := func() kubernetes.Interface {
		cfg, err := clientcmd.BuildConfigFromFlags("", local)
		if err != nil {
			t.Fatal(err)
		}
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return cs
	}
	// The old CAs' keys, to make client certificates the cluster must refuse at the end.
	pkiDir := filepath.Join(nodes[0].Dir(), "etc-kubernetes", "pki")
	oldCA, oldKey := readCA(t, pkiDir, "ca")
	oldEtcdCA, oldEtcdKey := readCA(t, pkiDir, "etcd/ca")
	oldFPCA, oldFPKey := readCA(t, pkiDir, "front-proxy-ca")
	oldSAKey := readSAKey(t, saKeyPath(pkiDir, false))

	var cs kubernetes.Interface = clientset(t)
	runPause(t, cs, w.Name)
	pod := pausePodOn(t, cs, w.Name)
	before := pod.Status.ContainerStatuses[0].ContainerID
	// A pod's API client as most are (client-go's in-cluster config: ca.crt read once, at
	// start), polling through the kubernetes Service from before trust to after drop.
	incluster := startInClusterClient(t, cs, w)

	// The dry run: every node's plan, nothing changed.
	r := here("cluster", "ca-rotate", "all", "--phase", "trust", "--dry-run")
	if r.Code != 0 || strings.Count(r.Stdout, "planned") != len(nodes) {
		t.Fatalf("ca-rotate --phase trust --dry-run: want a plan for each of %d nodes, got %s", len(nodes), r)
	}
	if _, err := cs.CoreV1().Secrets("kube-system").Get(ctx, "certctl-ca-rotation", metav1.GetOptions{}); err == nil {
		t.Fatalf("the dry run created the rotation's Secret")
	}
	assertNoJobs(t)

	// Trust, then the cluster-wide rollback: every node back to the old CA alone, and the
	// cluster's copies of it (cluster-info, every kube-root-ca.crt); the new CA's Secret gone.
	// Issue 21's orchestrator killed in a phase of ca-rotate: this first trust is killed once
	// (SIGKILL) at its worst instant, while a node's Job has its etcd member down (restarting
	// it), and the same command is run again at once, through the balancer (the API answers
	// while cp1's apiserver restarts), finds that member down, and finishes the phase: it waits
	// for the Job the killed run left and the member to be back (CI's random kill found this:
	// the run after it refused, the member down), takes the Lease over, adopts the Job, reuses
	// the new CAs of the Secret, and leaves nothing behind; the rollback below then proves
	// every node and cluster copy consistent with that one rotation.
	trust := []string{"cluster", "ca-rotate", "all", "--phase", "trust", "--kubeconfig", local, "--image", multilab.Image}
	viaLB, lbCS := balancerKubeconfig(t)
	// A member down as the run after the kill will see it: the check it makes (an API that does
	// not answer is not this moment).
	etcdDown := func(ctx context.Context) bool { return len(etcdNotReady(ctx, lbCS)) > 0 }
	killed, _ := killRuns(t, lbCS, trust, 1, killAt{What: "a node's etcd member down (its Job restarting it)", When: etcdDown}, func() string {
		sec, err := lbCS.CoreV1().Secrets("kube-system").Get(ctx, "certctl-ca-rotation", metav1.GetOptions{})
		if err != nil {
			return "no rotation Secret"
		}
		return fmt.Sprintf("the rotation Secret made (%d keys)", len(sec.Data))
	})
	// The API shows a member down only briefly (its node's kubelet reports through that node's
	// apiserver, whose etcd is the one down): CI's run after a kill came in that window and found
	// no etcd pod. Here the run after the kill comes in it every time: the etcd mirror pod of the
	// node whose Job the killed run left is deleted, as that kubelet deletes it when the
	// manifest moves out (the kubelet makes it again; the static pod is not touched).
	left, err := lbCS.BatchV1().Jobs("kube-system").List(ctx, metav1.ListOptions{LabelSelector: cluster.LabelComponent + "=carotate"})
	if err != nil || len(left.Items) != 1 {
		t.Fatalf("want the one ca-rotate Job the killed run left: %v, %d", err, len(left.Items))
	}
	down := left.Items[0].Labels[cluster.LabelNode]
	if err := lbCS.CoreV1().Pods("kube-system").Delete(ctx, "etcd-"+down, metav1.DeleteOptions{GracePeriodSeconds: ptr.To(int64(0))}); err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	if !etcdDown(ctx) {
		t.Fatalf("%s's etcd member shows ready right after its mirror pod was deleted", down)
	}
	start := time.Now()
	r = certctlWith(t, viaLB, "cluster", "ca-rotate", "all", "--phase", "trust")
	for _, l := range killed {
		t.Log(l)
	}
	t.Logf("the trust phase after the kill (started with %s's etcd member down, its Job running): %s, %s", down, time.Since(start).Round(100*time.Millisecond), r)
	if r.Code != 0 {
		t.Fatalf("cluster ca-rotate --phase trust after a kill: %s", r)
	}
	assertNoJobs(t)
	authCAs(t, cs, "client-ca-file", oldCA, false)
	authCAs(t, cs, "requestheader-client-ca-file", oldFPCA, false)
	start = time.Now()
	rollbackWithFaults(t, nodes, local, lbCS)
	t.Logf("rollback of trust, its faults included: %s", time.Since(start).Round(100*time.Millisecond))
	followLab(t, local)
	cs = localCS()
	oldOnly := func(what string, data []byte) {
		t.Helper()
		in := pki.CertificatesIn(data)
		if len(in) != 1 || !in[0].Equal(oldCA) {
			t.Errorf("after the rollback %s holds %d CA certificate(s), want the old CA alone", what, len(in))
		}
	}
	authCAs(t, cs, "client-ca-file", oldCA, true)
	authCAs(t, cs, "requestheader-client-ca-file", oldFPCA, true)
	if kc, err := clientcmd.LoadFromFile(local); err != nil {
		t.Fatal(err)
	} else {
		for name, c := range kc.Clusters {
			oldOnly("the command's kubeconfig (cluster "+name+")", c.CertificateAuthorityData)
		}
	}
	if cm, err := cs.CoreV1().ConfigMaps("kube-public").Get(ctx, "cluster-info", metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	} else if kc, err := clientcmd.Load([]byte(cm.Data["kubeconfig"])); err != nil {
		t.Fatal(err)
	} else {
		for _, c := range kc.Clusters {
			oldOnly("kube-public/cluster-info", c.CertificateAuthorityData)
		}
	}
	if cm, err := cs.CoreV1().ConfigMaps("default").Get(ctx, "kube-root-ca.crt", metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	} else {
		oldOnly("default/kube-root-ca.crt", []byte(cm.Data["ca.crt"]))
	}
	if _, err := cs.CoreV1().Secrets("kube-system").Get(ctx, "certctl-ca-rotation", metav1.GetOptions{}); err == nil {
		t.Errorf("after the rollback of trust the new CA's Secret is still there")
	}
	for _, n := range nodes {
		for _, dir := range []string{"rotation/ca", "etcd/rotation/etcd-ca", "rotation/front-proxy-ca", "rotation/sa"} {
			if _, err := os.Stat(filepath.Join(n.Dir(), "etc-kubernetes", "pki", dir, "state.json")); err == nil {
				t.Errorf("after the rollback %s still has a rotation state in %s", n.Name, dir)
			}
		}
	}
	assertNoJobs(t)

	var sa saProbe // tokens of the old and the new service-account key (issue 23)
	for _, phase := range []string{"trust", "issue", "drop"} {
		roots := x509.NewCertPool()
		if kc, err := clientcmd.LoadFromFile(local); err == nil {
			for _, c := range kc.Clusters {
				roots.AppendCertsFromPEM(c.CertificateAuthorityData)
			}
		}
		if phase == "issue" {
			// What the control-plane nodes serve changes CA in this phase: trust both.
			sec, err := cs.CoreV1().Secrets("kube-system").Get(ctx, "certctl-ca-rotation", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			roots.AppendCertsFromPEM(sec.Data["ca.crt"])
		}
		// Three clients through the balancer, every 50 ms: /version (no etcd), /readyz (its
		// etcd check included) and a list of a real object (answered from etcd): each node's
		// etcd restarts in every phase (issue 25).
		pollers := []struct {
			what string
			p    *poller
		}{
			{"/version", startPollerPath(t, multilab.LBAddr, "/version", roots, 50*time.Millisecond, 20*time.Minute)},
			{"/readyz", startPollerPath(t, multilab.LBAddr, "/readyz", roots, 50*time.Millisecond, 20*time.Minute)},
			{"list", startPollerAs(t, multilab.LBAddr, listPath, roots, testenv.KubeconfigClientCert(t, local), 50*time.Millisecond, 20*time.Minute)},
		}
		start := time.Now()
		args := []string{"cluster", "ca-rotate", "all", "--phase", phase}
		// Issue 21: the orchestrator killed in issue and drop too (trust's kill is above), once
		// each, then the same command again to the phase's end: issue at the instant the
		// worker's new kubelet client key waits in a Secret for its Job (the run after must
		// finish the worker and leave no key behind), drop at random within its first minute.
		var killed []string
		finished := false
		if phase != "trust" {
			_, phaseCS := balancerKubeconfig(t) // the lab's admin.conf follows the command's kubeconfig
			at := killAt{Window: time.Minute}
			if phase == "issue" {
				handover := "certctl-kubelet-client-" + w.Name
				at = killAt{What: "the new kubelet client key of " + w.Name + " in the Secret " + handover, When: func(ctx context.Context) bool {
					_, err := phaseCS.CoreV1().Secrets("kube-system").Get(ctx, handover, metav1.GetOptions{})
					return err == nil
				}}
			}
			killed, finished = killRuns(t, phaseCS, append(slices.Clone(args), "--kubeconfig", local, "--image", multilab.Image), 1, at, func() string {
				left, err := certctlSecrets(phaseCS)
				return fmt.Sprintf("certctl's Secrets left: %v %v", left, err)
			})
		}
		r := multilab.Result{} // a run that finished the phase before its kill leaves nothing to run
		if !finished {
			r = here(args...)
		}
		took := time.Since(start).Round(100 * time.Millisecond)
		for _, l := range killed {
			t.Logf("phase %s: %s", phase, l)
		}
		for _, pl := range pollers {
			ok, fail, errs := pl.p.Stop()
			t.Logf("phase %s: %s; through the balancer %s %d ok, %d failed, %d across a pause of the whole machine (not counted) %v; down windows %s", phase, took, pl.what, ok, fail, pl.p.Paused(), errs, windowsText(pl.p.Windows()))
			if ok == 0 {
				t.Errorf("phase %s: no %s through the balancer succeeded", phase, pl.what)
			}
			if fail > 0 && pl.what != "/version" {
				t.Errorf("phase %s: %d requests (%s) through the balancer failed (target 0): %v", phase, fail, pl.what, errs)
			}
			for _, win := range pl.p.Windows() {
				if win.End.Sub(win.Start) >= time.Second {
					t.Errorf("phase %s: %s through the balancer was down %s", phase, pl.what, win.End.Sub(win.Start).Round(time.Millisecond))
				}
			}
		}
		if r.Code != 0 {
			t.Fatalf("cluster ca-rotate --phase %s: %s", phase, r)
		}
		// The command refreshed its kubeconfig's CA (and, from issue on, its certificate); the
		// lab's own copies follow, for the helpers that read them.
		followLab(t, local)
		assertNoJobs(t)
		cs = localCS()
		if left, err := certctlSecrets(cs); err != nil || len(left) > 0 {
			t.Errorf("after phase %s certctl's Secrets are left in kube-system: %v %v", phase, left, err)
		}
		if phase == "trust" {
			sa = saProbe{old: mintSAToken(t, cs, oldSAKey), new: mintSAToken(t, cs, readSAKey(t, saKeyPath(pkiDir, true)))}
		}
		checkSA(t, cs, local, phase, sa)
	}

	// After drop: the refreshed kubeconfig works; the pod on the worker kept its container, and
	// its log is served through the worker's kubelet.
	pod = pausePodOn(t, cs, w.Name)
	if after := pod.Status.ContainerStatuses[0].ContainerID; after != before {
		t.Errorf("the pod on %s was restarted: container %s before, %s after", w.Name, before, after)
	}
	if _, err := cs.CoreV1().Pods("default").GetLogs(pod.Name, &corev1.PodLogOptions{}).DoRaw(ctx); err != nil {
		t.Errorf("kubectl logs %s (on %s) after the rotation: %v", pod.Name, w.Name, err)
	}
	// The in-cluster client kept its container and kept talking to the API: it still trusts
	// only the old CA, and verifies the new chain through the cross-signed CA the apiservers
	// serve after their certificates.
	dropped := time.Now()
	var cl clientLog
	err = wait.PollUntilContextTimeout(ctx, time.Second, time.Minute, true, func(context.Context) (bool, error) {
		cl = readClientLog(t, cs, incluster)
		return cl.lastOK.After(dropped), nil
	})
	t.Logf("the in-cluster client on %s (client-go, ca.crt read before trust): %d ok, %d failed %v; down windows %s", w.Name, cl.ok, cl.fail, cl.errs, windowsText(cl.windows))
	if err != nil {
		t.Errorf("the in-cluster client has no successful request after drop (last %s)", cl.lastOK.Format(time.RFC3339))
	}
	for _, e := range cl.errs {
		if strings.Contains(e, "x509") || strings.Contains(e, "certificate") {
			t.Errorf("the in-cluster client failed to verify the apiserver: %s", e)
		}
		// Its projected token was the old service-account key's until the kubelet re-requested
		// it before drop: it must never have been refused.
		if strings.Contains(e, "Unauthorized") {
			t.Errorf("the in-cluster client's token was refused: %s", e)
		}
	}
	for _, win := range cl.windows {
		if win.End.Sub(win.Start) >= time.Second {
			t.Errorf("the in-cluster client could not reach the API for %s (%s)", win.End.Sub(win.Start).Round(time.Millisecond), windowsText([]window{win}))
		}
	}
	if got, err := cs.CoreV1().Pods("default").Get(ctx, incluster.Name, metav1.GetOptions{}); err != nil {
		t.Error(err)
	} else if st := got.Status.ContainerStatuses[0]; st.ContainerID != incluster.Status.ContainerStatuses[0].ContainerID || st.RestartCount != 0 {
		t.Errorf("the in-cluster client was restarted: container %s (restarts %d), before %s", st.ContainerID, st.RestartCount, incluster.Status.ContainerStatuses[0].ContainerID)
	}
	// A new machine joins with what `kubeadm token create --print-join-command` prints now: the
	// discovery hash pins the new CA, which cluster-info carries alone.
	r = mustRun(t, multilab.Command(ctx, nodes[0], testenv.Binary(t, "kubeadm"), "token", "create", "--print-join-command", "--kubeconfig", "/etc/kubernetes/admin.conf"))
	m := regexp.MustCompile(`join (\S+) --token \S+ --discovery-token-ca-cert-hash (\S+)`).FindStringSubmatch(r.Stdout)
	if m == nil {
		t.Fatalf("no join command in %q", r.Stdout)
	}
	if err := os.WriteFile(filepath.Join(multilab.Dir, "ca-hash"), []byte(m[2]+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	lab(t, "add-node", lateNode, lateIP)
	t.Cleanup(func() {
		if r, err := multilab.Lab(context.Background(), "remove-node", lateNode); err != nil || r.Code != 0 {
			t.Errorf("remove-node %s: %v %s", lateNode, err, r)
		}
		_ = localCS().CoreV1().Nodes().Delete(context.Background(), lateNode, metav1.DeleteOptions{})
	})
	lab(t, "join", lateNode, m[1], "--discovery-timeout", "2m")
	waitNodeReady(t, cs, lateNode, 3*time.Minute)
	t.Logf("%s joined through %s after the rotation (discovery hash %s)", lateNode, m[1], m[2])

	// The etcd and front-proxy CAs: new on every control-plane node; every etcd serves a
	// certificate of the new etcd CA and refuses a client of the old one; the apiservers'
	// request-header authentication takes the new front-proxy CA's client, not the old one's;
	// what extension API servers read carries the new CAs alone.
	newCA, _ := readCA(t, pkiDir, "ca")
	newEtcdCA, newEtcdKey := readCA(t, pkiDir, "etcd/ca")
	newFPCA, newFPKey := readCA(t, pkiDir, "front-proxy-ca")
	if newEtcdCA.Equal(oldEtcdCA) || newFPCA.Equal(oldFPCA) || newCA.Equal(oldCA) {
		t.Fatalf("after drop %s still holds an old CA (ca %v, etcd-ca %v, front-proxy-ca %v)", nodes[0].Name, newCA.Equal(oldCA), newEtcdCA.Equal(oldEtcdCA), newFPCA.Equal(oldFPCA))
	}
	authCAs(t, cs, "client-ca-file", newCA, true)
	authCAs(t, cs, "requestheader-client-ca-file", newFPCA, true)
	etcdRoots := x509.NewCertPool()
	etcdRoots.AddCert(newEtcdCA)
	etcdName := pkix.Name{CommonName: "e2e-etcd-client"}
	oldEtcd, newEtcd := caClient(t, oldEtcdCA, oldEtcdKey, etcdName, etcdRoots), caClient(t, newEtcdCA, newEtcdKey, etcdName, etcdRoots)
	fpName := pkix.Name{CommonName: "front-proxy-client"} // kubeadm's --requestheader-allowed-names
	oldFP, newFP := caClient(t, oldFPCA, oldFPKey, fpName, nil), caClient(t, newFPCA, newFPKey, fpName, nil)
	for _, n := range nodes {
		if !n.ControlPlane() {
			continue
		}
		if n.Name != nodes[0].Name {
			if c, _ := readCA(t, filepath.Join(n.Dir(), "etc-kubernetes", "pki"), "etcd/ca"); !c.Equal(newEtcdCA) {
				t.Errorf("%s holds another etcd CA than %s after drop", n.Name, nodes[0].Name)
			}
		}
		etcdURL := "https://" + n.IP + ":2379/health"
		if resp, err := newEtcd.Get(etcdURL); err != nil {
			t.Errorf("etcd on %s, a client of the new etcd CA, verifying the server with the new etcd CA alone: %v", n.Name, err)
		} else if resp.Body.Close(); resp.StatusCode != http.StatusOK {
			t.Errorf("etcd on %s answered a client of the new etcd CA with %s", n.Name, resp.Status)
		}
		if resp, err := oldEtcd.Get(etcdURL); err == nil {
			resp.Body.Close()
			t.Errorf("etcd on %s took a client certificate of the old etcd CA (%s)", n.Name, resp.Status)
		} else {
			t.Logf("old etcd CA's client -> %s: %v", etcdURL, err)
		}
		apiURL := "https://" + n.APIServer() + "/api/v1/namespaces/kube-system"
		for _, c := range []struct {
			what   string
			client *http.Client
			want   int
		}{{"new", newFP, http.StatusOK}, {"old", oldFP, http.StatusUnauthorized}} {
			req, _ := http.NewRequest(http.MethodGet, apiURL, nil)
			req.Header.Set("X-Remote-User", "e2e-front-proxy")
			req.Header.Set("X-Remote-Group", "system:masters")
			resp, err := c.client.Do(req)
			if err != nil {
				t.Errorf("%s, as the front proxy with a certificate of the %s front-proxy CA: %v", apiURL, c.what, err)
				continue
			}
			resp.Body.Close()
			if resp.StatusCode != c.want {
				t.Errorf("%s answered the front proxy with a certificate of the %s front-proxy CA with %s, want %d", apiURL, c.what, resp.Status, c.want)
			}
		}
	}

	// A client certificate of the old CA: 401 from every apiserver, refused by the worker's kubelet.
	client := caClient(t, oldCA, oldKey, pkix.Name{CommonName: "e2e-old-ca", Organization: []string{"system:masters"}}, nil)
	for _, n := range nodes {
		url := "https://" + n.IP + ":10250/pods"
		if n.ControlPlane() {
			url = "https://" + n.APIServer() + "/api/v1/namespaces"
		}
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s answered a client certificate of the old CA with %s, want 401", url, resp.Status)
			}
		}
		t.Logf("old CA's client -> %s: %v %v", url, err, func() string {
			if resp != nil {
				return resp.Status
			}
			return ""
		}())
	}
}

// followLab makes the lab's CA file and admin kubeconfig those of the kubeconfig at local.
func followLab(t *testing.T, local string) {
	t.Helper()
	if err := multilab.Follow(local); err != nil {
		t.Fatal(err)
	}
}

// certctlSecrets names the Secrets certctl made in kube-system other than the rotation's own
// (the new CAs, kept from trust to drop): a worker's kubelet client key handed to its Job.
func certctlSecrets(cs kubernetes.Interface) ([]string, error) {
	secs, err := cs.CoreV1().Secrets("kube-system").List(context.Background(), metav1.ListOptions{LabelSelector: cluster.LabelName + "=certctl"})
	if err != nil {
		return nil, fmt.Errorf("list certctl's Secrets: %w", err)
	}
	var out []string
	for _, s := range secs.Items {
		if s.Name != cluster.CARotationSecret {
			out = append(out, s.Name)
		}
	}
	return out, nil
}

// readCA reads the CA pair pkiDir/base.crt, .key (base: ca, etcd/ca, front-proxy-ca).
func readCA(t *testing.T, pkiDir, base string) (*x509.Certificate, any) {
	t.Helper()
	certData, err := os.ReadFile(filepath.Join(pkiDir, base+".crt"))
	if err != nil {
		t.Fatal(err)
	}
	certs, err := pki.ParseCertificates(base+".crt", certData)
	if err != nil {
		t.Fatal(err)
	}
	keyData, err := os.ReadFile(filepath.Join(pkiDir, base+".key"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := pki.ParsePrivateKey(base+".key", keyData)
	if err != nil {
		t.Fatal(err)
	}
	return certs[0], key
}

// caClient is an HTTPS client with a client certificate for subject signed by ca; it verifies
// the servers with roots, or not at all when roots is nil (the point is then what the server
// accepts, not what it serves).
func caClient(t *testing.T, ca *x509.Certificate, caKey any, subject pkix.Name, roots *x509.CertPool) *http.Client {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      subject,
		NotBefore:    time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs:            roots,
		InsecureSkipVerify: roots == nil,
		Certificates:       []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
	}}}
}

// authCAs checks what kube-system/extension-apiserver-authentication carries under key: ca
// alone (alone), or ca and another (a rotation between trust and drop).
func authCAs(t *testing.T, cs kubernetes.Interface, key string, ca *x509.Certificate, alone bool) {
	t.Helper()
	cm, err := cs.CoreV1().ConfigMaps("kube-system").Get(context.Background(), "extension-apiserver-authentication", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	in := pki.CertificatesIn([]byte(cm.Data[key]))
	has := slices.ContainsFunc(in, ca.Equal)
	if alone && (!has || len(in) != 1) || !alone && (!has || len(in) < 2) {
		t.Errorf("extension-apiserver-authentication %s: %d CA certificate(s), has %s %v; want it %s", key, len(in), ca.Subject, has, map[bool]string{true: "alone", false: "and another"}[alone])
	}
}

// pausePodOn is the running pod runPause made on node.
func pausePodOn(t *testing.T, cs kubernetes.Interface, node string) *corev1.Pod {
	t.Helper()
	pods, err := cs.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{FieldSelector: "spec.nodeName=" + node})
	if err != nil {
		t.Fatal(err)
	}
	var newest *corev1.Pod
	for i := range pods.Items {
		p := &pods.Items[i]
		if strings.HasPrefix(p.Name, "certctl-e2e-") && p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning && len(p.Status.ContainerStatuses) > 0 &&
			(newest == nil || p.CreationTimestamp.After(newest.CreationTimestamp.Time)) {
			newest = p
		}
	}
	if newest == nil {
		t.Fatalf("no running certctl-e2e- pod on %s", node)
	}
	return newest
}

func mustRun(t *testing.T, cmd *exec.Cmd) multilab.Result {
	t.Helper()
	r, err := multilab.Run(cmd)
	if err != nil || r.Code != 0 {
		t.Fatalf("%v: %v %s", cmd.Args, err, r)
	}
	return r
}

// rollbackWithFaults runs `cluster ca-rotate all --rollback` (of trust) through issue 21's
// faults 3 and 1: an etcd member stopped in the middle of the rotation, then the orchestrator
// killed; then to its end. The rollback goes through the nodes in reverse (the workers, then
// the control-plane nodes from the last by name): the second control-plane node it reaches
// (held) holds before its quorum check (a failpoint: the lab's certctl is built with -tags
// failpoints) while the test stops the etcd member of the one before it (stopped), already
// rolled back. held's Job then refuses before changing anything (its etcd restart would leave
// one member of three), the command stops there naming stopped's member, and no etcd member
// restarts while one is down: the quorum is never lost. With the member back, the same command
// is killed once at random within a minute, and run again to the end.
func rollbackWithFaults(t *testing.T, nodes []multilab.Node, local string, cs kubernetes.Interface) {
	t.Helper()
	ctx := context.Background()
	cps := threeControlPlanes(t, nodes)
	slices.SortFunc(cps, func(a, b multilab.Node) int { return strings.Compare(a.Name, b.Name) })
	stopped, held := cps[len(cps)-1], cps[len(cps)-2]
	args := []string{"cluster", "ca-rotate", "all", "--rollback", "--kubeconfig", local, "--image", multilab.Image}

	// Fault 3: held's Job holds before its quorum check; stopped's member goes away meanwhile.
	h := newHold(t, held, "before-check etcd")
	// The checks around the member's stop ask the first node's apiserver (local names it; its
	// member stays up), each request bounded: a client through the balancer keeps its
	// connection to the apiserver it had, which HAProxy (TCP) does not cut when it marks that
	// one down, and on stopped's node a request hangs on the member that is gone (a lab run of
	// 76b9db3 waited 60 s for a 504 there).
	direct := kubeClient(t, local, 10*time.Second)
	// The etcd container of each control-plane node but stopped's, as its mirror pod shows it.
	// Asked again until the API answers with one: with a member down a request can fail (CI's
	// run of 329770d read "" for cp1, untouched, and took it for a restart).
	etcdOf := func() map[string]string {
		out := map[string]string{}
		for _, n := range cps[:len(cps)-1] {
			var last error
			if err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
				p, err := direct.CoreV1().Pods("kube-system").Get(ctx, "etcd-"+n.Name, metav1.GetOptions{})
				switch {
				case err != nil:
					last = err
				case len(p.Status.ContainerStatuses) == 0 || p.Status.ContainerStatuses[0].ContainerID == "":
					last = fmt.Errorf("pod %s shows no etcd container yet", p.Name)
				default:
					out[n.Name] = p.Status.ContainerStatuses[0].ContainerID
					return true, nil
				}
				return false, nil
			}); err != nil {
				t.Fatalf("%s's etcd container: %v (%v)", n.Name, last, err)
			}
		}
		return out
	}
	// Through the balancer over the rollback: until the test stops a member (the fault itself
	// takes that node's apiserver out, for the balancer to notice), and again once it is back.
	measure := balancerClients(t, local)
	start := time.Now()
	cmd, out, exited := startCertctl(t, args...)
	if err := h.fired(ctx, 6*time.Minute); err != nil {
		_ = cmd.Process.Kill()
		<-exited
		t.Fatalf("%s's rollback never reached its etcd check: %v\n%s", held.Name, err, out.String())
	}
	before := etcdOf()
	measure("the rollback, up to " + stopped.Name + "'s member stopped")
	etcdAddr, back := stopEtcd(t, stopped)
	stopAt := time.Now()
	h.let(t)
	t.Logf("%s's etcd member stopped %s after the rollback started, as %s's Job reaches its quorum check", stopped.Name, stopAt.Sub(start).Round(100*time.Millisecond), held.Name)
	err := endsWithin(t, cmd, out, exited, 5*time.Minute, "cluster ca-rotate --rollback, "+stopped.Name+"'s etcd stopped,")
	t.Logf("the command ended %s after the member stopped: %v\n%s", time.Since(stopAt).Round(100*time.Millisecond), err, out.String())
	if err == nil || !strings.Contains(out.String(), "node "+held.Name+" failed") || !strings.Contains(out.String(), etcdAddr) {
		t.Fatalf("with %s's etcd member stopped, the rollback must stop at %s naming that member (%s): %v\n%s", stopped.Name, held.Name, etcdAddr, err, out.String())
	}
	// Nothing changed on held and after it: their rotation state is still trust's, their etcd
	// members never restarted while one was down (the quorum kept: 2 of 3 all along).
	for _, n := range cps[:len(cps)-1] {
		if _, err := os.Stat(filepath.Join(n.Dir(), "etc-kubernetes", "pki", "etcd", "rotation", "etcd-ca", "state.json")); err != nil {
			t.Errorf("%s, not reached or refused, lost its etcd-ca rotation state: %v", n.Name, err)
		}
	}
	after := etcdOf()
	for _, n := range cps[:len(cps)-1] {
		if after[n.Name] != before[n.Name] {
			t.Errorf("%s's etcd container changed while %s's member was down (%q, then %q): a restart that could cost the quorum", n.Name, stopped.Name, before[n.Name], after[n.Name])
		}
	}
	if _, err := direct.CoreV1().ConfigMaps("kube-system").List(ctx, metav1.ListOptions{Limit: 1}); err != nil {
		t.Errorf("a list with %s's member down (2 of 3: the quorum kept): %v", stopped.Name, err)
	}
	back()
	if err := wait.PollUntilContextTimeout(ctx, time.Second, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		return len(etcdNotReady(ctx, cs)) == 0, nil
	}); err != nil {
		t.Fatalf("the etcd members not all ready again: %v (%v)", err, etcdNotReady(ctx, cs))
	}
	t.Logf("%s's etcd member back and ready %s after it stopped", stopped.Name, time.Since(stopAt).Round(100*time.Millisecond))
	// Its kubelet too: it reaches the API through its node's own apiserver (kubeadm's local
	// mode), which failed without its etcd and may still be in its crash back-off, and its Node
	// goes NotReady meanwhile; the next command rightly refuses a node that is not Ready (CI's
	// run of dc9783c went on too soon).
	waitNodeBack(t, cs, stopped.Name, 4*time.Minute)
	t.Logf("%s's kubelet reaches the API and its Node is Ready %s after its member stopped", stopped.Name, time.Since(stopAt).Round(100*time.Millisecond))

	// Fault 1 in a rollback: the same command killed at random within its first minute, then
	// run to the end.
	measure = balancerClients(t, local)
	defer func() {
		if !t.Failed() {
			measure("the rollback, from " + stopped.Name + "'s member back to the end (a kill included)")
		}
	}()
	killed, finished := killRuns(t, cs, args, 1, killAt{Window: time.Minute}, func() string {
		_, err := cs.CoreV1().Secrets("kube-system").Get(ctx, cluster.CARotationSecret, metav1.GetOptions{})
		return fmt.Sprintf("the rotation Secret there: %v", err == nil)
	})
	for _, l := range killed {
		t.Log(l)
	}
	if finished {
		return
	}
	r := certctlWith(t, local, "cluster", "ca-rotate", "all", "--rollback")
	if r.Code != 0 || !strings.Contains(r.Stdout, "phase rollback of trust") {
		t.Fatalf("cluster ca-rotate --rollback after trust (after a refusal and a kill): %s", r)
	}
}

// balancerClients starts two clients through the balancer, every 50 ms: /readyz (its etcd
// check included) and a list of a real object, trusting the CAs of kubeconfig and
// authenticating with its client certificate. The function it returns stops them, logs what
// they saw over what, and fails the test for any request failed (target 0) or any down window
// of a second or more.
func balancerClients(t *testing.T, kubeconfig string) func(what string) {
	t.Helper()
	return balancerClientsTrusting(t, kubeconfig, nil)
}

// balancerClientsTrusting is balancerClients verifying the apiservers with the CA certificates
// of extra (PEM) too: during phase issue of the cluster CA, the new CA that signs what they serve.
func balancerClientsTrusting(t *testing.T, kubeconfig string, extra []byte) func(what string) {
	t.Helper()
	roots := x509.NewCertPool()
	if kc, err := clientcmd.LoadFromFile(kubeconfig); err == nil {
		for _, c := range kc.Clusters {
			roots.AppendCertsFromPEM(c.CertificateAuthorityData)
		}
	}
	roots.AppendCertsFromPEM(extra)
	pollers := []struct {
		what string
		p    *poller
	}{
		{"/readyz", startPollerPath(t, multilab.LBAddr, "/readyz", roots, 50*time.Millisecond, 20*time.Minute)},
		{"list", startPollerAs(t, multilab.LBAddr, listPath, roots, testenv.KubeconfigClientCert(t, kubeconfig), 50*time.Millisecond, 20*time.Minute)},
	}
	return func(over string) {
		t.Helper()
		for _, pl := range pollers {
			ok, fail, errs := pl.p.Stop()
			t.Logf("%s: through the balancer %s %d ok, %d failed, %d across a pause of the whole machine (not counted) %v; down windows %s", over, pl.what, ok, fail, pl.p.Paused(), errs, windowsText(pl.p.Windows()))
			if ok == 0 {
				t.Errorf("%s: no %s through the balancer succeeded", over, pl.what)
			}
			if fail > 0 {
				t.Errorf("%s: %d requests (%s) through the balancer failed (target 0): %v", over, fail, pl.what, errs)
			}
			for _, win := range pl.p.Windows() {
				if win.End.Sub(win.Start) >= time.Second {
					t.Errorf("%s: %s through the balancer was down %s", over, pl.what, win.End.Sub(win.Start).Round(time.Millisecond))
				}
			}
		}
	}
}

// kubeClient is a clientset from kubeconfig whose every request ends within timeout.
func kubeClient(t *testing.T, kubeconfig string, timeout time.Duration) kubernetes.Interface {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Timeout = timeout
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}
