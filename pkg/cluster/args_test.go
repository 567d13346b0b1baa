package cluster

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// TestNodeArgs: the nodes' Jobs neither take the Lease (the command holds it for them) nor
// touch kubeadm-config when --san is given (the command records it once); what a node runs
// by hand when the API is down does record it.
func TestNodeArgs(t *testing.T) {
	for _, tc := range []struct {
		name  string
		o     RenewOptions
		job   string
		local string
	}{
		{"san", RenewOptions{Names: []string{"apiserver"}, SANs: []string{"10.2.1.139"}, RestartFlags: RestartFlags{StopGrace: 3 * time.Second}},
			"renew apiserver --san 10.2.1.139 --skip-kubeadm-config --restart --yes --stop-grace 3s", "renew apiserver --san 10.2.1.139"},
		{"san dry run", RenewOptions{Names: []string{"apiserver"}, SANs: []string{"10.2.1.139", "api.example.com"}, DryRun: true},
			"renew apiserver --san 10.2.1.139 --san api.example.com --skip-kubeadm-config --dry-run", "renew apiserver --san 10.2.1.139 --san api.example.com"},
		{"no san", RenewOptions{Names: []string{"all"}, Days: 365, IfExpiringArg: "30d"},
			"renew all --days 365 --if-expiring-within 30d --restart --yes", "renew all --days 365 --if-expiring-within 30d"},
		{"load balancer drain", RenewOptions{Names: []string{"all"}, RestartFlags: RestartFlags{StopGrace: 3 * time.Second, LBDrain: 3 * time.Second}},
			"renew all --restart --yes --stop-grace 3s --lb-drain 3s", "renew all"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			job := tc.o.nodeArgs()
			if got := strings.Join(job, " "); got != tc.job {
				t.Errorf("job args %q, want %q", got, tc.job)
			}
			if slices.Contains(job, "--lease") {
				t.Errorf("a node's Job would take the lease its parent holds: %v", job)
			}
			if got := strings.Join(tc.o.localArgs(), " "); got != tc.local {
				t.Errorf("local args %q, want %q", got, tc.local)
			}
		})
	}
}

// TestRotatedCAs: cluster ca-rotate's CA arguments; none is the cluster CA alone.
func TestRotatedCAs(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
		err  string
	}{
		{nil, []string{"ca"}, ""},
		{[]string{"all"}, []string{"ca", "etcd-ca", "front-proxy-ca", "sa"}, ""},
		{[]string{"front-proxy-ca", "etcd-ca", "front-proxy-ca"}, []string{"etcd-ca", "front-proxy-ca"}, ""},
		{[]string{"sa", "ca"}, []string{"ca", "sa"}, ""},
		{[]string{"ca", "kubelet-ca"}, nil, `unknown CA "kubelet-ca"`},
	} {
		got, err := RotatedCAs(tc.args)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%v: err %v, want %q", tc.args, err, tc.err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("%v: got %v %v, want %v", tc.args, got, err, tc.want)
		}
	}
}
