package live_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/inspect"
	"github.com/certctl/certctl/pkg/live"
	"github.com/certctl/certctl/pkg/pki"
)

// TestLiveAgainstRealAPIServer runs inspect --live against a real kube-apiserver started on a
// kubeadm-made tree. It serves apiserver.crt; when the pair on disk is replaced, the
// apiserver picks the new file up without a restart (LAB.md) and --live sees it.
func TestLiveAgainstRealAPIServer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and kube-apiserver")
	}
	tr := testenv.KubeadmTree(t, testenv.TreeOptions{})
	cp := testenv.StartControlPlane(t, testenv.ControlPlaneOptions{PKIDir: tr.Layout.PKIDir, KubeconfigDir: tr.Layout.KubeconfigDir})
	_, port, _ := splitHostPort(cp.APIServerAddr)
	if err := os.MkdirAll(tr.Layout.ManifestsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	manifest := fmt.Sprintf("apiVersion: v1\nkind: Pod\nmetadata: {name: kube-apiserver}\nspec:\n  containers:\n  - name: kube-apiserver\n    command: [kube-apiserver, --secure-port=%s]\n", port)
	if err := os.WriteFile(filepath.Join(tr.Layout.ManifestsDir, "kube-apiserver.yaml"), []byte(manifest), 0o600); err != nil {
		t.Fatal(err)
	}
	check := func() *inspect.Certificate {
		inv := pki.Load(tr.Layout, pki.Default())
		r := inspect.Diagnose(inv, inspect.Options{})
		live.Check(context.Background(), inv, r, 2*time.Second)
		return r.Get("apiserver")
	}
	api := check()
	if api.Served == nil || !api.Served.MatchesDisk {
		t.Fatalf("apiserver served %+v, want it to match apiserver.crt", api.Served)
	}

	// Re-issue apiserver.crt with a new key and swap the pair on disk.
	inv := pki.Load(tr.Layout, pki.Default())
	old, ca := inv.Get("apiserver"), inv.Get("ca")
	key, _ := pki.GenerateKey(pki.AlgRSA2048)
	tmpl := pki.TemplateFrom(old.Cert())
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-5*time.Minute), time.Now().Add(200*24*time.Hour)
	cert, err := pki.Sign(ca.Cert(), ca.Key, key, tmpl)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, _ := pki.EncodePrivateKey(key)
	// Key first, then certificate: the apiserver's reloader reads the pair when it changes.
	for _, f := range []struct {
		path string
		data []byte
	}{{old.KeyPath, keyPEM}, {old.Path, pki.EncodeCertificates(cert)}} {
		if err := os.WriteFile(f.path+".new", f.data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(f.path+".new", f.path); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		api = check()
		if api.Served != nil && api.Served.MatchesDisk {
			t.Logf("the apiserver serves the renewed certificate without a restart")
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 90s the apiserver still serves %+v; findings %+v", api.Served, api.Findings)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got := testenv.ServedCert(t, cp.APIServerAddr); !got.Equal(cert) {
		t.Fatalf("served certificate is not the renewed one")
	}
}
