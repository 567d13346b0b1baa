package inspect_test

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/certctl/certctl/pkg/inspect"
	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/sandbox"
)

var now = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func tree(t *testing.T, o sandbox.Options) pki.Layout {
	t.Helper()
	o.Dir = t.TempDir()
	o.KeyAlgorithm = pki.AlgECDSAP256
	if o.Now.IsZero() {
		o.Now = now
	}
	l, err := sandbox.Create(o)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

type want struct{ name, code string }

func TestDiagnose(t *testing.T) {
	tests := []struct {
		name    string
		opts    sandbox.Options
		mutate  func(t *testing.T, l pki.Layout)
		diag    inspect.Options
		want    []want   // findings that must be there
		absent  []string // rows that must be absent
		healthy bool     // no finding above info anywhere
	}{
		{name: "healthy node", healthy: true},
		{name: "case C: expired apiserver certificate", opts: sandbox.Options{Faults: []sandbox.Fault{sandbox.FaultAPIServerExpired}},
			want: []want{{"apiserver", inspect.CodeExpired}}},
		{name: "case B: load balancer IP not covered", opts: sandbox.Options{Faults: []sandbox.Fault{sandbox.FaultAPIServerNoLBSAN}},
			diag: inspect.Options{CheckSANs: []string{"10.2.1.139", "10.2.0.100"}},
			want: []want{{"apiserver", inspect.CodeSANMissing}}},
		{name: "case B: covered when the SAN is there", diag: inspect.Options{CheckSANs: []string{"10.2.1.139", "kubernetes.default"}}, healthy: true},
		{name: "case A: kubelet serving certificate without IP SANs", opts: sandbox.Options{Faults: []sandbox.Fault{sandbox.FaultKubeletNoIPSANs}},
			want: []want{{"kubelet-serving", inspect.CodeKubeletNoIPSANs}, {"kubelet-serving", inspect.CodeKubeletSelfSigned}}},
		{name: "case A: CA-signed serving certificate without this node's IP", diag: inspect.Options{NodeIPs: []net.IP{net.ParseIP("10.2.1.198")}},
			want: []want{{"kubelet-serving", inspect.CodeKubeletIPMissing}}},
		{name: "case D: stale ~/.kube/config", opts: sandbox.Options{Faults: []sandbox.Fault{sandbox.FaultStaleUserKubeconfig}},
			want: []want{{"user-kubeconfig", inspect.CodeKubeconfigStale}, {"user-kubeconfig", inspect.CodeExpired}}},
		{name: "expiring within the warning window", opts: sandbox.Options{LeafValidity: 10 * 24 * time.Hour},
			want: []want{{"apiserver", inspect.CodeExpiringSoon}, {"admin.conf", inspect.CodeExpiringSoon}, {"etcd-peer", inspect.CodeExpiringSoon}}},
		{name: "not yet valid (clock skew)", diag: inspect.Options{Now: now.Add(-time.Hour)},
			want: []want{{"apiserver", inspect.CodeNotYetValid}, {"ca", inspect.CodeNotYetValid}}},
		{name: "CAs expiring within a year: rotation due", diag: inspect.Options{Now: now.Add(9*365*24*time.Hour + 200*24*time.Hour)},
			want: []want{{"ca", inspect.CodeCARotationDue}, {"etcd-ca", inspect.CodeCARotationDue}, {"front-proxy-ca", inspect.CodeCARotationDue}}},
		{name: "CA expiring within the warning window: expiring-soon names ca rotate", diag: inspect.Options{Now: now.Add(10*365*24*time.Hour - 10*24*time.Hour)},
			want: []want{{"ca", inspect.CodeExpiringSoon}, {"front-proxy-ca", inspect.CodeExpiringSoon}}},
		{name: "leaf outlives its CA", opts: sandbox.Options{LeafValidity: 11 * 365 * 24 * time.Hour},
			want: []want{{"apiserver", inspect.CodeOutlivesCA}}},
		{name: "key does not match certificate",
			mutate: func(t *testing.T, l pki.Layout) {
				copyFile(t, filepath.Join(l.PKIDir, "front-proxy-client.key"), filepath.Join(l.PKIDir, "apiserver.key"))
			},
			want: []want{{"apiserver", inspect.CodeKeyMismatch}}},
		{name: "CA certificate and CA key do not match",
			mutate: func(t *testing.T, l pki.Layout) {
				copyFile(t, filepath.Join(l.PKIDir, "etcd", "ca.key"), filepath.Join(l.PKIDir, "ca.key"))
			},
			want: []want{{"ca", inspect.CodeCAKeyMismatch}}},
		{name: "sa.key and sa.pub do not match",
			mutate: func(t *testing.T, l pki.Layout) {
				copyFile(t, filepath.Join(l.PKIDir, "apiserver.key"), filepath.Join(l.PKIDir, "sa.key"))
			},
			want: []want{{"sa", inspect.CodeKeyMismatch}}},
		{name: "external CA: ca.key absent is info only",
			mutate: func(t *testing.T, l pki.Layout) { os.Remove(filepath.Join(l.PKIDir, "ca.key")) },
			want:   []want{{"ca", inspect.CodeCAKeyAbsent}}, healthy: true},
		{name: "leaf key missing",
			mutate: func(t *testing.T, l pki.Layout) { os.Remove(filepath.Join(l.PKIDir, "etcd", "peer.key")) },
			want:   []want{{"etcd-peer", inspect.CodeKeyMissing}}},
		{name: "malformed key",
			mutate: func(t *testing.T, l pki.Layout) {
				os.WriteFile(filepath.Join(l.PKIDir, "apiserver-etcd-client.key"), []byte("-----BEGIN EC PRIVATE KEY-----\nAAAA\n"), 0o600)
			},
			want: []want{{"apiserver-etcd-client", inspect.CodeKeyMalformed}}},
		{name: "missing certificate",
			mutate: func(t *testing.T, l pki.Layout) { os.Remove(filepath.Join(l.PKIDir, "front-proxy-client.crt")) },
			want:   []want{{"front-proxy-client", inspect.CodeMissing}}},
		{name: "malformed certificate",
			mutate: func(t *testing.T, l pki.Layout) {
				os.WriteFile(filepath.Join(l.PKIDir, "apiserver.crt"), []byte("not a certificate"), 0o644)
			},
			want: []want{{"apiserver", inspect.CodeMalformed}}},
		{name: "kubeconfig that does not parse",
			mutate: func(t *testing.T, l pki.Layout) {
				os.WriteFile(filepath.Join(l.KubeconfigDir, "scheduler.conf"), []byte("apiVersion: v1\nclusters: [\n"), 0o600)
			},
			want: []want{{"scheduler.conf", inspect.CodeMalformed}}},
		{name: "certificate from another cluster's CA",
			mutate: func(t *testing.T, l pki.Layout) {
				other := tree(t, sandbox.Options{})
				for _, f := range []string{"apiserver.crt", "apiserver.key"} {
					copyFile(t, filepath.Join(other.PKIDir, f), filepath.Join(l.PKIDir, f))
				}
				copyFile(t, filepath.Join(other.KubeconfigDir, "admin.conf"), filepath.Join(l.KubeconfigDir, "admin.conf"))
			},
			want: []want{{"apiserver", inspect.CodeNotSignedByCA}, {"admin.conf", inspect.CodeNotSignedByCA}, {"admin.conf", inspect.CodeKubeconfigCAMismatch}}},
		{name: "worker node: no PKI, no control-plane kubeconfigs",
			mutate: func(t *testing.T, l pki.Layout) {
				for _, p := range []string{l.PKIDir, l.ManifestsDir} {
					os.RemoveAll(p)
				}
				for _, f := range []string{"admin.conf", "super-admin.conf", "controller-manager.conf", "scheduler.conf"} {
					os.Remove(filepath.Join(l.KubeconfigDir, f))
				}
				os.RemoveAll(filepath.Dir(l.UserKubeconfig))
			},
			absent:  []string{"ca", "apiserver", "etcd-server", "sa", "admin.conf", "user-kubeconfig"},
			healthy: true},
		{name: "copied PKI tree without kubelet files",
			mutate: func(t *testing.T, l pki.Layout) {
				os.RemoveAll(l.KubeletDir)
				os.Remove(filepath.Join(l.KubeconfigDir, "kubelet.conf"))
			},
			absent: []string{"kubelet-serving", "kubelet-client", "kubelet.conf"}, healthy: true},
		{name: "external etcd: no etcd PKI",
			mutate: func(t *testing.T, l pki.Layout) {
				os.RemoveAll(filepath.Join(l.PKIDir, "etcd"))
				os.Remove(filepath.Join(l.PKIDir, "apiserver-etcd-client.crt"))
				os.Remove(filepath.Join(l.PKIDir, "apiserver-etcd-client.key"))
			},
			absent: []string{"etcd-ca", "etcd-server", "etcd-peer", "apiserver-etcd-client"}, healthy: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := tree(t, tc.opts)
			if tc.mutate != nil {
				tc.mutate(t, l)
			}
			if tc.diag.Now.IsZero() {
				tc.diag.Now = now
			}
			r := inspect.Diagnose(pki.Load(l, pki.Default()), tc.diag)
			for _, w := range tc.want {
				if !r.HasCode(w.name, w.code) {
					t.Errorf("%s: want finding %s, got %+v", w.name, w.code, r.Get(w.name).Findings)
				}
			}
			for _, name := range tc.absent {
				if c := r.Get(name); c == nil || c.Status != inspect.StatusAbsent || len(c.Findings) != 0 {
					t.Errorf("%s: want absent without findings, got %+v", name, c)
				}
			}
			worst := r.Worst()
			if tc.healthy && worst != "" && worst != inspect.SevInfo {
				for _, c := range r.Certificates {
					if len(c.Findings) > 0 {
						t.Logf("%s: %+v", c.Name, c.Findings)
					}
				}
				t.Errorf("want a healthy report, worst finding is %s", worst)
			}
			if !tc.healthy && worst == "" {
				t.Errorf("want findings, got none")
			}
			// A CA's expiry findings name the command that fixes it.
			for _, name := range []string{"ca", "etcd-ca", "front-proxy-ca"} {
				for _, f := range r.Get(name).Findings {
					if (f.Code == inspect.CodeCARotationDue || f.Code == inspect.CodeExpiringSoon) && !strings.Contains(f.Remedy, "certctl ca rotate "+name+" ") {
						t.Errorf("%s: %s remedy %q does not name certctl ca rotate %s", name, f.Code, f.Remedy, name)
					}
				}
			}
			// A healthy CA (more than a year left) has no rotation finding.
			for _, name := range []string{"ca", "etcd-ca", "front-proxy-ca"} {
				if c := r.Get(name); c != nil && c.NotAfter != nil && c.NotAfter.Sub(tc.diag.Now) > inspect.CARotationWindow && r.HasCode(name, inspect.CodeCARotationDue) {
					t.Errorf("%s expires in more than a year but has %s", name, inspect.CodeCARotationDue)
				}
			}
			// Every finding carries a code, a severity, a message and a remedy.
			for _, c := range r.Certificates {
				for _, f := range c.Findings {
					if f.Code == "" || f.Message == "" || f.Remedy == "" || !slices.Contains([]inspect.Severity{inspect.SevInfo, inspect.SevWarning, inspect.SevCritical}, f.Severity) {
						t.Errorf("%s: incomplete finding %+v", c.Name, f)
					}
				}
			}
		})
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{"30d", 30 * 24 * time.Hour, false},
		{"2w", 14 * 24 * time.Hour, false},
		{"36h", 36 * time.Hour, false},
		{"1d12h", 36 * time.Hour, false},
		{"90m", 90 * time.Minute, false},
		{"", 0, true},
		{"d", 0, true},
		{"30x", 0, true},
		{"-5d", 0, true},
		{"abc", 0, true},
	}
	for _, tc := range tests {
		got, err := inspect.ParseDuration(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v, err %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}
