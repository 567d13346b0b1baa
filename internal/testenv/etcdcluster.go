package testenv

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// EtcdCluster is a real etcd cluster of several members on loopback, on a kubeadm tree's etcd
// PKI (every member serves the tree's etcd/server.crt and peers with etcd/peer.crt, which
// cover 127.0.0.1): what a stacked control plane of several nodes runs, for the code that
// looks at the members' health and leadership.
type EtcdCluster struct {
	PKIDir  string
	Members []*EtcdMember
	dir     string
	bin     string
}

// EtcdMember is one member: its name, client URL and process.
type EtcdMember struct {
	Name      string
	ClientURL string
	PeerURL   string
	args      []string
	proc      *process
}

// StartEtcdCluster starts n members on the tree's etcd PKI and waits until each is healthy.
func StartEtcdCluster(t testing.TB, pkiDir string, n int) *EtcdCluster {
	t.Helper()
	c := &EtcdCluster{PKIDir: pkiDir, dir: t.TempDir(), bin: Binary(t, "etcd")}
	p := func(name string) string { return filepath.Join(pkiDir, name) }
	var initial []string
	for i := range n {
		m := &EtcdMember{
			Name:      fmt.Sprintf("cp%d", i+1),
			ClientURL: fmt.Sprintf("https://127.0.0.1:%d", FreePort(t, "127.0.0.1")),
			PeerURL:   fmt.Sprintf("https://127.0.0.1:%d", FreePort(t, "127.0.0.1")),
		}
		c.Members = append(c.Members, m)
		initial = append(initial, m.Name+"="+m.PeerURL)
	}
	for _, m := range c.Members {
		args := etcdArgs(p, filepath.Join(c.dir, m.Name), m.ClientURL, m.PeerURL, "")
		for i, a := range args {
			switch {
			case strings.HasPrefix(a, "--name="):
				args[i] = "--name=" + m.Name
			case strings.HasPrefix(a, "--initial-cluster="):
				args[i] = "--initial-cluster=" + strings.Join(initial, ",")
			}
		}
		m.args = append(args, "--initial-cluster-state=new", "--initial-cluster-token=certctl-test")
		m.proc = start(t, c.dir, m.Name, c.bin, m.args...)
	}
	for _, m := range c.Members {
		c.waitHealthy(t, m)
	}
	return c
}

// Stop kills a member (as a node that went away).
func (c *EtcdCluster) Stop(m *EtcdMember) { m.proc.stop() }

// Start starts a stopped member again on its data and waits until it is healthy.
func (c *EtcdCluster) Start(t testing.TB, m *EtcdMember) {
	t.Helper()
	m.proc = start(t, c.dir, m.Name, c.bin, m.args...)
	c.waitHealthy(t, m)
}

// Client is the credentials of an etcd client of the tree (healthcheck-client).
func (c *EtcdCluster) Client() (caFile, certFile, keyFile string) {
	p := func(name string) string { return filepath.Join(c.PKIDir, name) }
	return p("etcd/ca.crt"), p("etcd/healthcheck-client.crt"), p("etcd/healthcheck-client.key")
}

func (c *EtcdCluster) waitHealthy(t testing.TB, m *EtcdMember) {
	t.Helper()
	caFile, certFile, keyFile := c.Client()
	roots := x509.NewCertPool()
	pemData, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	roots.AppendCertsFromPEM(pemData)
	hc, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := waitHTTPS(context.Background(), m.proc, m.ClientURL+"/health", "", roots, &hc, 60*time.Second); err != nil {
		t.Fatalf("etcd member %s: %v\n%s", m.Name, err, m.proc.tail())
	}
}
