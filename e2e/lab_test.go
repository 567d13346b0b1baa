package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/certctl/certctl/internal/labns"
	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/backup"
	"github.com/certctl/certctl/pkg/fsutil"
	"github.com/certctl/certctl/pkg/live"
	manifestpkg "github.com/certctl/certctl/pkg/manifest"
	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/restart"
)

// The lab's names, as hack/lab/env.sh sets them.
const (
	labMark = "/etc/kubernetes/.certctl-lab"
	labHome = "/var/lib/certctl-lab/home"
	apiAddr = "127.0.0.1:6443"
	etcdAdr = "127.0.0.1:2379"
)

var labSkip string

func TestMain(m *testing.M) {
	switch {
	case os.Getenv("CERTCTL_LAB") != "1":
		labSkip = "SKIPPING the lab end-to-end tests: set CERTCTL_LAB=1 and bring the lab up (make e2e does both, as root)"
	case !exists(labMark) || !labns.Up():
		fmt.Fprintln(os.Stderr, "CERTCTL_LAB=1 but the lab is not up: run hack/lab/up.sh (or make e2e)")
		os.Exit(1)
	case !labns.Inside():
		// The lab's apiserver, etcd and kubelet listen inside its network namespace.
		if err := labns.Reexec(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	code := m.Run()
	testenv.RemoveCertctl()
	os.Exit(code)
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

func requireLab(t *testing.T) pki.Layout {
	t.Helper()
	if labSkip != "" {
		t.Skip(labSkip)
	}
	l := pki.NewLayout(pki.LayoutOptions{Root: "/", Home: labHome})
	waitLive(t, 3*time.Minute)
	return l
}

// certctl runs the certctl binary as the operator would on the node, with the lab's HOME.
func certctl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(testenv.Certctl(t), args...)
	cmd.Env = append(os.Environ(), "HOME="+labHome)
	out, err := cmd.CombinedOutput()
	t.Logf("certctl %s:\n%s", strings.Join(args, " "), out)
	return string(out), err
}

// waitLive polls the apiserver's /livez until it answers ok.
func waitLive(t *testing.T, timeout time.Duration) {
	t.Helper()
	pool := x509.NewCertPool()
	pemData, err := os.ReadFile("/etc/kubernetes/pki/ca.crt")
	if err != nil || !pool.AppendCertsFromPEM(pemData) {
		t.Fatalf("read the lab's CA: %v", err)
	}
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	deadline := time.Now().Add(timeout)
	for {
		resp, err := client.Get("https://" + apiAddr + "/livez")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the lab's apiserver is not live after %s: %v", timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func criSocket(t *testing.T, l pki.Layout) string {
	t.Helper()
	ep := restart.FindCRIEndpoint(l)
	if ep == "" {
		t.Fatal("no CRI socket found from /var/lib/kubelet/config.yaml")
	}
	return ep
}

func containers(t *testing.T, ep, component string) []string {
	t.Helper()
	ids, err := restart.RunningContainerIDs(context.Background(), ep, component)
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestLabRenewAllRestart is the field case end to end: renew everything for ten years with
// an extra IP SAN, restart what needs it, and check what the node serves and that the
// refreshed ~/.kube/config really authenticates.
func TestLabRenewAllRestart(t *testing.T) {
	l := requireLab(t)
	ep := criSocket(t, l)
	copyFile(t, "/etc/kubernetes/admin.conf", l.UserKubeconfig) // the runbook's cp, done earlier
	apiBefore, etcdBefore := testenv.ServedCert(t, apiAddr), testenv.ServedCert(t, etcdAdr)
	apiCtrBefore := containers(t, ep, pki.CompAPIServer)
	cmBefore, schedBefore := containers(t, ep, pki.CompControllerManager), containers(t, ep, pki.CompScheduler)
	if len(cmBefore) != 1 || len(schedBefore) != 1 {
		t.Fatalf("want one running controller-manager and scheduler container, have %v and %v", cmBefore, schedBefore)
	}

	out, err := certctl(t, "renew", "all", "--days", "3650", "--san", "10.2.1.139", "--restart", "--yes", "--timeout", "3m")
	if err != nil {
		t.Fatalf("certctl renew all --restart: %v", err)
	}

	apiAfter, apiFile := testenv.ServedCert(t, apiAddr), testenv.CertFile(t, "/etc/kubernetes/pki/apiserver.crt")
	if live.Fingerprint(apiAfter) == live.Fingerprint(apiBefore) {
		t.Errorf(":6443 still serves the old certificate")
	}
	if live.Fingerprint(apiAfter) != live.Fingerprint(apiFile) {
		t.Errorf(":6443 serves %s…, apiserver.crt is %s…", live.Fingerprint(apiAfter)[:16], live.Fingerprint(apiFile)[:16])
	}
	if !slices.ContainsFunc(apiAfter.IPAddresses, func(ip net.IP) bool { return ip.Equal(net.ParseIP("10.2.1.139")) }) {
		t.Errorf("served apiserver certificate lacks the --san 10.2.1.139: %v", apiAfter.IPAddresses)
	}
	for _, ip := range apiBefore.IPAddresses {
		if !slices.ContainsFunc(apiAfter.IPAddresses, ip.Equal) {
			t.Errorf("the renewal dropped IP SAN %s the old certificate had", ip)
		}
	}
	// --days 3650, capped at the CA's own expiry (kubeadm's CA lives ten years).
	ca := testenv.CertFile(t, "/etc/kubernetes/pki/ca.crt")
	if apiAfter.NotAfter.After(ca.NotAfter) || time.Until(apiAfter.NotAfter) < 3000*24*time.Hour {
		t.Errorf("apiserver certificate expires %s; want about ten years, capped at the CA's %s", apiAfter.NotAfter, ca.NotAfter)
	}
	etcdAfter := testenv.ServedCert(t, etcdAdr)
	if live.Fingerprint(etcdAfter) == live.Fingerprint(etcdBefore) || live.Fingerprint(etcdAfter) != live.Fingerprint(testenv.CertFile(t, "/etc/kubernetes/pki/etcd/server.crt")) {
		t.Errorf("etcd does not serve the renewed etcd/server.crt")
	}
	// The controller-manager and scheduler read their kubeconfigs once: they must have run
	// again (new containers), the others not more than needed: the apiserver loads its
	// serving and client pairs again by itself (no downtime).
	if a := containers(t, ep, pki.CompAPIServer); len(a) != 1 || len(apiCtrBefore) != 1 || a[0] != apiCtrBefore[0] {
		t.Errorf("apiserver container %v, before %v: want the same one (no restart)", a, apiCtrBefore)
	}
	if cm := containers(t, ep, pki.CompControllerManager); len(cm) != 1 || cm[0] == cmBefore[0] {
		t.Errorf("controller-manager container %v, before %v: want a new one", cm, cmBefore)
	}
	if s := containers(t, ep, pki.CompScheduler); len(s) != 1 || s[0] == schedBefore[0] {
		t.Errorf("scheduler container %v, before %v: want a new one", s, schedBefore)
	}
	for _, want := range []string{"etcd               reloaded its certificate without a restart", "apiserver          reloaded its certificate without a restart", "now uses admin.conf's credentials"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}

	// ~/.kube/config was refreshed and authenticates against the real apiserver.
	cfg, err := clientcmd.BuildConfigFromFlags("", l.UserKubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	nodes, err := cs.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatalf("list nodes with the refreshed %s: %v", l.UserKubeconfig, err)
	}
	if len(nodes.Items) != 1 || nodes.Items[0].Name != "certctl-lab" {
		t.Errorf("nodes: %v", nodes.Items)
	}
	// And the real kubeadm sees the same expiries certctl wrote.
	kubeadm := testenv.Binary(t, "kubeadm")
	ck, err := exec.Command(kubeadm, "certs", "check-expiration").CombinedOutput()
	if err != nil {
		t.Fatalf("kubeadm certs check-expiration: %v\n%s", err, ck)
	}
	if !strings.Contains(string(ck), apiAfter.NotAfter.UTC().Format("Jan 02, 2006 15:04 MST")) {
		t.Errorf("kubeadm does not report the new apiserver expiry %s:\n%s", apiAfter.NotAfter.UTC(), ck)
	}
}

// TestLabRollbackBrokenCertificate: apiserver.crt is replaced by a certificate from the right
// CA for another key; the real apiserver cannot start with it, so restart rolls back to the
// backup and the apiserver serves the old certificate again.
func TestLabRollbackBrokenCertificate(t *testing.T) {
	l := requireLab(t)
	crt, key := filepath.Join(l.PKIDir, "apiserver.crt"), filepath.Join(l.PKIDir, "apiserver.key")
	before := testenv.ServedCert(t, apiAddr)
	m, err := backup.Create(fsutil.OS{}, l, "e2e rollback", []string{crt, key}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	inv := pki.Load(l, pki.Default())
	ca := inv.Get("ca")
	otherKey, err := pki.GenerateKey(pki.AlgRSA2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := pki.TemplateFrom(inv.Get("apiserver").Cert())
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Minute), time.Now().Add(24*time.Hour)
	broken, err := pki.Sign(ca.Cert(), ca.Key, otherKey, tmpl)
	if err != nil {
		t.Fatal(err)
	}
	if err := fsutil.WriteFileAtomic(crt, pki.EncodeCertificates(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	var progress bytes.Buffer
	_, err = restart.Run(context.Background(), restart.Options{
		Layout: l, Timeout: 45 * time.Second,
		Steps:    []restart.Step{{Component: pki.CompAPIServer, Action: restart.ActionRestart}},
		Stopper:  restart.CRIStopper{Endpoint: criSocket(t, l)},
		Progress: restart.NewProgress(&progress, false),
		Rollback: func(string) error { _, err := backup.Restore(fsutil.OS{}, l, m.ID); return err },
	})
	t.Logf("progress:\n%s", progress.String())
	// The real kubelet starts the apiserver again and again, and it exits each time: the
	// container runtime's count of its exits ends the wait (not the 45 s timeout).
	var rb *restart.RolledBackError
	var crash *restart.CrashLoopError
	if !errors.As(err, &rb) || !errors.As(err, &crash) || crash.Exits < restart.DefaultCrashExits {
		t.Fatalf("err %v, want a rollback after the apiserver's container exited %d times", err, restart.DefaultCrashExits)
	}
	t.Logf("rolled back: %v", crash)
	if !exists(filepath.Join(l.ManifestsDir, "kube-apiserver.yaml")) {
		t.Fatal("the manifest is not back")
	}
	if after := testenv.ServedCert(t, apiAddr); live.Fingerprint(after) != live.Fingerprint(before) {
		t.Errorf("after the rollback :6443 serves %s…, want the old %s…", live.Fingerprint(after)[:16], live.Fingerprint(before)[:16])
	}
}

// freezeStaged waits (polling every millisecond, for at most a minute) until the certctl of cmd
// has moved the component's manifest out, freezes it there with SIGSTOP, and makes sure the
// component is down (certctl may have stopped it already). It returns the manifest's path.
func freezeStaged(t *testing.T, l pki.Layout, cmd *exec.Cmd, out *bytes.Buffer, component string) string {
	t.Helper()
	manifest := filepath.Join(l.ManifestsDir, manifestpkg.Files[component])
	deadline := time.Now().Add(time.Minute)
	for exists(manifest) {
		if time.Now().After(deadline) {
			t.Fatalf("the manifest never moved out:\n%s", out.String())
		}
		time.Sleep(time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	if exists(manifest) {
		t.Fatalf("certctl put the manifest back within a millisecond:\n%s", out.String())
	}
	_ = restart.CRIStopper{Endpoint: criSocket(t, l)}.Stop(context.Background(), component)
	if len(containers(t, criSocket(t, l), component)) != 0 {
		t.Fatalf("the %s container still runs with its manifest out", component)
	}
	return manifest
}

// TestLabKilledWhileStaged: certctl is SIGKILLed while the apiserver's manifest is out and the
// apiserver is down; the next certctl command puts the manifest back, says so, and the real
// kubelet starts the apiserver again.
func TestLabKilledWhileStaged(t *testing.T) {
	l := requireLab(t)
	cmd := exec.Command(testenv.Certctl(t), "restart", "apiserver", "--timeout", "2m")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	// Frozen with the manifest out and the apiserver down, then killed: the worst moment.
	manifest := freezeStaged(t, l, cmd, &out, pki.CompAPIServer)
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	if exists(manifest) {
		t.Fatal("the manifest came back before the next certctl run")
	}
	rec, err := certctl(t, "inspect", "-o", "json")
	if err != nil {
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() > 2 {
			t.Fatalf("next certctl run: %v", err)
		}
	}
	if !strings.Contains(rec, "put "+manifest+" back") {
		t.Errorf("the next run did not say it put the manifest back")
	}
	if !exists(manifest) {
		t.Fatal("manifest still missing")
	}
	waitLive(t, 3*time.Minute)
}

// TestLabTerminatedWhileStaged: `certctl renew controller-manager.conf --restart` gets SIGTERM
// (what a node Job's container gets when the Job is deleted or passes its deadline) while the
// controller-manager's manifest is out and the controller-manager is down (it reads its
// kubeconfig once, so the renewal restarts it). certctl puts the manifest back before it exits,
// within the pod's grace period, and rolls nothing back: the real kubelet starts the
// controller-manager on the renewed kubeconfig, with no other certctl run needed.
func TestLabTerminatedWhileStaged(t *testing.T) {
	l := requireLab(t)
	conf := filepath.Join(l.KubeconfigDir, "controller-manager.conf")
	before := testenv.KubeconfigClientCert(t, conf)
	cmd := exec.Command(testenv.Certctl(t), "renew", "controller-manager.conf", "--days", "400", "--restart", "--yes", "--timeout", "2m")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() { _ = cmd.Process.Kill() }()
	manifest := freezeStaged(t, l, cmd, &out, pki.CompControllerManager)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Process.Signal(syscall.SIGCONT)
	var err error
	select {
	case err = <-exited:
	case <-time.After(30 * time.Second): // a pod's default termination grace period
		t.Fatalf("certctl still runs 30 s after SIGTERM:\n%s", out.String())
	}
	t.Logf("certctl after SIGTERM: %v\n%s", err, out.String())
	if err == nil {
		t.Error("certctl exited 0 after an interrupted restart")
	}
	if !exists(manifest) {
		t.Fatal("certctl exited after SIGTERM with the manifest still out")
	}
	// The kubelet starts it again: poll (every 200 ms, at most 3 minutes) for its container.
	ep := criSocket(t, l)
	for deadline := time.Now().Add(3 * time.Minute); len(containers(t, ep, pki.CompControllerManager)) != 1; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no controller-manager container runs 3 minutes after the manifest came back")
		}
	}
	after := testenv.KubeconfigClientCert(t, conf)
	if after.Leaf.Equal(before.Leaf) {
		t.Fatal("controller-manager.conf holds the old client certificate: the renewal was rolled back or never written")
	}
}

// TestLabKubeletRestartWithoutSystemd: the lab's kubelet is not a systemd service (no
// systemd here), so certctl restart kubelet must say so and what to do, and change nothing.
func TestLabKubeletRestartWithoutSystemd(t *testing.T) {
	requireLab(t)
	if exists("/run/systemd/system") {
		t.Skip("this machine runs systemd: the kubelet restart path is covered by pkg/kubelet's tests")
	}
	out, err := certctl(t, "restart", "kubelet")
	if err == nil {
		t.Fatal("certctl restart kubelet succeeded without systemd")
	}
	if !strings.Contains(out, "systemd") || !strings.Contains(out, "restart the kubelet") {
		t.Errorf("the error does not say what to do instead:\n%s", out)
	}
}
