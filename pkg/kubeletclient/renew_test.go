package kubeletclient_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/backup"
	"github.com/certctl/certctl/pkg/kubeletclient"
	"github.com/certctl/certctl/pkg/pki"
)

// TestRenewWithClusterCA: a real kubeadm tree whose kubelet client certificate has expired
// (or is missing, or was never finalized); renew signs a new one with the cluster CA, writes
// it as the kubelet does, and a real kube-apiserver authenticates the new kubelet.conf as
// system:node:<node>. Nothing but kubelet files changes.
func TestRenewWithClusterCA(t *testing.T) {
	if testing.Short() {
		t.Skip("runs kubeadm, etcd and kube-apiserver")
	}
	now := time.Now()
	tests := []struct {
		name      string
		node      string
		notBefore time.Time
		notAfter  time.Time // zero: no certificate
		flagNode  string
		finalized bool // kubelet.conf points at kubelet-client-current.pem
		noRestart bool // the kubelet is not a systemd unit: the operator restarts it
	}{
		{name: "expired certificate", node: "master-1", notBefore: now.Add(-400 * 24 * time.Hour), notAfter: now.Add(-35 * 24 * time.Hour), finalized: true},
		{name: "missing certificate, name from kubelet.conf", node: "cp-2", finalized: true},
		{name: "kubelet.conf still embeds kubeadm's certificate, --no-restart", node: "cp-3", noRestart: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := testenv.KubeadmTree(t, testenv.TreeOptions{NodeName: tt.node})
			if tt.finalized {
				joinedNode(t, tr, tt.node, tt.notBefore, tt.notAfter)
			} else if err := os.MkdirAll(kubeletclient.PKIDir(tr.Layout), 0o700); err != nil {
				t.Fatal(err)
			}
			cp := testenv.StartControlPlane(t, testenv.ControlPlaneOptions{PKIDir: tr.Layout.PKIDir, KubeconfigDir: tr.Layout.KubeconfigDir})
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			if !tt.notAfter.IsZero() {
				old, err := kubeletclient.NodeClient(tr.Layout, cp.URL, testenv.APIServerName)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := whoAmI(ctx, old); !apierrors.IsUnauthorized(err) {
					t.Fatalf("the expired certificate: want 401 Unauthorized from the apiserver, got %v", err)
				}
			}
			before := snapshot(t, tr.Root, kubeletFiles)
			var out bytes.Buffer
			restarted := false
			res, err := kubeletclient.Renew(ctx, kubeletclient.RenewOptions{
				Layout: tr.Layout, Node: tt.flagNode, Out: &out, Timeout: 30 * time.Second, NoRestart: tt.noRestart, NoWait: tt.noRestart,
				Server: cp.URL, TLSServerName: testenv.APIServerName,
				// The "restarted kubelet": authenticates with the new kubelet.conf and reports Ready.
				Restart: restartFunc(func(ctx context.Context) error {
					restarted = true
					cs, err := kubeletclient.NodeClient(tr.Layout, cp.URL, testenv.APIServerName)
					if err != nil {
						return err
					}
					return reportReady(ctx, cs, tt.node)
				}),
			})
			if err != nil {
				t.Fatalf("renew: %v\n%s", err, out.String())
			}
			if tt.noRestart {
				if restarted || res.Ready || !strings.Contains(out.String(), "the kubelet was NOT restarted") {
					t.Errorf("--no-restart: restarted %v, ready %v, output:\n%s\nwant no restart and the notice", restarted, res.Ready, out.String())
				}
			} else if !restarted || !res.Ready {
				t.Errorf("result %+v (restarted %v): want the kubelet restarted and the node Ready", res, restarted)
			}
			if res.Mode != kubeletclient.ModeCA || res.Node != tt.node {
				t.Errorf("result %+v: want mode ca, node %s", res, tt.node)
			}
			checkNodeCert(t, tr, res.Cert, tt.node)

			// Written as the kubelet writes it.
			l := tr.Layout
			target, err := os.Readlink(kubeletclient.CurrentPath(l))
			if err != nil {
				t.Fatalf("kubelet-client-current.pem is not a link: %v", err)
			}
			if !filepath.IsAbs(target) || !strings.HasPrefix(target, "/var/lib/kubelet/pki/kubelet-client-") || filepath.Join(tr.Root, target) != res.Path {
				t.Errorf("link target %q, want the absolute node path of %s", target, res.Path)
			}
			st, err := os.Stat(res.Path)
			if err != nil || st.Mode().Perm() != 0o600 {
				t.Errorf("%s: mode %v (%v), want 0600", res.Path, st.Mode(), err)
			}
			data, _ := os.ReadFile(res.Path)
			pair, err := kubeletclient.ParsePair(res.Path, data)
			if err != nil || !pair.Cert.Equal(res.Cert) {
				t.Errorf("%s: not the certificate and its key: %v", res.Path, err)
			}
			cfg, err := clientcmd.LoadFromFile(kubeletclient.KubeletConfPath(l))
			if err != nil {
				t.Fatal(err)
			}
			for name, u := range cfg.AuthInfos {
				if u.ClientCertificate != "/var/lib/kubelet/pki/kubelet-client-current.pem" || u.ClientKey != u.ClientCertificate || len(u.ClientCertificateData) > 0 {
					t.Errorf("kubelet.conf user %s: %+v, want client-certificate/client-key = the current link", name, u)
				}
			}
			// The apiserver authenticates the new kubelet.conf as the node.
			cs, err := kubeletclient.NodeClient(l, cp.URL, testenv.APIServerName)
			if err != nil {
				t.Fatal(err)
			}
			ui, err := whoAmI(ctx, cs)
			if err != nil {
				t.Fatalf("SelfSubjectReview with the new kubelet.conf: %v", err)
			}
			if ui.Username != "system:node:"+tt.node || !slices.Contains(ui.Groups, "system:nodes") {
				t.Errorf("apiserver sees %s %v, want system:node:%s in system:nodes", ui.Username, ui.Groups, tt.node)
			}
			// Backed up, and nothing else changed.
			m, err := backup.Load(l, res.BackupID)
			if err != nil {
				t.Fatalf("backup %s: %v", res.BackupID, err)
			}
			if !slices.ContainsFunc(m.Files, func(f backup.File) bool { return f.Path == "/etc/kubernetes/kubelet.conf" && !f.Absent }) {
				t.Errorf("backup %s lacks kubelet.conf: %+v", res.BackupID, m.Files)
			}
			sameSnapshots(t, before, snapshot(t, tr.Root, kubeletFiles))
			// inspect's view: the kubelet-client item is the new certificate.
			if it := pki.Load(l, pki.Default()).Get("kubelet-client"); it.Cert() == nil || !it.Cert().Equal(res.Cert) || it.Key == nil {
				t.Errorf("pki.Load does not read the new certificate through the link under --root: %+v", it)
			}
		})
	}
}

// TestRenewRefuses: bad input is refused with a clear error and leaves every file as it was.
func TestRenewRefuses(t *testing.T) {
	if testing.Short() {
		t.Skip("runs kubeadm")
	}
	tr := testenv.KubeadmTree(t, testenv.TreeOptions{NodeName: "master-1"})
	now := time.Now()
	joinedNode(t, tr, "master-1", now.Add(-400*24*time.Hour), now.Add(-35*24*time.Hour))
	worker := testenv.KubeadmTree(t, testenv.TreeOptions{NodeName: "worker-1"})
	joinedNode(t, worker, "worker-1", now.Add(-400*24*time.Hour), now.Add(-35*24*time.Hour))
	for _, f := range []string{"ca.key"} {
		if err := os.Remove(filepath.Join(worker.Layout.PKIDir, f)); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name string
		tr   *testenv.Tree
		o    kubeletclient.RenewOptions
		want string
	}{
		{name: "another node's name", tr: tr, o: kubeletclient.RenewOptions{Node: "master-2"}, want: `current client certificate is for node "master-1", not "master-2"`},
		{name: "no CA key and no token", tr: worker, want: "ca.key is not on this node"},
		{name: "validity out of range", tr: tr, o: kubeletclient.RenewOptions{Validity: time.Minute}, want: "out of range"},
		{name: "malformed token", tr: worker, o: kubeletclient.RenewOptions{Discovery: kubeletclient.DiscoveryOptions{Server: "127.0.0.1:1", Token: "nope", CACertHashes: []string{"sha256:00"}}}, want: "not a bootstrap token"},
		{name: "no discovery hash", tr: worker, o: kubeletclient.RenewOptions{Discovery: kubeletclient.DiscoveryOptions{Server: "127.0.0.1:1", Token: "abcdef.0123456789abcdef"}}, want: "--discovery-token-ca-cert-hash is required"},
		{name: "malformed discovery hash", tr: worker, o: kubeletclient.RenewOptions{Discovery: kubeletclient.DiscoveryOptions{Server: "127.0.0.1:1", Token: "abcdef.0123456789abcdef", CACertHashes: []string{"md5:abc"}}}, want: "want sha256:<64 hex digits>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := snapshot(t, tt.tr.Root, func(string) bool { return false })
			o := tt.o
			o.Layout, o.NoRestart, o.NoWait = tt.tr.Layout, true, true
			_, err := kubeletclient.Renew(context.Background(), o)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
			if msg := err.Error(); msg != strings.ToLower(msg[:1])+msg[1:] {
				t.Errorf("error should start lower-case: %q", msg)
			}
			sameSnapshots(t, before, snapshot(t, tt.tr.Root, func(string) bool { return false }))
		})
	}
}
