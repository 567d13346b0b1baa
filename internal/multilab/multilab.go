// Package multilab is the Go side of the multi-node lab (hack/lab/multi.sh): its names and
// addresses, running a command inside one node (its network, mount and UTS namespaces), and
// moving a test program into the lab's client namespace, where every node and the load
// balancer are reachable. The names here mirror hack/lab/multi-env.sh.
package multilab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/certctl/certctl/internal/labns"
)

const (
	Dir      = "/var/lib/certctl-multi" // ML_DIR
	RunDir   = "/run/certctl-multi"     // ML_RUN
	Prefix   = "cml"                    // ML_PREFIX
	ClientNS = Prefix + "-client"
	LBIP     = "10.2.1.139"
	LBAddr   = LBIP + ":6443"
	Image    = "localhost/certctl:dev" // ML_IMAGE
)

// Node is one node of the lab.
type Node struct {
	Name string
	IP   string
	Role string // "cp" or "w"
}

// ControlPlane reports whether the node runs the control plane.
func (n Node) ControlPlane() bool { return n.Role == "cp" }

// APIServer is the node's own apiserver address.
func (n Node) APIServer() string { return n.IP + ":6443" }

// Dir is the node's directory on the host (its /etc/kubernetes is Dir/etc-kubernetes...).
func (n Node) Dir() string { return filepath.Join(Dir, "nodes", n.Name) }

// Up reports whether `multi.sh up` completed.
func Up() bool {
	_, err := os.Stat(filepath.Join(Dir, "up.done"))
	return err == nil
}

// Nodes lists the lab's nodes, control-plane nodes first, each group by name.
func Nodes() ([]Node, error) {
	ents, err := os.ReadDir(filepath.Join(Dir, "nodes"))
	if err != nil {
		return nil, fmt.Errorf("the multi-node lab is not up (hack/lab/multi.sh up): %w", err)
	}
	var nodes []Node
	for _, e := range ents {
		n := Node{Name: e.Name()}
		ip, err1 := os.ReadFile(filepath.Join(n.Dir(), "ip"))
		role, err2 := os.ReadFile(filepath.Join(n.Dir(), "role"))
		if err1 != nil || err2 != nil {
			continue // being added or removed
		}
		n.IP, n.Role = strings.TrimSpace(string(ip)), strings.TrimSpace(string(role))
		nodes = append(nodes, n)
	}
	sort.Slice(nodes, func(i, j int) bool {
		if nodes[i].ControlPlane() != nodes[j].ControlPlane() {
			return nodes[i].ControlPlane()
		}
		return nodes[i].Name < nodes[j].Name
	})
	return nodes, nil
}

// AdminKubeconfig is a copy of the first control-plane node's admin.conf (its server is that
// node's address: the cluster is made as case B found it).
func AdminKubeconfig() string { return filepath.Join(Dir, "admin.conf") }

// CACert is the cluster CA.
func CACert() string { return filepath.Join(Dir, "ca.crt") }

// InClient reports whether this process runs in the lab's client namespace.
func InClient() bool { return labns.InsideNS("/run/netns/" + ClientNS) }

// ReexecInClient runs this program again inside the client namespace (see labns.Reexec).
func ReexecInClient() error { return labns.ReexecNS("/run/netns/" + ClientNS) }

// Script is hack/lab/multi.sh of this checkout.
func Script() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", fmt.Errorf("cannot locate hack/lab/multi.sh")
	}
	return filepath.Join(filepath.Dir(file), "..", "..", "hack", "lab", "multi.sh"), nil
}

// Command is CMD run inside node n: its network, mount and UTS namespaces and a HOME of its own,
// as `multi.sh exec` does. Paths in args resolve in the node's mount namespace, which sees the
// host's files except the node's own directories (/etc/kubernetes, /var/lib/kubelet, ...).
// The lab's containerd tools (ctr) come first in its PATH, as in `multi.sh exec`.
func Command(ctx context.Context, n Node, args ...string) *exec.Cmd {
	ns := filepath.Join(RunDir, "ns", n.Name)
	full := []string{
		"--net=/run/netns/" + Prefix + "-" + n.Name, "--mount=" + ns + ".mnt", "--uts=" + ns + ".uts",
		"env", "HOME=" + filepath.Join(n.Dir(), "home"), "KUBECONFIG=",
	}
	if bin := ContainerdBin(); bin != "" {
		full = append(full, "PATH="+bin+":"+os.Getenv("PATH"))
	}
	return exec.CommandContext(ctx, "nsenter", append(full, args...)...)
}

// ContainerdBin is the directory of the containerd 2.x the lab runs (hack/build-containerd.sh's,
// with ctr), as `multi.sh up` recorded it; "" if it did not.
func ContainerdBin() string { return readLabFile("containerd-bin") }

// PauseImage is the pause image imported into every node (the one `kubeadm config images list`
// names, registry.k8s.io/pause:3.10.2 for v1.37), as `multi.sh up` recorded it.
func PauseImage() string {
	if p := readLabFile("pause-image"); p != "" {
		return p
	}
	return "registry.k8s.io/pause:3.10.2"
}

// Version is the Kubernetes release the lab was made with (`K8S_VERSION=... multi.sh up`, as
// multi.sh recorded it); "" if it did not. A node upgraded since (kubeadm upgrade, its kubelet
// swapped: `multi.sh kubelet NODE upgrade VERSION`) runs another.
func Version() string { return readLabFile("k8s-version") }

func readLabFile(name string) string {
	b, err := os.ReadFile(filepath.Join(Dir, name))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// Result is what a command printed and how it ended.
type Result struct {
	Stdout, Stderr string
	Code           int
	Took           time.Duration
}

func (r Result) String() string {
	return fmt.Sprintf("exit %d after %s\nstdout:\n%s\nstderr:\n%s", r.Code, r.Took.Round(time.Millisecond), r.Stdout, r.Stderr)
}

// Run runs cmd and returns its output and exit code; err only when it could not run.
func Run(cmd *exec.Cmd) (Result, error) {
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	r := Result{Stdout: out.String(), Stderr: errb.String(), Took: time.Since(start)}
	if ee, ok := err.(*exec.ExitError); ok {
		r.Code = ee.ExitCode()
		return r, nil
	}
	return r, err
}

// Lab runs hack/lab/multi.sh with args (add-node, join, remove-node, kubelet ...).
func Lab(ctx context.Context, args ...string) (Result, error) {
	script, err := Script()
	if err != nil {
		return Result{}, err
	}
	return Run(exec.CommandContext(ctx, "bash", append([]string{script}, args...)...))
}

// CopyAdmin copies the lab's admin kubeconfig to dir/config (0600), for a test whose commands
// rewrite their kubeconfig (cluster endpoint, cluster ca-rotate), and returns its path.
func CopyAdmin(dir string) (string, error) {
	data, err := os.ReadFile(AdminKubeconfig())
	if err != nil {
		return "", err
	}
	local := filepath.Join(dir, "config")
	if err := os.WriteFile(local, data, 0o600); err != nil {
		return "", err
	}
	return local, nil
}

// Follow makes the lab's CA file and admin kubeconfig those of the kubeconfig at local (what
// multi.sh's status and the tests' helpers read): after a CA rotation or an endpoint move that
// rewrote local.
func Follow(local string) error {
	kc, err := clientcmd.LoadFromFile(local)
	if err != nil {
		return err
	}
	for _, c := range kc.Clusters {
		if err := os.WriteFile(CACert(), c.CertificateAuthorityData, 0o644); err != nil {
			return err
		}
	}
	b, err := os.ReadFile(local)
	if err != nil {
		return err
	}
	return os.WriteFile(AdminKubeconfig(), b, 0o600)
}

// BenchStart is the start of a benchmark run as root on the lab: it fails unless the lab is
// up, runs the process again in the client namespace (an operator's workstation) when it is not
// there, and returns certctl's absolute path.
func BenchStart(certctl string) (string, error) {
	if !Up() {
		return "", errors.New("the multi-node lab is not up: run hack/lab/multi.sh up")
	}
	if !InClient() {
		return "", ReexecInClient() // returns only when it could not
	}
	return filepath.Abs(certctl)
}
