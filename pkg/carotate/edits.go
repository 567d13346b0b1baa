package carotate

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/certctl/certctl/pkg/kubeconfig"
	"github.com/certctl/certctl/pkg/manifest"
	"github.com/certctl/certctl/pkg/pki"
	"gopkg.in/yaml.v3"
	"k8s.io/client-go/tools/clientcmd"
)

// fileEdit is the new content of one file of a phase.
type fileEdit struct {
	path string
	// writeTo, when set, is where the content goes instead of path: a static-pod manifest
	// deferred to the restart (Options.DeferManifests), in Layout.PendingManifestsDir.
	writeTo   string
	data      []byte
	mode      os.FileMode
	what      string
	component string // who reads it and must restart; empty: nobody (a new file, a user's kubeconfig)
	remove    bool   // the file is removed (it is in the phase's backup)
}

// kubeconfigFiles are the kubeconfigs that trust the cluster CA, with who reads them.
var kubeconfigFiles = []struct{ name, component string }{
	{"admin.conf", ""}, {"super-admin.conf", ""},
	{"controller-manager.conf", pki.CompControllerManager}, {"scheduler.conf", pki.CompScheduler},
	{"kubelet.conf", pki.CompKubelet},
}

// verifiers moves everything on the node that verifies with CA d from the file from to the
// file to (node paths): the static-pod flags of d, and for the cluster CA the kubelet's
// clientCAFile; and sets the certificate-authority-data of every kubeconfig cluster for which
// caData returns new data (nil: leave it).
//
// With deferManifests the manifests' new content goes to l.PendingManifestsDir() (where the
// restart takes it from), and an edit builds on a pending manifest when there is one (a run
// over several CAs edits one manifest for each).
func verifiers(l pki.Layout, d caDef, from, to string, deferManifests bool, caData func(old []byte) []byte) ([]fileEdit, []string, error) {
	var edits []fileEdit
	var notes []string
	byComponent := map[string]map[string]string{}
	for _, f := range d.flags {
		if byComponent[f.component] == nil {
			byComponent[f.component] = map[string]string{}
		}
		byComponent[f.component][f.flag] = to
	}
	for _, comp := range []string{"apiserver", "controller-manager", "scheduler", "etcd"} {
		flags := byComponent[comp]
		if flags == nil {
			continue
		}
		path := filepath.Join(l.ManifestsDir, manifest.Files[comp])
		src, writeTo := path, ""
		if deferManifests {
			writeTo = filepath.Join(l.PendingManifestsDir(), manifest.Files[comp])
			if _, err := os.Stat(writeTo); err == nil {
				src = writeTo
			}
		}
		data, mode, err := readIfExists(path)
		if err != nil || data == nil {
			if err != nil {
				return nil, nil, err
			}
			continue
		}
		if src != path {
			if data, _, err = readIfExists(src); err != nil {
				return nil, nil, err
			}
		}
		pod, err := manifest.Parse(src, data)
		if err != nil {
			return nil, nil, err
		}
		cur := pod.Flags()
		// Only flags that name the file being replaced: a flag that points elsewhere was set
		// by the operator and is reported, not rewritten.
		want := map[string]string{}
		for _, name := range slices.Sorted(maps.Keys(flags)) {
			v, ok := cur[name]
			switch {
			case !ok:
			case v == from:
				want[name] = to
			case v != to:
				notes = append(notes, fmt.Sprintf("%s: --%s=%s left alone (it does not name %s); point it at %s yourself", path, name, v, from, to))
			}
		}
		out, changes, err := manifest.SetFlags(data, want)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", path, err)
		}
		for _, ch := range changes {
			edits = append(edits, fileEdit{path: path, writeTo: writeTo, mode: mode, component: comp,
				what: fmt.Sprintf("--%s: %s -> %s", ch.Flag, ch.Old, ch.New)})
		}
		if len(changes) > 0 {
			// One file, one content: the last edit carries it.
			edits[len(edits)-1].data = out
		}
	}
	if !d.cluster {
		return edits, notes, nil
	}
	kc, err := kubeletClientCA(l, from, to)
	if err != nil {
		return nil, nil, err
	}
	if kc != nil {
		edits = append(edits, *kc)
	}
	paths := []struct{ path, component string }{}
	for _, k := range kubeconfigFiles {
		paths = append(paths, struct{ path, component string }{filepath.Join(l.KubeconfigDir, k.name), k.component})
	}
	paths = append(paths, struct{ path, component string }{l.UserKubeconfig, ""})
	for _, k := range paths {
		e, err := kubeconfigCA(k.path, caData)
		if err != nil {
			return nil, nil, err
		}
		if e != nil {
			e.component = k.component
			edits = append(edits, *e)
		}
	}
	return edits, notes, nil
}

// readIfExists returns a file's content and mode, or nil data when it does not exist.
func readIfExists(path string) ([]byte, os.FileMode, error) {
	st, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("stat %s: %w", path, err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, fmt.Errorf("read %s: %w", path, err)
	}
	return data, st.Mode().Perm(), nil
}

// kubeletConfigClientCA reads the kubelet config (path, content, mode) and finds its
// authentication.x509.clientCAFile node (nil: none); data is nil when there is no config.
func kubeletConfigClientCA(l pki.Layout) (path string, data []byte, mode os.FileMode, n *yaml.Node, err error) {
	path = l.Resolve(filepath.Join(l.KubeletDir, "config.yaml"))
	data, mode, err = readIfExists(path)
	if err != nil || data == nil {
		return path, nil, 0, nil, err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return path, nil, 0, nil, fmt.Errorf("%s: not valid YAML: %w", path, err)
	}
	if len(doc.Content) > 0 {
		n = doc.Content[0]
	}
	for _, key := range []string{"authentication", "x509", "clientCAFile"} {
		n = manifest.MapValue(n, key)
	}
	if n != nil && n.Kind != yaml.ScalarNode {
		n = nil
	}
	return path, data, mode, n, nil
}

// kubeletClientCAFile is the file the kubelet config's clientCAFile names (a host path:
// resolved under l's root), "" when there is no kubelet config or no such field.
func kubeletClientCAFile(l pki.Layout) (string, error) {
	_, _, _, n, err := kubeletConfigClientCA(l)
	if err != nil || n == nil || n.Value == "" {
		return "", err
	}
	return l.Resolve(n.Value), nil
}

// kubeletClientCA moves the kubelet config's authentication.x509.clientCAFile from from to
// to, editing only that value (comments and layout stay).
func kubeletClientCA(l pki.Layout, from, to string) (*fileEdit, error) {
	path, data, mode, n, err := kubeletConfigClientCA(l)
	if err != nil || data == nil {
		return nil, err
	}
	if n == nil || n.Value == to {
		return nil, nil
	}
	if n.Value != from {
		return nil, fmt.Errorf("%s: authentication.x509.clientCAFile is %s, not %s: point it at %s yourself, or back at %s, and run again", path, n.Value, from, to, from)
	}
	out, err := manifest.EditScalars(data, []manifest.ScalarEdit{{Node: n, Value: to}})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &fileEdit{path: path, data: out, mode: mode, component: pki.CompKubelet,
		what: fmt.Sprintf("authentication.x509.clientCAFile: %s -> %s", from, to)}, nil
}

// kubeconfigCA sets certificate-authority-data of every cluster of the kubeconfig at path
// for which caData returns new data.
func kubeconfigCA(path string, caData func(old []byte) []byte) (*fileEdit, error) {
	data, mode, err := readIfExists(path)
	if err != nil || data == nil {
		return nil, err
	}
	cfg, err := clientcmd.Load(data)
	if err != nil {
		return nil, fmt.Errorf("%s: not a valid kubeconfig: %w", path, err)
	}
	var changed []string
	for _, name := range slices.Sorted(maps.Keys(cfg.Clusters)) {
		c := cfg.Clusters[name]
		if c == nil || len(c.CertificateAuthorityData) == 0 {
			continue
		}
		if nd := caData(c.CertificateAuthorityData); nd != nil {
			c.CertificateAuthorityData = nd
			changed = append(changed, name)
		}
	}
	if len(changed) == 0 {
		return nil, nil
	}
	out, err := kubeconfig.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &fileEdit{path: path, data: out, mode: mode, what: fmt.Sprintf("certificate-authority-data of cluster %v", changed)}, nil
}
