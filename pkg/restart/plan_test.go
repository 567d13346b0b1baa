package restart_test

import (
	"fmt"
	"testing"

	"github.com/certctl/certctl/pkg/restart"
)

func TestPlan(t *testing.T) {
	tests := []struct {
		renewed []string
		want    string
		kubelet string
	}{
		{[]string{"apiserver"}, "[apiserver:verify(apiserver)]", "[]"},
		{[]string{"etcd-server", "etcd-peer"}, "[etcd:verify(etcd-peer,etcd-server)]", "[]"},
		{[]string{"apiserver", "apiserver-etcd-client"}, "[apiserver:verify(apiserver,apiserver-etcd-client)]", "[]"},
		{[]string{"scheduler.conf", "etcd-server", "controller-manager.conf", "front-proxy-client"},
			"[etcd:verify(etcd-server) apiserver:verify(front-proxy-client) controller-manager:restart(controller-manager.conf) scheduler:restart(scheduler.conf)]", "[]"},
		{[]string{"admin.conf", "super-admin.conf", "etcd-healthcheck-client"}, "[]", "[]"},
		{[]string{"kubelet.conf", "apiserver-kubelet-client"}, "[apiserver:verify(apiserver-kubelet-client)]", "[kubelet.conf]"},
		{[]string{"no-such-item"}, "[]", "[]"},
		// renew all on a kubeadm control-plane node: the API stays up, only the components
		// that read their kubeconfig once restart.
		{[]string{"admin.conf", "apiserver", "apiserver-etcd-client", "apiserver-kubelet-client", "controller-manager.conf", "etcd-healthcheck-client",
			"etcd-peer", "etcd-server", "front-proxy-client", "scheduler.conf", "super-admin.conf"},
			"[etcd:verify(etcd-peer,etcd-server) apiserver:verify(apiserver,apiserver-etcd-client,apiserver-kubelet-client,front-proxy-client) controller-manager:restart(controller-manager.conf) scheduler:restart(scheduler.conf)]", "[]"},
	}
	for _, tc := range tests {
		steps, kubelet := restart.Plan(tc.renewed)
		var got []string
		for _, s := range steps {
			got = append(got, fmt.Sprintf("%s:%s(%s)", s.Component, s.Action, join(s.Reasons)))
		}
		if fmt.Sprint(orEmpty(got)) != tc.want || fmt.Sprint(orEmpty(kubelet)) != tc.kubelet {
			t.Errorf("Plan(%v) = %v %v, want %s %s", tc.renewed, got, kubelet, tc.want, tc.kubelet)
		}
	}
}

func join(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += ","
		}
		out += x
	}
	return out
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
