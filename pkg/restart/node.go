package restart

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/prometheus/procfs"
	"gopkg.in/yaml.v3"
)

// Node is the kubelet that runs the static pods of a manifests dir: restart acts only on what
// this kubelet runs. A machine may run several nodes (the multi-node lab: one kubelet per node,
// each in its own mount and network namespace, all in one PID namespace), so "the" kubelet or
// "the" kube-apiserver of the process table is not necessarily this node's.
type Node struct {
	ManifestsDir string // the layout's manifests dir, as certctl sees it
	PID          int    // the kubelet's
	StartTime    uint64 // its start time (clock ticks after boot), to tell a reused PID
	Root         string // /proc/PID/root: the kubelet's view of the file system
	Config       string // its --config, as the kubelet names it ("" when it has none)
	// StaticPodPath is the kubelet's staticPodPath (or --pod-manifest-path), as it names it.
	StaticPodPath string
	// CRIEndpoint is the kubelet's container runtime socket reached through Root, "" when
	// it does not exist (its --container-runtime-endpoint, its config's
	// containerRuntimeEndpoint, instance-config.yaml or kubeadm-flags.env beside the config;
	// when it names none, containerd's or
	// CRI-O's default socket).
	CRIEndpoint string
	NetNS       uint64 // inode of its network namespace (/proc/PID/ns/net)
	CgroupRoot  string // its cgroupRoot (--cgroup-root), "" or "/" when it has none of its own

	criFlag, criConfig string
	ppid               int
}

// ErrNoKubelet is returned by FindNode when no kubelet runs the static pods of a manifests
// dir: moving a manifest out would stop nothing, and waiting for it to stop would last the
// whole --timeout.
type ErrNoKubelet struct{ ManifestsDir, Config string }

func (e *ErrNoKubelet) Error() string {
	if e.Config != "" {
		return fmt.Sprintf("no kubelet runs with the config %s (certctl looks for a kubelet process whose --config is this file; it needs the host's PID namespace: run it on the node, or in a pod with hostPID: true)", e.Config)
	}
	return fmt.Sprintf("no kubelet runs the static pods in %s: nothing to restart (certctl looks for a kubelet process whose staticPodPath is this directory; it needs the host's PID namespace: run it on the node, or in a pod with hostPID: true)", e.ManifestsDir)
}

// kubeletConfig is what FindNode reads of a KubeletConfiguration.
type kubeletConfig struct {
	StaticPodPath            string `yaml:"staticPodPath"`
	ContainerRuntimeEndpoint string `yaml:"containerRuntimeEndpoint"`
	CgroupRoot               string `yaml:"cgroupRoot"`
}

// FindNode finds the kubelet whose staticPodPath is manifestsDir (the same directory: device
// and inode compared, each path resolved in its own mount namespace) in the process table at
// proc (default /proc). It fails at once with *ErrNoKubelet when there is none.
func FindNode(proc, manifestsDir string) (*Node, error) {
	want, err := os.Stat(manifestsDir)
	if err != nil {
		return nil, fmt.Errorf("the static-pod manifests dir: %w: nothing to restart (is this a control-plane node? see --manifests-dir)", err)
	}
	found, err := findKubelets(proc, func(n *Node, _ string) bool {
		if n.StaticPodPath == "" {
			return false
		}
		st, err := os.Stat(filepath.Join(n.Root, n.StaticPodPath))
		return err == nil && os.SameFile(st, want)
	})
	if err != nil {
		return nil, err
	}
	switch len(found) {
	case 0:
		return nil, &ErrNoKubelet{ManifestsDir: manifestsDir}
	case 1:
		found[0].ManifestsDir = manifestsDir
		return found[0], nil
	}
	return nil, fmt.Errorf("several kubelets (PIDs %s) run the static pods in %s: stop all but one before restarting anything", pidList(found), manifestsDir)
}

// FindKubelet finds the kubelet whose --config is configFile (the same file: device and inode
// compared, each path resolved in its own mount namespace), for nodes that run no static pods
// (a worker whose kubelet has no manifests dir). It fails with *ErrNoKubelet when none does.
func FindKubelet(proc, configFile string) (*Node, error) {
	want, err := os.Stat(configFile)
	if err != nil {
		return nil, fmt.Errorf("the kubelet's config: %w", err)
	}
	found, err := findKubelets(proc, func(n *Node, dir string) bool {
		if n.Config == "" {
			return false
		}
		st, err := os.Stat(filepath.Join(n.Root, n.absConfig(dir)))
		return err == nil && os.SameFile(st, want)
	})
	if err != nil {
		return nil, err
	}
	switch len(found) {
	case 0:
		return nil, &ErrNoKubelet{Config: configFile}
	case 1:
		return found[0], nil
	}
	return nil, fmt.Errorf("several kubelets (PIDs %s) run with the config %s: stop all but one first", pidList(found), configFile)
}

// findKubelets returns the kubelets of the process table at proc (default /proc) that match
// (given the kubelet and its /proc directory), their CRI endpoints resolved.
func findKubelets(proc string, match func(n *Node, dir string) bool) ([]*Node, error) {
	if proc == "" {
		proc = "/proc"
	}
	fs, err := procfs.NewFS(proc)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", proc, err)
	}
	procs, err := fs.AllProcs()
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", proc, err)
	}
	var found []*Node
	for _, p := range procs {
		n, ok := kubeletOf(proc, p)
		if !ok || !match(n, filepath.Join(proc, strconv.Itoa(p.PID))) {
			continue
		}
		n.CRIEndpoint = n.criEndpoint(proc)
		found = append(found, n)
	}
	return withoutForks(found), nil
}

// withoutForks drops the kubelets whose parent is another of found: a kubelet running a
// command (mount, nsenter, iptables) forks, and until the child execs it has the kubelet's
// command line, config and root. It is not a second kubelet (seen on the lab: "several
// kubelets" right after a restart, the second a PID or so later than the first).
func withoutForks(found []*Node) []*Node {
	if len(found) < 2 {
		return found
	}
	pids := map[int]bool{}
	for _, n := range found {
		pids[n.PID] = true
	}
	var out []*Node
	for _, n := range found {
		if !pids[n.ppid] {
			out = append(out, n)
		}
	}
	return out
}

func pidList(ns []*Node) string {
	var pids []string
	for _, n := range ns {
		pids = append(pids, strconv.Itoa(n.PID))
	}
	return strings.Join(pids, ", ")
}

// kubeletOf reads p as a kubelet: its flags and its config file. ok is false for anything
// else (another program, an exited process).
func kubeletOf(proc string, p procfs.Proc) (n *Node, ok bool) {
	args, err := p.CmdLine()
	if err != nil || len(args) == 0 || filepath.Base(args[0]) != "kubelet" {
		return nil, false
	}
	stat, err := p.Stat()
	if err != nil || stat.State == "Z" {
		return nil, false
	}
	dir := filepath.Join(proc, strconv.Itoa(p.PID))
	n = &Node{PID: p.PID, StartTime: stat.Starttime, Root: filepath.Join(dir, "root"), ppid: stat.PPID}
	if ns, err := p.Namespaces(); err == nil {
		n.NetNS = uint64(ns["net"].Inode)
	}
	flags := parseFlags(args[1:])
	n.Config = flags["config"]
	var kc kubeletConfig
	if n.Config != "" {
		cfg := n.Config
		if !filepath.IsAbs(cfg) {
			cfg = filepath.Join(dir, "cwd", cfg)
		} else {
			cfg = filepath.Join(n.Root, cfg)
		}
		if data, err := os.ReadFile(cfg); err == nil {
			_ = yaml.Unmarshal(data, &kc)
		}
		// Relative paths in a kubelet config are relative to the config file.
		if kc.StaticPodPath != "" && !filepath.IsAbs(kc.StaticPodPath) {
			kc.StaticPodPath = filepath.Join(filepath.Dir(n.absConfig(dir)), kc.StaticPodPath)
		}
	}
	// Flags given on the command line win over the config file, as in the kubelet.
	n.StaticPodPath = kc.StaticPodPath
	if v := flags["pod-manifest-path"]; v != "" {
		n.StaticPodPath = v
		if !filepath.IsAbs(v) {
			n.StaticPodPath = filepath.Join(cwdOf(dir), v)
		}
	}
	n.CgroupRoot = kc.CgroupRoot
	if v := flags["cgroup-root"]; v != "" {
		n.CgroupRoot = v
	}
	n.criFlag, n.criConfig = flags["container-runtime-endpoint"], kc.ContainerRuntimeEndpoint
	return n, true
}

// absConfig is the kubelet's config file as the kubelet names it, made absolute against its
// working directory.
func (n *Node) absConfig(dir string) string {
	if filepath.IsAbs(n.Config) {
		return n.Config
	}
	return filepath.Join(cwdOf(dir), n.Config)
}

// cwdOf is the working directory of the process whose /proc directory is dir, as it names it.
func cwdOf(dir string) string {
	cwd, err := os.Readlink(filepath.Join(dir, "cwd"))
	if err != nil {
		return "/"
	}
	return cwd
}

// criEndpoint resolves the kubelet's CRI socket through its root, in the kubelet's order of
// precedence: flag, config, then what kubeadm recorded beside the config (instance-config.yaml,
// kubeadm-flags.env); the default sockets only
// when it names none. A named socket that does not exist is no socket ("").
func (n *Node) criEndpoint(proc string) string {
	named := n.criFlag
	if named == "" {
		named = n.criConfig
	}
	if named == "" && n.Config != "" {
		named = kubeadmEndpoint(filepath.Join(n.Root, filepath.Dir(n.absConfig(filepath.Join(proc, strconv.Itoa(n.PID))))))
	}
	cands := DefaultCRIEndpoints
	if named != "" {
		cands = []string{named}
	}
	for _, ep := range cands {
		p := strings.TrimPrefix(ep, "unix://")
		if !filepath.IsAbs(p) {
			continue
		}
		p = filepath.Join(n.Root, p)
		if st, err := os.Stat(p); err == nil && st.Mode()&os.ModeSocket != 0 {
			return p
		}
	}
	return ""
}

// kubeadmEndpoint returns the CRI socket kubeadm recorded for the node in the kubelet's
// directory dir: instance-config.yaml's containerRuntimeEndpoint (kubeadm 1.36 and later,
// NodeLocalCRISocket: kubeadm merges it into config.yaml, which is read first, but a
// config.yaml taken from the cluster-wide kubelet-config ConfigMap lacks it), else
// --container-runtime-endpoint in kubeadm-flags.env (kubeadm 1.35 and earlier). "" when
// neither names one.
func kubeadmEndpoint(dir string) string {
	if data, err := os.ReadFile(filepath.Join(dir, "instance-config.yaml")); err == nil {
		var kc kubeletConfig
		if yaml.Unmarshal(data, &kc) == nil && kc.ContainerRuntimeEndpoint != "" {
			return kc.ContainerRuntimeEndpoint
		}
	}
	if data, err := os.ReadFile(filepath.Join(dir, "kubeadm-flags.env")); err == nil {
		return flagsEnvEndpoint(data)
	}
	return ""
}

// flagsEnvEndpoint returns --container-runtime-endpoint of a kubeadm-flags.env.
func flagsEnvEndpoint(data []byte) string {
	for _, f := range strings.Fields(strings.Trim(string(data), "\n")) {
		// The first flag follows KUBELET_KUBEADM_ARGS=" in the same field.
		if _, v, ok := strings.Cut(f, "--container-runtime-endpoint="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return ""
}

// parseFlags reads --name=value and --name value pairs (pflag's forms; a value never starts
// with "-" here).
func parseFlags(args []string) map[string]string {
	out := map[string]string{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "--") {
			continue
		}
		name, val, ok := strings.Cut(a[2:], "=")
		if !ok && i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
			val = args[i+1]
			i++
		}
		out[name] = val
	}
	return out
}

// ErrOtherNetNS is returned when the node's kubelet runs in another network namespace than
// certctl: the components' probes and ports (127.0.0.1:6443...) are the ones of that
// namespace, and certctl would probe another node's.
type ErrOtherNetNS struct{ Node *Node }

func (e *ErrOtherNetNS) Error() string {
	return fmt.Sprintf("the kubelet that runs the static pods in %s (pid %d) is in another network namespace than certctl, so its components' ports are not the ones certctl would probe: run certctl in it (nsenter --net=/proc/%d/ns/net certctl ...)", e.Node.ManifestsDir, e.Node.PID, e.Node.PID)
}

// CheckNetNS refuses a node whose kubelet is in another network namespace than this process.
func (n *Node) CheckNetNS(proc string) error {
	if proc == "" {
		proc = "/proc"
	}
	fs, err := procfs.NewFS(proc)
	if err != nil {
		return err
	}
	self, err := fs.Self()
	if err != nil {
		return err
	}
	ns, err := self.Namespaces()
	if err != nil || n.NetNS == 0 {
		return nil // cannot tell: the probes will say
	}
	if uint64(ns["net"].Inode) != n.NetNS {
		return &ErrOtherNetNS{Node: n}
	}
	return nil
}

// Alive reports whether the node's kubelet is still the process FindNode found.
func (n *Node) Alive(proc string) bool {
	st, err := procStat(proc, n.PID)
	return err == nil && st.State != "Z" && st.Starttime == n.StartTime
}

// procStat reads /proc/PID/stat.
func procStat(proc string, pid int) (procfs.ProcStat, error) {
	if proc == "" {
		proc = "/proc"
	}
	fs, err := procfs.NewFS(proc)
	if err != nil {
		return procfs.ProcStat{}, err
	}
	p, err := fs.Proc(pid)
	if err != nil {
		return procfs.ProcStat{}, err
	}
	return p.Stat()
}

// sameNode reports whether the process pid belongs to the node: it shares the kubelet's
// network namespace (static pods of the control plane use the host network), or it runs in a
// cgroup under the kubelet's own cgroup root.
func (n *Node) sameNode(p procfs.Proc) bool {
	if ns, err := p.Namespaces(); err == nil && n.NetNS != 0 && uint64(ns["net"].Inode) == n.NetNS {
		return true
	}
	root := strings.TrimSuffix(n.CgroupRoot, "/")
	if root == "" {
		return false
	}
	cgs, err := p.Cgroups()
	if err != nil {
		return false
	}
	for _, cg := range cgs {
		if cg.Path == root || strings.HasPrefix(cg.Path, root+"/") {
			return true
		}
	}
	return false
}
