package kubeletserving_test

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/inspect"
	"github.com/certctl/certctl/pkg/kubeletserving"
	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/sandbox"
)

func treeSums(t *testing.T, root string) map[string][32]byte {
	t.Helper()
	sums := map[string][32]byte{}
	filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() {
			data, _ := os.ReadFile(p)
			sums[p] = sha256.Sum256(data)
		}
		return nil
	})
	return sums
}

// TestIssueFixesCaseA: the sandbox node serves a self-signed kubelet.crt without IP SANs;
// after `issue`, inspect finds the CA-signed certificate covering the node IP.
func TestIssueFixesCaseA(t *testing.T) {
	l := testenv.SandboxNode(t, sandbox.FaultKubeletNoIPSANs)
	before := inspect.Diagnose(pki.Load(l, pki.Default()), inspect.Options{})
	if !before.HasCode("kubelet-serving", inspect.CodeKubeletNoIPSANs) {
		t.Fatalf("sandbox lacks case A: %+v", before.Get("kubelet-serving").Findings)
	}
	// Case A as metrics-server sees it: the self-signed kubelet.crt fails a strict handshake.
	caPool := x509.NewCertPool()
	caPool.AddCert(pki.Load(l, pki.Default()).Get("ca").Cert())
	oldCert, oldKey := servingFiles(t, l)
	if err := handshake(serveFiles(t, oldCert, oldKey), caPool, "10.2.1.151"); err == nil {
		t.Fatal("the self-signed kubelet.crt passed a handshake verified against the cluster CA")
	}
	cfgBefore, _ := os.ReadFile(kubeletserving.ConfigPath(l))
	res, err := kubeletserving.Issue(kubeletserving.IssueOptions{Layout: l, Node: "master-1", IPs: []net.IP{net.ParseIP("10.2.1.151")}, DNSNames: []string{"master-1"}, Days: 3650})
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(res.KeyPath)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key %s: %v %v", res.KeyPath, st.Mode(), err)
	}
	cfg, _ := os.ReadFile(kubeletserving.ConfigPath(l))
	wantCfg := string(cfgBefore) + "tlsCertFile: /var/lib/kubelet/pki/kubelet-server-certctl.crt\ntlsPrivateKeyFile: /var/lib/kubelet/pki/kubelet-server-certctl.key\n"
	if string(cfg) != wantCfg {
		t.Fatalf("config.yaml:\n%s\nwant:\n%s", cfg, wantCfg)
	}
	if res.Cert.Subject.CommonName != "system:node:master-1" || res.Cert.Subject.Organization[0] != "system:nodes" {
		t.Errorf("subject %s", res.Cert.Subject)
	}
	if res.BackupID == "" {
		t.Errorf("no backup made")
	}
	after := inspect.Diagnose(pki.Load(l, pki.Default()), inspect.Options{})
	row := after.Get("kubelet-serving")
	if row.Status != inspect.StatusOK || row.CA != "ca" || !strings.HasSuffix(row.Path, "kubelet-server-certctl.crt") {
		t.Fatalf("after issue, kubelet-serving row %+v", row)
	}
	inv := pki.Load(l, pki.Default())
	roots := x509.NewCertPool()
	roots.AddCert(inv.Get("ca").Cert())
	if _, err := res.Cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: "10.2.1.151", KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Errorf("issued certificate does not verify for the node IP: %v", err)
	}
	// The pair really works as a TLS server identity: the files the kubelet config now names
	// (what the kubelet loads at start) served on loopback, and a client that verifies like
	// metrics-server (the cluster CA, the node IP as the name) completes a handshake.
	certFile, keyFile := servingFiles(t, l)
	if certFile != res.CertPath || keyFile != res.KeyPath {
		t.Fatalf("kubelet config names %s / %s, issue wrote %s / %s", certFile, keyFile, res.CertPath, res.KeyPath)
	}
	addr := serveFiles(t, certFile, keyFile)
	if err := handshake(addr, caPool, "10.2.1.151"); err != nil {
		t.Fatalf("handshake verified for the node IP 10.2.1.151: %v", err)
	}
	if err := handshake(addr, caPool, "master-1"); err != nil {
		t.Fatalf("handshake verified for the node name: %v", err)
	}
	// And the verification is real: an address the certificate does not hold fails.
	if err := handshake(addr, caPool, "10.2.1.152"); err == nil || !strings.Contains(err.Error(), "10.2.1.152") {
		t.Fatalf("handshake for an IP the certificate lacks: %v, want a failure naming it", err)
	}
}

// servingFiles are the kubelet serving certificate and key the node's kubelet would load.
func servingFiles(t *testing.T, l pki.Layout) (cert, key string) {
	t.Helper()
	it := pki.Load(l, pki.Default()).Get("kubelet-serving")
	if it == nil || it.Missing {
		t.Fatalf("no kubelet serving certificate under %s", l.Root)
	}
	return it.Path, it.KeyPath
}

// serveFiles serves the pair in certFile/keyFile over TLS on loopback.
func serveFiles(t *testing.T, certFile, keyFile string) string {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return testenv.ServeTLS(t, "127.0.0.1:0", pair, tls.NoClientCert)
}

// handshake dials addr and completes a TLS handshake verifying the server against roots for
// serverName (an IP is checked against the IP SANs), as metrics-server or kubeadm would.
func handshake(addr string, roots *x509.CertPool, serverName string) error {
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{RootCAs: roots, ServerName: serverName, MinVersion: tls.VersionTLS12})
	if err != nil {
		return err
	}
	defer c.Close()
	if !c.ConnectionState().HandshakeComplete {
		return fmt.Errorf("%s: handshake not complete", addr)
	}
	return nil
}

func TestIssueBadInputChangesNothing(t *testing.T) {
	ip := []net.IP{net.ParseIP("10.2.1.151")}
	tests := []struct {
		name    string
		mutate  func(l pki.Layout)
		opts    kubeletserving.IssueOptions
		wantErr string
	}{
		{"no --ip", nil, kubeletserving.IssueOptions{Node: "master-1"}, "--ip"},
		{"no --node", nil, kubeletserving.IssueOptions{IPs: ip}, "--node is required"},
		{"absurd days", nil, kubeletserving.IssueOptions{Node: "master-1", IPs: ip, Days: 100000}, "absurd"},
		{"CA key absent", func(l pki.Layout) { os.Remove(filepath.Join(l.PKIDir, "ca.key")) }, kubeletserving.IssueOptions{Node: "master-1", IPs: ip}, "is not on this node"},
		{"CA key of another CA", func(l pki.Layout) {
			data, _ := os.ReadFile(filepath.Join(l.PKIDir, "front-proxy-ca.key"))
			os.WriteFile(filepath.Join(l.PKIDir, "ca.key"), data, 0o600)
		}, kubeletserving.IssueOptions{Node: "master-1", IPs: ip}, "does not belong to"},
		{"malformed CA key", func(l pki.Layout) { os.WriteFile(filepath.Join(l.PKIDir, "ca.key"), []byte("junk"), 0o600) }, kubeletserving.IssueOptions{Node: "master-1", IPs: ip}, "no PEM private key"},
		{"no PKI (worker)", func(l pki.Layout) { os.RemoveAll(l.PKIDir) }, kubeletserving.IssueOptions{Node: "master-1", IPs: ip}, "no cluster CA"},
		{"kubelet config is not YAML", func(l pki.Layout) { os.WriteFile(kubeletserving.ConfigPath(l), []byte("a: ["), 0o644) }, kubeletserving.IssueOptions{Node: "master-1", IPs: ip}, "not valid YAML"},
		{"no kubelet config", func(l pki.Layout) { os.Remove(kubeletserving.ConfigPath(l)) }, kubeletserving.IssueOptions{Node: "master-1", IPs: ip}, "read kubelet config"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := testenv.SandboxNode(t)
			if tc.mutate != nil {
				tc.mutate(l)
			}
			before := treeSums(t, l.Root)
			tc.opts.Layout = l
			tc.opts.Now = time.Now()
			_, err := kubeletserving.Issue(tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err %v, want %q", err, tc.wantErr)
			}
			after := treeSums(t, l.Root)
			if len(after) != len(before) {
				t.Fatalf("files were added or removed: %d -> %d", len(before), len(after))
			}
			for p, s := range before {
				if after[p] != s {
					t.Errorf("%s changed", p)
				}
			}
		})
	}
}
