package kubeconfig_test

import (
	"bytes"
	"reflect"
	"strings"
	"testing"

	"github.com/certctl/certctl/pkg/kubeconfig"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

func cfg(clusters map[string]*clientcmdapi.Cluster, users map[string]*clientcmdapi.AuthInfo, contexts map[string]*clientcmdapi.Context, current string) *clientcmdapi.Config {
	c := clientcmdapi.NewConfig()
	for k, v := range clusters {
		c.Clusters[k] = v
	}
	for k, v := range users {
		c.AuthInfos[k] = v
	}
	for k, v := range contexts {
		c.Contexts[k] = v
	}
	c.CurrentContext = current
	return c
}

func TestMerge(t *testing.T) {
	admin := cfg(map[string]*clientcmdapi.Cluster{"kubernetes": {Server: "https://127.0.0.1:6443", CertificateAuthorityData: []byte("CA")}},
		map[string]*clientcmdapi.AuthInfo{"kubernetes-admin": {ClientCertificateData: []byte("NEW"), ClientKeyData: []byte("NEWKEY")}},
		map[string]*clientcmdapi.Context{"kubernetes-admin@kubernetes": {Cluster: "kubernetes", AuthInfo: "kubernetes-admin"}}, "kubernetes-admin@kubernetes")
	other := &clientcmdapi.Cluster{Server: "https://prod.example.com:6443", CertificateAuthorityData: []byte("OTHERCA")}
	otherUser := &clientcmdapi.AuthInfo{ClientCertificateData: []byte("PROD"), ClientKeyData: []byte("PRODKEY")}
	tests := []struct {
		name    string
		target  *clientcmdapi.Config
		check   func(t *testing.T, out *clientcmdapi.Config)
		changes string
		wantErr string
	}{
		{"empty target becomes admin.conf", clientcmdapi.NewConfig(), func(t *testing.T, out *clientcmdapi.Config) {
			if out.CurrentContext != "kubernetes-admin@kubernetes" || string(out.AuthInfos["kubernetes-admin"].ClientCertificateData) != "NEW" {
				t.Errorf("%+v", out)
			}
		}, "cluster kubernetes added,user kubernetes-admin added,context kubernetes-admin@kubernetes added", ""},
		{"stale copy of admin.conf: user updated, names kept",
			cfg(map[string]*clientcmdapi.Cluster{"kubernetes": {Server: "https://127.0.0.1:6443", CertificateAuthorityData: []byte("CA")}},
				map[string]*clientcmdapi.AuthInfo{"kubernetes-admin": {ClientCertificateData: []byte("OLD"), ClientKeyData: []byte("OLDKEY")}},
				map[string]*clientcmdapi.Context{"kubernetes-admin@kubernetes": {Cluster: "kubernetes", AuthInfo: "kubernetes-admin"}}, "kubernetes-admin@kubernetes"),
			func(t *testing.T, out *clientcmdapi.Config) {
				if string(out.AuthInfos["kubernetes-admin"].ClientKeyData) != "NEWKEY" {
					t.Errorf("key not updated")
				}
			}, "user kubernetes-admin updated", ""},
		{"other clusters kept, ours found by CA under another name and server (a VIP)",
			cfg(map[string]*clientcmdapi.Cluster{"prod": other, "lab": {Server: "https://10.2.0.100:6443", CertificateAuthorityData: []byte("CA")}},
				map[string]*clientcmdapi.AuthInfo{"prod-admin": otherUser, "lab-admin": {ClientCertificateData: []byte("OLD"), ClientKeyData: []byte("OLDKEY")}, "token-user": {Token: "abc"}},
				map[string]*clientcmdapi.Context{"prod": {Cluster: "prod", AuthInfo: "prod-admin"}, "lab": {Cluster: "lab", AuthInfo: "lab-admin"}, "lab-token": {Cluster: "lab", AuthInfo: "token-user"}}, "prod"),
			func(t *testing.T, out *clientcmdapi.Config) {
				if out.CurrentContext != "prod" || !bytes.Equal(out.AuthInfos["prod-admin"].ClientCertificateData, []byte("PROD")) || out.Clusters["prod"].Server != other.Server {
					t.Errorf("another cluster's entries changed")
				}
				if out.AuthInfos["token-user"].Token != "abc" || len(out.AuthInfos["token-user"].ClientCertificateData) != 0 {
					t.Errorf("a token user was given a certificate")
				}
				if out.Clusters["lab"].Server != "https://127.0.0.1:6443" || string(out.AuthInfos["lab-admin"].ClientCertificateData) != "NEW" {
					t.Errorf("our entries not updated: %+v", out.Clusters["lab"])
				}
			}, "cluster lab updated,user lab-admin updated", ""},
		{"no entry of ours: added beside the others",
			cfg(map[string]*clientcmdapi.Cluster{"prod": other}, map[string]*clientcmdapi.AuthInfo{"prod-admin": otherUser},
				map[string]*clientcmdapi.Context{"prod": {Cluster: "prod", AuthInfo: "prod-admin"}}, "prod"),
			func(t *testing.T, out *clientcmdapi.Config) {
				if out.CurrentContext != "prod" || len(out.Clusters) != 2 {
					t.Errorf("%+v", out)
				}
			}, "cluster kubernetes added,user kubernetes-admin added,context kubernetes-admin@kubernetes added", ""},
		{"name clash with another cluster",
			cfg(map[string]*clientcmdapi.Cluster{"kubernetes": other}, map[string]*clientcmdapi.AuthInfo{"prod-admin": otherUser},
				map[string]*clientcmdapi.Context{"prod": {Cluster: "kubernetes", AuthInfo: "prod-admin"}}, "prod"),
			nil, "", `a cluster named "kubernetes" that belongs to another cluster`},
		// Found by fuzzing (testdata/fuzz/FuzzMerge): a context naming a cluster the target
		// lacks would have been bound to admin.conf's, added under that name, with its user's
		// old certificate; one naming a missing user would send the admin's to its server.
		{"a context names the cluster admin.conf's would be added as",
			cfg(map[string]*clientcmdapi.Cluster{"prod": other}, map[string]*clientcmdapi.AuthInfo{"prod-admin": otherUser, "node": {ClientCertificateData: []byte("NODE")}},
				map[string]*clientcmdapi.Context{"prod": {Cluster: "prod", AuthInfo: "prod-admin"}, "dangling": {Cluster: "kubernetes", AuthInfo: "node"}}, "prod"),
			nil, "", `context "dangling" names cluster "kubernetes" and user "node"`},
		{"a context names the user admin.conf's would be added as",
			cfg(map[string]*clientcmdapi.Cluster{"prod": other}, map[string]*clientcmdapi.AuthInfo{"prod-admin": otherUser},
				map[string]*clientcmdapi.Context{"prod": {Cluster: "prod", AuthInfo: "kubernetes-admin"}}, "prod"),
			nil, "", `context "prod" names cluster "prod" and user "kubernetes-admin"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := tc.target.DeepCopy()
			out, changes, err := kubeconfig.Merge(tc.target, admin)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, c := range changes {
				got = append(got, c.Kind+" "+c.Name+" "+c.Action)
			}
			if strings.Join(got, ",") != tc.changes {
				t.Errorf("changes %v, want %s", got, tc.changes)
			}
			tc.check(t, out)
			if !reflect.DeepEqual(tc.target, before) {
				t.Errorf("the target was modified in place")
			}
		})
	}
}
