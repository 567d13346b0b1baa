// Package endpoint moves a node's kubeconfigs from one API server address to another (the
// node's part of `certctl cluster endpoint`): admin.conf, super-admin.conf, kubelet.conf and
// bootstrap-kubelet.conf under --root, with a backup first, atomic writes, and the kubelet
// restarted when its kubeconfig changed.
package endpoint

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/certctl/certctl/pkg/backup"
	"github.com/certctl/certctl/pkg/fsutil"
	"github.com/certctl/certctl/pkg/kubeconfig"
	"github.com/certctl/certctl/pkg/kubelet"
	"github.com/certctl/certctl/pkg/manifest"
	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/txn"
)

// Files are the kubeconfigs a node keeps that name the cluster's endpoint. controller-manager.conf
// and scheduler.conf are not among them: kubeadm points those at the node's own apiserver.
var Files = []string{"admin.conf", "super-admin.conf", "kubelet.conf", "bootstrap-kubelet.conf"}

// kubeletFiles are the kubeconfigs of the kubelet. On a control-plane node, kubeadm 1.35 and
// later (ControlPlaneKubeletLocalMode, GA in 1.35) point them at the node's own apiserver, not
// at controlPlaneEndpoint: such an entry is right as it is and is never moved, even when the
// node's own address is the endpoint being replaced (the first node of a cluster made before
// its load balancer existed).
var kubeletFiles = map[string]bool{"kubelet.conf": true, "bootstrap-kubelet.conf": true}

// Options drive SetServer.
type Options struct {
	Layout pki.Layout
	To     string // the new server (any form NormalizeServer takes)
	// From is the server to replace; "" means the one kubelet.conf uses (admin.conf's on a
	// node without kubelet.conf). Entries that name another server (the node's own
	// apiserver) are left alone.
	From        string
	DryRun      bool
	NoRestart   bool
	Restart     kubelet.Restarter // required unless NoRestart or DryRun
	Wait        kubelet.WaitOptions
	LockTimeout time.Duration // default 30s
	Out         io.Writer
	Now         func() time.Time
}

// FileChange is what happened to one kubeconfig.
type FileChange struct {
	Path     string   `json:"path"`
	Clusters []string `json:"clusters,omitempty"` // the entries moved
	Kept     []string `json:"kept,omitempty"`     // servers left alone
	// Local is set on a kubelet kubeconfig left on this node's own apiserver (kubeadm's
	// ControlPlaneKubeletLocalMode): the server it keeps.
	Local string `json:"local,omitempty"`
}

// Result is what SetServer did (or, dry run, would do).
type Result struct {
	From, To         string
	Changed          []FileChange
	Unchanged        []FileChange
	BackupID         string
	KubeletRestarted bool
}

type file struct {
	path  string
	data  []byte
	out   []byte
	mode  os.FileMode
	uid   int
	gid   int
	entry FileChange
}

// SetServer points the node's kubeconfigs that use From at To.
func SetServer(ctx context.Context, o Options) (*Result, error) {
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.LockTimeout == 0 {
		o.LockTimeout = 30 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	to, err := kubeconfig.NormalizeServer(o.To)
	if err != nil {
		return nil, err
	}
	l := o.Layout
	if !o.DryRun {
		lock, err := txn.AcquireLock(l.StateDir(), o.LockTimeout)
		if err != nil {
			return nil, err
		}
		defer lock.Release()
	}
	own, err := OwnAPIServers(l)
	if err != nil {
		return nil, err
	}
	from := o.From
	if from == "" {
		if from, err = currentServer(l, own); err != nil {
			return nil, err
		}
	} else if from, err = kubeconfig.NormalizeServer(from); err != nil {
		return nil, fmt.Errorf("--from: %w", err)
	}
	res := &Result{From: from, To: to}
	var files []*file
	for _, name := range Files {
		p := filepath.Join(l.KubeconfigDir, name)
		data, err := os.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", p, err)
		}
		cfg, err := clientcmd.Load(data)
		if err != nil {
			return nil, fmt.Errorf("%s: not a valid kubeconfig: %w (fix it, or restore it from a backup: certctl backup list)", p, err)
		}
		f := &file{path: p, data: data, entry: FileChange{Path: l.NodePath(p)}}
		if kubeletFiles[name] {
			for _, s := range kubeconfig.Servers(cfg) {
				if n, err := kubeconfig.NormalizeServer(s); err == nil && slices.Contains(own, n) {
					f.entry.Local = n
				}
			}
		}
		if f.entry.Local != "" && f.entry.Local == from {
			f.entry.Kept = kubeconfig.Servers(cfg)
			res.Unchanged = append(res.Unchanged, f.entry)
			continue
		}
		f.entry.Clusters = kubeconfig.MoveServer(cfg, from, to)
		for _, s := range kubeconfig.Servers(cfg) {
			if s != to {
				f.entry.Kept = append(f.entry.Kept, s)
			}
		}
		if len(f.entry.Clusters) == 0 {
			f.entry.Kept = kubeconfig.Servers(cfg)
			res.Unchanged = append(res.Unchanged, f.entry)
			continue
		}
		if f.out, err = kubeconfig.Marshal(cfg); err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("stat %s: %w", p, err)
		}
		f.mode, f.uid, f.gid = st.Mode().Perm(), -1, -1
		if sys, ok := st.Sys().(*syscall.Stat_t); ok {
			f.uid, f.gid = int(sys.Uid), int(sys.Gid)
		}
		files = append(files, f)
		res.Changed = append(res.Changed, f.entry)
	}
	if len(files) == 0 || o.DryRun {
		return res, nil
	}
	var paths []string
	for _, f := range files {
		paths = append(paths, f.path)
	}
	m, err := backup.Create(fsutil.OS{}, l, "kubeconfig set-server", paths, o.Now())
	if err != nil {
		return nil, fmt.Errorf("back up %s: %w", strings.Join(paths, ", "), err)
	}
	res.BackupID = m.ID
	for i, f := range files {
		if err := fsutil.WriteFileAtomicOwned(f.path, f.out, f.mode, f.uid, f.gid); err != nil {
			for _, done := range files[:i] {
				if rerr := fsutil.WriteFileAtomicOwned(done.path, done.data, done.mode, done.uid, done.gid); rerr != nil {
					return res, fmt.Errorf("write %s: %w; and putting %s back failed: %v (restore it: certctl backup restore %s)", f.path, err, done.path, rerr, m.ID)
				}
			}
			return res, fmt.Errorf("write %s: %w (the files written before it are back as they were)", f.path, err)
		}
	}
	kubeletConf := filepath.Join(l.KubeconfigDir, "kubelet.conf")
	for _, f := range files {
		if f.path != kubeletConf {
			continue
		}
		if o.NoRestart {
			fmt.Fprintln(o.Out, kubelet.NoRestartNotice("kubelet.conf's new server"))
			break
		}
		if o.Restart == nil {
			return res, fmt.Errorf("kubelet.conf now names %s, but nothing restarts the kubelet here: restart it", to)
		}
		fmt.Fprintln(o.Out, "restarting the kubelet (kubelet.conf changed)")
		if err := o.Restart.Restart(ctx); err != nil {
			return res, fmt.Errorf("kubelet.conf now names %s, but the kubelet could not be restarted: %w", to, err)
		}
		if err := kubelet.WaitHealthy(ctx, o.Wait.InPod(o.Layout.KubeletDir)); err != nil {
			return res, fmt.Errorf("kubelet restarted on kubelet.conf's new server %s: %w", to, err)
		}
		res.KubeletRestarted = true
	}
	return res, nil
}

// currentServer is the server kubelet.conf uses, or admin.conf's: the endpoint the node's
// clients use. A kubelet.conf on this node's own apiserver (own: ControlPlaneKubeletLocalMode)
// says nothing of the endpoint, so admin.conf's is taken then.
func currentServer(l pki.Layout, own []string) (string, error) {
	for _, name := range []string{"kubelet.conf", "admin.conf"} {
		p := filepath.Join(l.KubeconfigDir, name)
		data, err := os.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("read %s: %w", p, err)
		}
		cfg, err := clientcmd.Load(data)
		if err != nil {
			return "", fmt.Errorf("%s: not a valid kubeconfig: %w", p, err)
		}
		ctx := cfg.Contexts[cfg.CurrentContext]
		if ctx == nil || cfg.Clusters[ctx.Cluster] == nil {
			return "", fmt.Errorf("%s: its current context names no cluster: give --from", p)
		}
		server, err := kubeconfig.NormalizeServer(cfg.Clusters[ctx.Cluster].Server)
		if err != nil {
			return "", fmt.Errorf("%s: %w", p, err)
		}
		if kubeletFiles[name] && slices.Contains(own, server) {
			continue
		}
		return server, nil
	}
	return "", fmt.Errorf("neither kubelet.conf (on another server than this node's own apiserver) nor admin.conf in %s: give --from", l.KubeconfigDir)
}

// OwnAPIServers are the addresses of this node's own apiserver as kubeadm writes them into a
// kubeconfig: https://ADVERTISE-ADDRESS:SECURE-PORT from the apiserver's static-pod manifest,
// and the server of controller-manager.conf and scheduler.conf (kubeadm always points those at
// the node's own apiserver). None on a node without them (a worker). A file that is there but
// does not parse is an error: certctl cannot tell the node's own apiserver from the endpoint.
func OwnAPIServers(l pki.Layout) ([]string, error) {
	var out []string
	add := func(s string) {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	pod, err := manifest.LoadComponent(l.ManifestsDir, pki.CompAPIServer)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, err
	default:
		flags := pod.Flags()
		port := flags["secure-port"]
		if port == "" {
			port = "6443"
		}
		if ip := flags["advertise-address"]; ip != "" {
			s, err := kubeconfig.NormalizeServer(net.JoinHostPort(ip, port))
			if err != nil {
				return nil, fmt.Errorf("%s: --advertise-address=%s --secure-port=%s: %w", pod.Path, ip, port, err)
			}
			add(s)
		}
	}
	for _, name := range []string{"controller-manager.conf", "scheduler.conf"} {
		p := filepath.Join(l.KubeconfigDir, name)
		cfg, err := clientcmd.LoadFromFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s: not a valid kubeconfig: %w (fix it, or restore it from a backup: certctl backup list)", p, err)
		}
		for _, srv := range kubeconfig.Servers(cfg) {
			if s, err := kubeconfig.NormalizeServer(srv); err == nil {
				add(s)
			}
		}
	}
	return out, nil
}

// Render prints res for a person.
func (r *Result) Render(w io.Writer, dryRun bool) {
	verb := "moved"
	if dryRun {
		verb = "would move"
	}
	if len(r.Changed) == 0 {
		fmt.Fprintf(w, "no kubeconfig of this node uses %s: nothing to change (already on %s?)\n", r.From, r.To)
	}
	for _, c := range r.Changed {
		fmt.Fprintf(w, "%s: %s %s from %s to %s\n", c.Path, verb, strings.Join(c.Clusters, ", "), r.From, r.To)
	}
	for _, c := range r.Unchanged {
		if c.Local != "" {
			fmt.Fprintf(w, "%s: unchanged: the kubelet of this control-plane node uses its own apiserver %s (kubeadm's ControlPlaneKubeletLocalMode), as it should\n", c.Path, c.Local)
			continue
		}
		fmt.Fprintf(w, "%s: unchanged (uses %s)\n", c.Path, strings.Join(c.Kept, ", "))
	}
	if r.BackupID != "" {
		fmt.Fprintf(w, "backup: %s (certctl backup restore %s)\n", r.BackupID, r.BackupID)
	}
	if r.KubeletRestarted {
		fmt.Fprintln(w, "kubelet restarted on the new server and healthy")
	}
}
