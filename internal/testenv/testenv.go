// Package testenv runs real Kubernetes pieces for certctl's tests: node trees written by the
// real kubeadm, and a real etcd, kube-apiserver and (optionally) kube-controller-manager on
// loopback, started on a given PKI tree. The binaries come from hack/build-k8s.sh's cache.
// A missing binary skips the test loudly, or fails it when CERTCTL_REQUIRE_K8S=1 (CI).
package testenv

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	utilversion "k8s.io/apimachinery/pkg/util/version"

	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/sandbox"
)

// K8sVersion is the Kubernetes version the tests run against by default (the newest
// supported release); hack/build-k8s.sh builds it. K8S_VERSION overrides it.
const K8sVersion = "v1.37.2"

// MatrixVersions are the kubeadm releases whose trees certctl must keep reading, renewing and
// rotating: every supported release (1.35-1.37) and 1.32, the oldest still seen in the field;
// CERTCTL_MATRIX (space-separated, set by the Makefile) overrides the list. Only kubeadm is
// needed per version (`K8S_VERSION=V hack/build-k8s.sh kubeadm`, what `make test` runs).
var MatrixVersions = matrixVersions()

func matrixVersions() []string {
	if v := strings.Fields(os.Getenv("CERTCTL_MATRIX")); len(v) > 0 {
		return v
	}
	return []string{"v1.32.13", "v1.35.4", "v1.36.3", "v1.37.2"}
}

// Version is the Kubernetes version of this run: K8S_VERSION, else K8sVersion.
func Version() string {
	if v := os.Getenv("K8S_VERSION"); v != "" {
		return v
	}
	return K8sVersion
}

// BinDir is where hack/build-k8s.sh puts the binaries of this run's version.
func BinDir() string { return BinDirFor(Version()) }

// BinDirFor is where hack/build-k8s.sh puts the binaries of version.
func BinDirFor(version string) string {
	cache := os.Getenv("CERTCTL_CACHE")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "certctl")
	}
	return filepath.Join(cache, "k8s-"+version, "bin")
}

// Binary returns the path of a cached Kubernetes binary (kubeadm, kube-apiserver, etcd, ...).
func Binary(t testing.TB, name string) string {
	t.Helper()
	return VersionBinary(t, Version(), name)
}

// VersionBinary returns the path of a cached Kubernetes binary of version.
func VersionBinary(t testing.TB, version, name string) string {
	t.Helper()
	p := filepath.Join(BinDirFor(version), name)
	if _, err := os.Stat(p); err != nil {
		msg := fmt.Sprintf("%s %s is not built (%s): run K8S_VERSION=%s hack/build-k8s.sh %s", name, version, p, version, name)
		if os.Getenv("CERTCTL_REQUIRE_K8S") == "1" {
			t.Fatalf("CERTCTL_REQUIRE_K8S=1 and %s", msg)
		}
		t.Skipf("SKIP (loud): %s — this test needs the real binary and did not run", msg)
	}
	return p
}

// FreePort returns a TCP port free on ip for the test to give to a server it starts. A port
// from listen(":0") is in the kernel's ephemeral range, where it can be taken, between the
// check and the server's bind, by any outgoing connection's local port or by a test of
// another package running in parallel (seen in CI: "bind: address already in use", then the
// readiness probe talking to another package's etcd). So the port comes from below that
// range (10000-32767), and is reserved across processes with an exclusive file in
// os.TempDir()/certctl-test-ports (reservations older than an hour are taken back).
func FreePort(t testing.TB, ip string) int {
	t.Helper()
	dir := filepath.Join(os.TempDir(), "certctl-test-ports")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("free port: %v", err)
	}
	for range 2000 {
		port := 10000 + rand.IntN(22768)
		mark := filepath.Join(dir, strconv.Itoa(port))
		f, err := os.OpenFile(mark, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err != nil {
			if st, serr := os.Stat(mark); serr == nil && time.Since(st.ModTime()) > time.Hour {
				os.Remove(mark)
			}
			continue
		}
		f.Close()
		ln, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
		if err != nil {
			continue // in use by something else: keep the mark, try another
		}
		ln.Close()
		t.Cleanup(func() { os.Remove(mark) })
		return port
	}
	t.Fatalf("no free port on %s in 10000-32767", ip)
	return 0
}

// TreeOptions shape a kubeadm-made tree.
type TreeOptions struct {
	NodeName    string   // default master-1
	AdvertiseIP string   // default 10.2.1.151 (kubeadm refuses loopback advertise addresses)
	CertSANs    []string // apiServer.certSANs
	// Version is the kubeadm release that writes the tree (and its kubernetesVersion);
	// default Version().
	Version string
	// ControlPlaneEndpoint, default 127.0.0.1:6443 (loopback: the kubeconfigs never point at
	// an address off this machine).
	ControlPlaneEndpoint string
	// Node also writes what a whole node has beside certificates and kubeconfigs: the
	// static-pod manifests (control-plane all, etcd local) and the kubelet's files
	// (kubelet-start: config.yaml, kubeadm-flags.env, instance-config.yaml on 1.36+).
	Node bool
}

// Tree is a node tree written by the real kubeadm under Root.
type Tree struct {
	Root    string
	Layout  pki.Layout
	Version string
	kubeadm string
}

// KubeadmTree runs `kubeadm init phase certs all` and `kubeadm init phase kubeconfig all`
// (with Node, also control-plane all, etcd local and kubelet-start) with --rootfs into a new
// temporary root: the result is laid out like a node (Root/etc/kubernetes/pki,
// Root/etc/kubernetes/*.conf); the config is Root/kubeadm.yaml.
func KubeadmTree(t testing.TB, o TreeOptions) *Tree {
	t.Helper()
	if o.Version == "" {
		o.Version = Version()
	}
	kubeadm := VersionBinary(t, o.Version, "kubeadm")
	if o.NodeName == "" {
		o.NodeName = "master-1"
	}
	if o.AdvertiseIP == "" {
		o.AdvertiseIP = "10.2.1.151"
	}
	if o.ControlPlaneEndpoint == "" {
		o.ControlPlaneEndpoint = "127.0.0.1:6443"
	}
	root := t.TempDir()
	sans := ""
	if len(o.CertSANs) > 0 {
		sans = "apiServer:\n  certSANs: [" + strings.Join(o.CertSANs, ", ") + "]\n"
	}
	cfg := fmt.Sprintf(`apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
localAPIEndpoint:
  advertiseAddress: %s
  bindPort: 6443
nodeRegistration:
  name: %s
  criSocket: unix:///run/containerd/containerd.sock
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
kubernetesVersion: %s
certificatesDir: /etc/kubernetes/pki
controlPlaneEndpoint: %s
%s`, o.AdvertiseIP, o.NodeName, o.Version, o.ControlPlaneEndpoint, sans)
	if err := os.WriteFile(filepath.Join(root, "kubeadm.yaml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	tr := &Tree{Root: root, Layout: pki.NewLayout(pki.LayoutOptions{Root: root, Home: "/root"}), Version: o.Version, kubeadm: kubeadm}
	// --rootfs makes kubeadm chroot into the tree, so it writes /etc/kubernetes there.
	tr.Kubeadm(t, "init", "phase", "certs", "all")
	tr.Kubeadm(t, "init", "phase", "kubeconfig", "all")
	if o.Node {
		tr.Kubeadm(t, "init", "phase", "control-plane", "all")
		tr.Kubeadm(t, "init", "phase", "etcd", "local")
		// Writes the kubelet's files, then finds no init system to start it with.
		tr.Kubeadm(t, "init", "phase", "kubelet-start")
	}
	return tr
}

// Kubeadm runs kubeadm chrooted into the tree with its config and returns its output.
func (tr *Tree) Kubeadm(t testing.TB, args ...string) string {
	t.Helper()
	args = append(args, "--rootfs", tr.Root, "--config", "/kubeadm.yaml")
	out, err := exec.Command(tr.kubeadm, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("kubeadm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// CheckExpiration returns what `kubeadm certs check-expiration -o json` says: name -> expiry
// for every certificate and CA kubeadm knows.
func (tr *Tree) CheckExpiration(t testing.TB) map[string]time.Time {
	t.Helper()
	out := tr.Kubeadm(t, "certs", "check-expiration", "-o", "json")
	var doc struct {
		Certificates []struct {
			Name           string    `json:"name"`
			ExpirationDate time.Time `json:"expirationDate"`
			Missing        bool      `json:"missing"`
		} `json:"certificates"`
		CertificateAuthorities []struct {
			Name           string    `json:"name"`
			ExpirationDate time.Time `json:"expirationDate"`
		} `json:"certificateAuthorities"`
	}
	// kubeadm prints notes before the JSON document.
	if i := strings.Index(out, "{"); i >= 0 {
		out = out[i:]
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("parse kubeadm check-expiration: %v\n%s", err, out)
	}
	m := map[string]time.Time{}
	for _, c := range doc.Certificates {
		if !c.Missing {
			m[c.Name] = c.ExpirationDate
		}
	}
	for _, c := range doc.CertificateAuthorities {
		m[c.Name] = c.ExpirationDate
	}
	return m
}

// ServedCert dials addr over TLS and returns the leaf certificate it serves (unverified).
func ServedCert(t testing.TB, addr string) *x509.Certificate {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // reading only
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0]
}

// process is a started binary with its log.
type process struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func start(t testing.TB, dir, name, bin string, args ...string) *process {
	t.Helper()
	logPath := filepath.Join(dir, name+".log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	logf.Close()
	p := &process{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(p.stop)
	return p
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *process) stop() {
	if p.exited() {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

func (p *process) tail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// waitHTTPS polls url (verified against roots) until it answers 200 or the deadline passes.
// serverName is the name verified (kubeadm's apiserver certificate does not cover 127.0.0.1;
// it covers "kubernetes"). It gives up early when p exits.
func waitHTTPS(ctx context.Context, p *process, url, serverName string, roots *x509.CertPool, cert *tls.Certificate, timeout time.Duration) error {
	cfg := &tls.Config{RootCAs: roots, ServerName: serverName}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	client := httpClient(cfg, 2*time.Second)
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		if p.exited() {
			return fmt.Errorf("%s exited: %v", p.name, p.cmd.ProcessState)
		}
		req, _ := newRequest(ctx, url)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
			last = fmt.Errorf("%s: HTTP %d", url, resp.StatusCode)
		} else {
			last = err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s not healthy after %s: %v", url, timeout, last)
}

// SandboxNode writes a sandbox kubeadm node (ECDSA keys, for speed) with the given faults
// into a temporary directory and returns its layout.
func SandboxNode(t testing.TB, faults ...sandbox.Fault) pki.Layout {
	t.Helper()
	l, err := sandbox.Create(sandbox.Options{Dir: t.TempDir(), KeyAlgorithm: pki.AlgECDSAP256, Faults: faults})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// AtLeast reports whether the Kubernetes version v (v1.37.2) is min (v1.35) or later.
func AtLeast(t testing.TB, v, min string) bool {
	t.Helper()
	have, err := utilversion.ParseGeneric(v)
	if err != nil {
		t.Fatalf("version %q: %v", v, err)
	}
	return have.AtLeast(utilversion.MustParseGeneric(min))
}
