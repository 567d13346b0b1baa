package manifest

// Fuzz targets for the static-pod manifests certctl reads and edits. Seeds: kubeadm v1.37.2's
// etcd.yaml and kube-apiserver.yaml (testdata/README.md) and the shapes older kubeadm
// releases and operators write (flow sequences, quoted flags, numbered probe ports). `make
// fuzz` runs them; without -fuzz the seeds and testdata/fuzz/FuzzX run as ordinary tests.

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func addManifestSeeds(f *testing.F, add func(data []byte)) {
	f.Helper()
	for _, name := range []string{"etcd.yaml", "kube-apiserver.yaml"} {
		data, err := os.ReadFile(filepath.Join("testdata", "kubeadm-v1.37.2", name))
		if err != nil {
			f.Fatal(err)
		}
		add(data)
	}
	for _, s := range []string{
		// kubeadm <= 1.33: the probe's port is a number.
		"apiVersion: v1\nkind: Pod\nmetadata: {name: kube-scheduler}\nspec:\n  containers:\n  - name: kube-scheduler\n    command:\n    - kube-scheduler\n    - --authentication-kubeconfig=/etc/kubernetes/scheduler.conf\n    livenessProbe:\n      httpGet: {host: 127.0.0.1, path: /healthz, port: 10259, scheme: HTTPS}\n",
		// Flow sequence, quoted items, a flag and its value as two items, args beside command.
		"spec:\n  containers:\n  - name: c\n    command: [kube-apiserver, \"--client-ca-file=/etc/kubernetes/pki/ca.crt\", '--secure-port=6443', --advertise-address, 10.2.1.151]\n    args: [--tls-cert-file=/etc/kubernetes/pki/apiserver.crt] # operator's\n    startupProbe: {httpGet: {port: \"6443\", scheme: HTTPS}}\n",
		// Comments and a block scalar certctl must refuse to edit.
		"spec:\n  containers:\n  - name: c\n    # flags\n    command:\n    - >-\n      --client-ca-file=/etc/kubernetes/pki/ca.crt\n    - --requestheader-client-ca-file=/etc/kubernetes/pki/front-proxy-ca.crt # front proxy\n    readinessProbe:\n      httpGet:\n        port: probe-port\n",
		"spec:\r\n  containers:\r\n  - command:\r\n    - --client-ca-file=/etc/kubernetes/pki/ca.crt\r\n",
		"spec: {containers: []}\n",
		"kind: Pod\n",
		"- not a pod\n",
	} {
		add([]byte(s))
	}
}

// FuzzLoad: a manifest file never panics Load, Flags or HealthEndpoint; their errors name the
// file; an endpoint found has a scheme and a port number.
func FuzzLoad(f *testing.F) {
	addManifestSeeds(f, func(data []byte) { f.Add(data) })
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "kube-apiserver.yaml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		p, err := Load(path)
		if err != nil {
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("error %q does not name %s", err, path)
			}
			return
		}
		p.Flags()
		ep, err := p.HealthEndpoint()
		if err != nil {
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("error %q does not name %s", err, path)
			}
			return
		}
		if ep.Scheme == "" || ep.Port < 1 || ep.Port > 65535 {
			t.Fatalf("endpoint %+v: no scheme or not a port", ep)
		}
	})
}

// FuzzSetFlags: setting a flag in any manifest never panics; when SetFlags succeeds its output
// parses again as YAML, carries the new value, is the input itself when nothing changed, and
// setting the same flag again changes nothing.
func FuzzSetFlags(f *testing.F) {
	addManifestSeeds(f, func(data []byte) {
		f.Add(data, "client-ca-file", "/etc/kubernetes/pki/rotation/ca/bundle.crt")
		f.Add(data, "trusted-ca-file", "/etc/kubernetes/pki/etcd/rotation/etcd-ca/bundle.crt")
		f.Add(data, "secure-port", "")
	})
	f.Fuzz(func(t *testing.T, data []byte, name, value string) {
		out, changes, err := SetFlags(data, map[string]string{name: value})
		if err != nil {
			return
		}
		var doc yaml.Node
		if err := yaml.Unmarshal(out, &doc); err != nil {
			t.Fatalf("SetFlags wrote YAML that does not parse: %v\n%s", err, out)
		}
		if len(changes) == 0 {
			if !bytes.Equal(out, data) {
				t.Fatal("nothing changed but the output differs from the input")
			}
			return
		}
		var p Pod
		if err := yaml.Unmarshal(out, &p); err != nil || len(p.Spec.Containers) == 0 {
			t.Fatalf("SetFlags wrote something that is not a pod: %v", err)
		}
		if got := p.Flags()[name]; got != value {
			t.Fatalf("--%s is %q after SetFlags, want %q", name, got, value)
		}
		again, changes, err := SetFlags(out, map[string]string{name: value})
		if err != nil || len(changes) != 0 || !bytes.Equal(again, out) {
			t.Fatalf("setting --%s again changed %v (err %v)", name, changes, err)
		}
	})
}

// scalars lists the scalar nodes of a document in order (keys and values), aliases left out.
func scalars(n *yaml.Node, out []*yaml.Node) []*yaml.Node {
	if n == nil {
		return out
	}
	if n.Kind == yaml.ScalarNode {
		return append(out, n)
	}
	for _, c := range n.Content {
		out = scalars(c, out)
	}
	return out
}

// FuzzEditScalars: replacing any scalar of any YAML document by any value never panics; when
// EditScalars succeeds its output parses again as YAML, with that scalar (the same one, by
// position in the document) holding the new value.
func FuzzEditScalars(f *testing.F) {
	addManifestSeeds(f, func(data []byte) {
		f.Add(data, uint16(5), "--client-ca-file=/etc/kubernetes/pki/rotation/ca/bundle.crt")
		f.Add(data, uint16(0), "x")
	})
	f.Add([]byte("authentication:\n  x509:\n    clientCAFile: /etc/kubernetes/pki/ca.crt # kubeadm\n"), uint16(3), "/etc/kubernetes/pki/rotation/ca/bundle.crt")
	f.Add([]byte("a: \"quoted\"\nb: 'single'\n"), uint16(1), "new")
	f.Fuzz(func(t *testing.T, data []byte, idx uint16, value string) {
		var doc yaml.Node
		if err := yaml.Unmarshal(data, &doc); err != nil {
			return
		}
		list := scalars(&doc, nil)
		if len(list) == 0 {
			return
		}
		i := int(idx) % len(list)
		out, err := EditScalars(data, []ScalarEdit{{Node: list[i], Value: value}})
		if err != nil {
			return
		}
		var after yaml.Node
		if err := yaml.Unmarshal(out, &after); err != nil {
			t.Fatalf("EditScalars wrote YAML that does not parse: %v\nbefore:\n%q\nafter:\n%q", err, data, out)
		}
		got := scalars(&after, nil)
		same := len(got) == len(list) && got[i].Value == value
		for j := 0; same && j < len(list); j++ {
			same = j == i || got[j].Value == list[j].Value
		}
		if !same {
			t.Fatalf("scalar %d is not the only one changed to %q:\nbefore:\n%q\nafter:\n%q", i, value, data, out)
		}
	})
}
