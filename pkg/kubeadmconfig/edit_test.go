package kubeadmconfig_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/certctl/certctl/pkg/kubeadmconfig"
	"gopkg.in/yaml.v3"
)

// kubeadmDoc is the ClusterConfiguration as kubeadm v1.37 writes it into kubeadm-config
// (sigs.k8s.io/yaml: keys sorted, block sequences not indented), with comments an operator
// added by hand.
const kubeadmDoc = `apiServer:
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
controlPlaneEndpoint: 127.0.0.1:6443
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
`

// list returns the SAN list at field of doc, parsed independently of the code under test.
func list(t *testing.T, doc string, field kubeadmconfig.Field) []string {
	t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
		t.Fatalf("result does not parse: %v\n%s", err, doc)
	}
	var cur any = m
	for _, k := range strings.Split(string(field), ".") {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = mm[k]
	}
	var out []string
	if l, ok := cur.([]any); ok {
		for _, v := range l {
			out = append(out, v.(string))
		}
	}
	return out
}

// topKeys returns the document's top-level keys in order.
func topKeys(t *testing.T, doc string) []string {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(doc), &n); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for i := 0; i < len(n.Content[0].Content); i += 2 {
		keys = append(keys, n.Content[0].Content[i].Value)
	}
	return keys
}

func TestAddSANs(t *testing.T) {
	tests := []struct {
		name     string
		doc      string
		field    kubeadmconfig.Field
		sans     []string
		want     []string // the list afterwards
		added    []string
		keep     []string // substrings that must survive (comments, other fields)
		wantErr  string
		sameText bool // nothing added: the document is returned unchanged
	}{
		{name: "append to the apiserver's list, keep comments and fields", doc: kubeadmDoc, field: kubeadmconfig.APIServerSANs,
			sans: []string{"10.2.1.139", "lb.example.com"}, want: []string{"10.2.0.100", "10.2.1.139", "lb.example.com"}, added: []string{"10.2.1.139", "lb.example.com"},
			keep: []string{"# the load balancer", "# VIP", "audit-log-path", "serviceSubnet: 10.96.0.0/12", "controlPlaneEndpoint: 127.0.0.1:6443"}},
		{name: "already listed", doc: kubeadmDoc, field: kubeadmconfig.APIServerSANs,
			sans: []string{"10.2.0.100"}, want: []string{"10.2.0.100"}, sameText: true},
		{name: "no apiServer at all", doc: "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\n# keep me\nclusterName: kubernetes\n",
			field: kubeadmconfig.APIServerSANs, sans: []string{"10.2.1.139"}, want: []string{"10.2.1.139"}, added: []string{"10.2.1.139"}, keep: []string{"# keep me"}},
		{name: "apiServer: {} (kubeadm's empty)", doc: "apiServer: {}\napiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\n",
			field: kubeadmconfig.APIServerSANs, sans: []string{"10.2.1.139"}, want: []string{"10.2.1.139"}, added: []string{"10.2.1.139"}},
		{name: "certSANs: null", doc: "apiServer:\n  certSANs:\napiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\n",
			field: kubeadmconfig.APIServerSANs, sans: []string{"10.2.1.139"}, want: []string{"10.2.1.139"}, added: []string{"10.2.1.139"}},
		{name: "flow list stays a flow list", doc: "apiServer:\n  certSANs: [a.example, 10.0.0.1]\napiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\n",
			field: kubeadmconfig.APIServerSANs, sans: []string{"10.2.1.139", "A.EXAMPLE"}, want: []string{"a.example", "10.0.0.1", "10.2.1.139"}, added: []string{"10.2.1.139"},
			keep: []string{"certSANs: [a.example, 10.0.0.1, 10.2.1.139]"}},
		{name: "etcd server list under etcd.local", doc: kubeadmDoc, field: kubeadmconfig.EtcdServerSANs,
			sans: []string{"etcd-1.example"}, want: []string{"etcd-1.example"}, added: []string{"etcd-1.example"}, keep: []string{"dataDir: /var/lib/etcd", "# VIP"}},
		{name: "external etcd", doc: "etcd:\n  external:\n    endpoints: [https://10.0.0.5:2379]\napiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\n",
			field: kubeadmconfig.EtcdPeerSANs, sans: []string{"x"}, wantErr: "etcd is external"},
		{name: "not a ClusterConfiguration", doc: "kind: InitConfiguration\n", field: kubeadmconfig.APIServerSANs, sans: []string{"x"}, wantErr: "not ClusterConfiguration"},
		{name: "certSANs is a string", doc: "apiServer:\n  certSANs: 10.0.0.1\napiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\n", field: kubeadmconfig.APIServerSANs, sans: []string{"x"}, wantErr: "is not a list"},
		{name: "not YAML", doc: "apiServer: [\n", field: kubeadmconfig.APIServerSANs, sans: []string{"x"}, wantErr: "parse ClusterConfiguration"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, added, err := kubeadmconfig.AddSANs(tc.doc, tc.field, tc.sans)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(added, ",") != strings.Join(tc.added, ",") {
				t.Errorf("added %v, want %v", added, tc.added)
			}
			if l := list(t, got, tc.field); strings.Join(l, ",") != strings.Join(tc.want, ",") {
				t.Errorf("%s = %v, want %v\n%s", tc.field, l, tc.want, got)
			}
			if tc.sameText && got != tc.doc {
				t.Errorf("nothing added but the document changed:\n%s", got)
			}
			for _, s := range tc.keep {
				if !strings.Contains(got, s) {
					t.Errorf("lost %q:\n%s", s, got)
				}
			}
			if strings.Join(topKeys(t, got), ",") != strings.Join(topKeys(t, tc.doc), ",") && len(topKeys(t, got)) == len(topKeys(t, tc.doc)) {
				t.Errorf("top-level order changed: %v -> %v", topKeys(t, tc.doc), topKeys(t, got))
			}
		})
	}
}

func TestLaterCommand(t *testing.T) {
	got := kubeadmconfig.LaterCommand([]kubeadmconfig.Edit{
		{Field: kubeadmconfig.APIServerSANs, SANs: []string{"10.2.1.139", "lb.example"}},
		{Field: kubeadmconfig.EtcdPeerSANs, SANs: []string{"etcd-1"}},
	})
	want := "certctl kubeadm-config add-san 10.2.1.139 lb.example; certctl kubeadm-config add-san etcd-1 --cert etcd-peer"
	if got != want {
		t.Errorf("LaterCommand = %q, want %q", got, want)
	}
}

func yaml2map(doc string, m *map[string]any) error { return yaml.Unmarshal([]byte(doc), m) }

func equalYAML(a, b any) bool {
	x, err1 := yaml.Marshal(a)
	y, err2 := yaml.Marshal(b)
	return err1 == nil && err2 == nil && string(x) == string(y)
}

// TestUnknownAPIVersion: a ClusterConfiguration of a kubeadm API certctl does not know (a newer
// kubeadm's, or none) is refused by every edit, with a typed error naming what it found; the
// document is not changed.
func TestUnknownAPIVersion(t *testing.T) {
	for _, doc := range []string{
		"apiVersion: kubeadm.k8s.io/v1\nkind: ClusterConfiguration\ncontrolPlaneEndpoint: 10.2.1.151:6443\n",
		"apiVersion: kubeadm.k8s.io/v1beta2\nkind: ClusterConfiguration\n",
		"kind: ClusterConfiguration\n",
	} {
		for name, edit := range map[string]func() (string, error){
			"AddSANs": func() (string, error) {
				out, _, err := kubeadmconfig.AddSANs(doc, kubeadmconfig.APIServerSANs, []string{"10.2.1.139"})
				return out, err
			},
			"SetControlPlaneEndpoint": func() (string, error) {
				out, _, err := kubeadmconfig.SetControlPlaneEndpoint(doc, "10.2.1.139:6443")
				return out, err
			},
			"ControlPlaneEndpoint": func() (string, error) { return kubeadmconfig.ControlPlaneEndpoint(doc) },
		} {
			out, err := edit()
			var unknown *kubeadmconfig.UnknownAPIVersionError
			if !errors.As(err, &unknown) || out != "" {
				t.Errorf("%s on %q: %q, %v; want an UnknownAPIVersionError and nothing", name, doc, out, err)
			}
		}
	}
}

func TestSetControlPlaneEndpoint(t *testing.T) {
	for _, tc := range []struct {
		name, doc, ep, old string
		wantErr            bool
	}{
		{name: "replaces", doc: "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\n# where joins go\ncontrolPlaneEndpoint: 10.2.1.151:6443 # cp1\nnetworking:\n  podSubnet: 10.244.0.0/16\n", ep: "10.2.1.139:6443", old: "10.2.1.151:6443"},
		{name: "adds", doc: "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\n", ep: "lb.example.com:6443"},
		{name: "same", doc: "apiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\ncontrolPlaneEndpoint: 10.2.1.139:6443\n", ep: "10.2.1.139:6443", old: "10.2.1.139:6443"},
		{name: "not a ClusterConfiguration", doc: "kind: InitConfiguration\n", ep: "x:1", wantErr: true},
		{name: "not YAML", doc: "kind: [", ep: "x:1", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, old, err := kubeadmconfig.SetControlPlaneEndpoint(tc.doc, tc.ep)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("want an error, got %q", out)
				}
				return
			}
			if err != nil || old != tc.old {
				t.Fatalf("old %q, %v; want %q", old, err, tc.old)
			}
			if got, err := kubeadmconfig.ControlPlaneEndpoint(out); err != nil || got != tc.ep {
				t.Fatalf("endpoint after: %q %v, want %q\n%s", got, err, tc.ep, out)
			}
			for _, keep := range []string{"# where joins go", "# cp1", "podSubnet: 10.244.0.0/16"} {
				if strings.Contains(tc.doc, keep) && !strings.Contains(out, keep) {
					t.Errorf("lost %q:\n%s", keep, out)
				}
			}
		})
	}
}

func TestChangeString(t *testing.T) {
	for _, tc := range []struct {
		c    kubeadmconfig.Change
		want string
	}{
		{kubeadmconfig.Change{Field: kubeadmconfig.APIServerSANs, Asked: []string{"a", "b"}, Added: []string{"b"}}, "kube-system/kubeadm-config: added b to apiServer.certSANs"},
		{kubeadmconfig.Change{Field: kubeadmconfig.APIServerSANs, Asked: []string{"a", "b"}}, "kube-system/kubeadm-config: apiServer.certSANs already lists a, b: nothing changed"},
		{kubeadmconfig.Change{Field: kubeadmconfig.APIServerSANs, Asked: []string{"a"}, Added: []string{"a"}, DryRun: true}, "kube-system/kubeadm-config: would add a to apiServer.certSANs; dry run: nothing changed"},
		{kubeadmconfig.Change{Field: kubeadmconfig.APIServerSANs, Asked: []string{"a"}, DryRun: true}, "kube-system/kubeadm-config: apiServer.certSANs already lists a; dry run: nothing changed"},
	} {
		if got := tc.c.String(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.c, got, tc.want)
		}
	}
}
