package kubeadmconfig

// Fuzz targets for the edits of kube-system/kubeadm-config's ClusterConfiguration, a document
// certctl reads from the API and writes back. The document is the fuzzed input; the SANs and
// the endpoint are fuzzed too but kept to the ASCII that certctl hands these functions after
// validating them (pki.ParseSANs, kubeconfig.NormalizeServer). Seeds: the document as
// kubeadm v1.37.2 uploads it (v1beta4), a v1beta3 one, and the shapes edit_test.go covers.
// `make fuzz` runs them; without -fuzz the seeds and testdata/fuzz/FuzzX run as ordinary tests.

import (
	"slices"
	"strings"
	"testing"
)

// seedDocs are ClusterConfigurations as kubeadm writes them, and variants.
var seedDocs = []string{
	// kubeadm v1.37.2 (sigs.k8s.io/yaml: sorted keys, block sequences not indented), with an
	// operator's comments.
	`apiServer:
  # the load balancer
  certSANs:
  - 10.2.0.100 # VIP
  extraArgs:
  - name: audit-log-path
    value: /var/log/audit.log
apiVersion: kubeadm.k8s.io/v1beta4
caCertificateValidityPeriod: 87600h0m0s
certificateValidityPeriod: 8760h0m0s
certificatesDir: /etc/kubernetes/pki
clusterName: kubernetes
controlPlaneEndpoint: 10.2.1.139:6443
controllerManager: {}
dns: {}
encryptionAlgorithm: RSA-2048
etcd:
  local:
    dataDir: /var/lib/etcd
imageRepository: registry.k8s.io
kind: ClusterConfiguration
kubernetesVersion: v1.37.2
networking:
  dnsDomain: cluster.local
  serviceSubnet: 10.96.0.0/12
proxy: {}
scheduler: {}
`,
	// kubeadm 1.32 (v1beta3, extraArgs a map), no controlPlaneEndpoint.
	`apiServer:
  extraArgs:
    authorization-mode: Node,RBAC
  timeoutForControlPlane: 4m0s
apiVersion: kubeadm.k8s.io/v1beta3
certificatesDir: /etc/kubernetes/pki
clusterName: kubernetes
controllerManager: {}
dns: {}
etcd:
  local:
    dataDir: /var/lib/etcd
    serverCertSANs: [etcd-1.example]
imageRepository: registry.k8s.io
kind: ClusterConfiguration
kubernetesVersion: v1.32.13
networking:
  dnsDomain: cluster.local
  serviceSubnet: 10.96.0.0/12
scheduler: {}
`,
	"apiServer:\n  certSANs:\napiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\n",
	"apiServer: {certSANs: [a.example, 10.0.0.1]}\napiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\n",
	"etcd:\n  external:\n    endpoints: [https://10.0.0.5:2379]\napiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\n",
	"apiServer:\n  certSANs: 10.0.0.1\napiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\n",
	"base: &b {certSANs: [x]}\napiServer: *b\napiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\n",
	"apiVersion: kubeadm.k8s.io/v1beta5\nkind: ClusterConfiguration\n",
	"kind: InitConfiguration\n",
	"apiServer: [\n",
}

// certctlString reports whether s is something certctl may pass as a SAN or an endpoint:
// validated, so ASCII without spaces or YAML syntax.
func certctlString(s string) bool {
	return s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:*[]") == ""
}

var fields = []Field{APIServerSANs, EtcdServerSANs, EtcdPeerSANs}

// listAt returns the values of the list at field in doc (nil when there is none).
func listAt(t *testing.T, doc string, field Field) []string {
	t.Helper()
	top, _, err := clusterConfiguration(doc)
	if err != nil {
		t.Fatalf("the result is not a ClusterConfiguration: %v\n%s", err, doc)
	}
	n := top
	for _, k := range strings.Split(string(field), ".") {
		n = value(n, k)
	}
	if n == nil {
		return nil
	}
	var out []string
	for _, c := range n.Content {
		out = append(out, c.Value)
	}
	return out
}

// FuzzAddSANs: adding SANs to any document never panics. When it adds some, the result is a
// ClusterConfiguration of a known apiVersion whose list holds them, its controlPlaneEndpoint is
// unchanged, and adding them again changes nothing; when it adds none, the document comes
// back as it was.
func FuzzAddSANs(f *testing.F) {
	for _, doc := range seedDocs {
		f.Add(doc, uint8(0), "10.2.1.139", "lb.example.com")
		f.Add(doc, uint8(1), "etcd-2.example", "10.2.1.152")
		f.Add(doc, uint8(2), "10.2.0.100", "A.EXAMPLE")
	}
	f.Fuzz(func(t *testing.T, doc string, which uint8, san1, san2 string) {
		var sans []string
		for _, s := range []string{san1, san2} {
			if certctlString(s) {
				sans = append(sans, s)
			}
		}
		field := fields[int(which)%len(fields)]
		out, added, err := AddSANs(doc, field, sans)
		if err != nil {
			return
		}
		if len(added) == 0 {
			if out != doc {
				t.Fatal("nothing added but the document changed")
			}
			return
		}
		have := listAt(t, out, field)
		for _, s := range added {
			if !slices.Contains(have, s) {
				t.Fatalf("%s is not in %s after AddSANs: %v\n%s", s, field, have, out)
			}
		}
		ep1, err1 := ControlPlaneEndpoint(doc)
		ep2, err2 := ControlPlaneEndpoint(out)
		if ep1 != ep2 || (err1 == nil) != (err2 == nil) {
			t.Fatalf("controlPlaneEndpoint %q (%v) became %q (%v)", ep1, err1, ep2, err2)
		}
		again, more, err := AddSANs(out, field, sans)
		if err != nil || len(more) != 0 || again != out {
			t.Fatalf("adding the same SANs again added %v (err %v)\n%s", more, err, out)
		}
	})
}

// FuzzSetControlPlaneEndpoint: setting the endpoint in any document never panics; when it
// succeeds ControlPlaneEndpoint reads the new value back, old is the value before, the SAN
// lists are unchanged and setting it again changes nothing.
func FuzzSetControlPlaneEndpoint(f *testing.F) {
	for _, doc := range seedDocs {
		f.Add(doc, "10.2.1.139:6443")
		f.Add(doc, "[fd00::139]:6443")
	}
	f.Fuzz(func(t *testing.T, doc, ep string) {
		before, errBefore := ControlPlaneEndpoint(doc)
		if !certctlString(ep) {
			return
		}
		out, old, err := SetControlPlaneEndpoint(doc, ep)
		if err != nil {
			return
		}
		if errBefore != nil {
			t.Fatalf("ControlPlaneEndpoint refused the document (%v) that SetControlPlaneEndpoint edited", errBefore)
		}
		if old != before {
			t.Fatalf("old = %q, but the document had %q", old, before)
		}
		if got, err := ControlPlaneEndpoint(out); err != nil || got != ep {
			t.Fatalf("controlPlaneEndpoint is %q (%v) after setting %q\n%s", got, err, ep, out)
		}
		for _, fl := range fields {
			if a, b := listAt(t, doc, fl), listAt(t, out, fl); !slices.Equal(a, b) {
				t.Fatalf("%s changed from %v to %v", fl, a, b)
			}
		}
		again, old2, err := SetControlPlaneEndpoint(out, ep)
		if err != nil || again != out || old2 != ep {
			t.Fatalf("setting %q again: changed %v, old %q, err %v", ep, again != out, old2, err)
		}
	})
}
