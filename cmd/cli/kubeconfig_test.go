package cli

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/backup"
	"github.com/certctl/certctl/pkg/kubeconfig"
	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/sandbox"
)

// TestKubeconfigRefreshAuthenticates is case D step 4 against a real apiserver: ~/.kube/config
// holds an expired admin certificate (and another cluster's entries); after refresh it
// authenticates, and the other entries are still there.
func TestKubeconfigRefreshAuthenticates(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and kube-apiserver")
	}
	tr := testenv.KubeadmTree(t, testenv.TreeOptions{})
	l := tr.Layout
	cp := testenv.StartControlPlane(t, testenv.ControlPlaneOptions{PKIDir: l.PKIDir, KubeconfigDir: l.KubeconfigDir})

	// The user's copy, made long ago: same cluster, an admin certificate that expired.
	inv := pki.Load(l, pki.Default())
	ca, adminItem := inv.Get("ca"), inv.Get("admin.conf")
	key, _ := pki.GenerateKey(pki.AlgECDSAP256)
	tmpl := pki.TemplateFrom(adminItem.Cert())
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-400*24*time.Hour), time.Now().Add(-time.Hour)
	old, err := pki.Sign(ca.Cert(), ca.Key, key, tmpl)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, _ := pki.EncodePrivateKey(key)
	adminCfg, _, err := kubeconfig.Load(adminItem.Path)
	if err != nil {
		t.Fatal(err)
	}
	stale, err := kubeconfig.SetClientCertificate(adminCfg, pki.EncodeCertificates(old), keyPEM, nil)
	if err != nil {
		t.Fatal(err)
	}
	stale.Clusters["prod"] = &clientcmdapi.Cluster{Server: "https://127.0.0.9:6443", CertificateAuthorityData: []byte("other")}
	stale.AuthInfos["prod-admin"] = &clientcmdapi.AuthInfo{Token: "secret"}
	stale.Contexts["prod"] = &clientcmdapi.Context{Cluster: "prod", AuthInfo: "prod-admin"}
	if err := os.MkdirAll(filepath.Dir(l.UserKubeconfig), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := clientcmd.WriteToFile(*stale, l.UserKubeconfig); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := cp.ClientsetFor(t, l.UserKubeconfig).CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); err == nil || !strings.Contains(err.Error(), "Unauthorized") {
		t.Fatalf("the stale kubeconfig should be refused, got %v", err)
	}
	code, out, errOut := run(t, "--root", tr.Root, "--user-kubeconfig", "/root/.kube/config", "kubeconfig", "refresh")
	if code != ExitOK || !strings.Contains(out, "updated user \"kubernetes-admin\"") {
		t.Fatalf("refresh: exit %d\n%s\n%s", code, out, errOut)
	}
	if _, err := cp.ClientsetFor(t, l.UserKubeconfig).CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); err != nil {
		t.Fatalf("the refreshed kubeconfig does not authenticate: %v", err)
	}
	cfg, err := clientcmd.LoadFromFile(l.UserKubeconfig)
	if err != nil || cfg.AuthInfos["prod-admin"].Token != "secret" || cfg.Contexts["prod"] == nil {
		t.Fatalf("the other cluster's entries were lost: %v", err)
	}
	if st, _ := os.Stat(l.UserKubeconfig); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", st.Mode())
	}
	// inspect no longer reports it stale.
	code, out, _ = run(t, "--root", tr.Root, "inspect", "-o", "json")
	if strings.Contains(out, `"code": "kubeconfig-stale"`) || code == ExitError {
		t.Errorf("inspect after refresh: exit %d\n%s", code, out)
	}
}

func TestKubeconfigRefreshBadInput(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "etc/kubernetes"), 0o755)
	os.WriteFile(filepath.Join(dir, "etc/kubernetes/admin.conf"), []byte("clusters: ["), 0o600)
	code, _, errOut := run(t, "--root", dir, "kubeconfig", "refresh")
	if code != ExitError || !strings.Contains(errOut, "admin.conf: not a valid kubeconfig") {
		t.Errorf("broken admin.conf: exit %d %q", code, errOut)
	}
	root := sandboxTree(t, sandboxOpts())
	os.WriteFile(filepath.Join(root, "root/.kube/config"), []byte("users: {"), 0o600)
	code, _, errOut = run(t, "--root", root, "kubeconfig", "refresh")
	if code != ExitError || !strings.Contains(errOut, "config: not a valid kubeconfig") {
		t.Errorf("broken target: exit %d %q", code, errOut)
	}
	if data, _ := os.ReadFile(filepath.Join(root, "root/.kube/config")); string(data) != "users: {" {
		t.Errorf("the broken target was changed")
	}
}

// TestRenewRefreshesCopiedUserKubeconfig: renew of admin.conf refreshes a ~/.kube/config that
// is a copy of it (backing it up), and leaves one that is not (here: the sandbox's stale
// copy, with another certificate) alone with a hint.
func TestRenewRefreshesCopiedUserKubeconfig(t *testing.T) {
	tests := []struct {
		name        string
		faults      []sandbox.Fault
		wantRefresh bool
	}{
		{"copy of admin.conf", nil, true},
		{"another certificate", []sandbox.Fault{sandbox.FaultStaleUserKubeconfig}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := sandboxTree(t, sandbox.Options{Faults: tc.faults})
			l := pki.NewLayout(pki.LayoutOptions{Root: root, Home: "/root"})
			userBefore, err := os.ReadFile(l.UserKubeconfig)
			if err != nil {
				t.Fatal(err)
			}
			code, out, errOut := run(t, "--root", root, "renew", "admin.conf", "--yes")
			if code != 0 {
				t.Fatalf("renew: exit %d\n%s%s", code, out, errOut)
			}
			_, admin, err := kubeconfig.Load(filepath.Join(l.KubeconfigDir, "admin.conf"))
			if err != nil {
				t.Fatal(err)
			}
			_, user, err := kubeconfig.Load(l.UserKubeconfig)
			if err != nil {
				t.Fatal(err)
			}
			refreshed := string(user.CertData) == string(admin.CertData)
			if refreshed != tc.wantRefresh {
				t.Fatalf("user kubeconfig refreshed=%v, want %v\n%s", refreshed, tc.wantRefresh, out)
			}
			if tc.wantRefresh {
				if !strings.Contains(out, "now uses admin.conf's credentials") || strings.Count(out, "backup: ") != 1 {
					t.Errorf("want the refresh reported, and one backup:\n%s", out)
				}
				// One backup holds the renewed files and the user's kubeconfig: one restore
				// undoes both.
				list, err := backup.List(l)
				if err != nil || len(list) != 1 {
					t.Fatalf("backups %v %v", list, err)
				}
				m, err := backup.Load(l, list[0].ID)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.ContainsFunc(m.Files, func(f backup.File) bool { return f.Path == "/root/.kube/config" }) {
					t.Errorf("the renewal's backup lacks /root/.kube/config: %+v", m.Files)
				}
				if st, err := os.Stat(l.UserKubeconfig); err != nil || st.Mode().Perm() != 0o600 {
					t.Errorf("%s: %v, mode %v", l.UserKubeconfig, err, st.Mode())
				}
				return
			}
			if after, _ := os.ReadFile(l.UserKubeconfig); string(after) != string(userBefore) {
				t.Errorf("a kubeconfig that is not a copy of admin.conf was changed")
			}
			if !strings.Contains(out, "certctl kubeconfig refresh") {
				t.Errorf("no hint to refresh other kubeconfigs:\n%s", out)
			}
		})
	}
}
