// Package restart rolls renewed certificates out to the running control plane: it decides,
// per renewed file, whether a component reloads it by itself or must restart, restarts static
// pods by moving their manifests out of the kubelet's sight and back, and verifies over TLS
// that each component is healthy and serves the file on disk. A manifest is never lost: the
// move is journaled and any certctl run puts a staged manifest back.
package restart

import (
	"sort"

	"github.com/certctl/certctl/pkg/pki"
)

// Actions of a step.
const (
	ActionRestart = "restart" // the manifest-move restart
	ActionVerify  = "verify"  // the component reloads the file: check what it serves, restart if it does not
)

// Order is the safe order: etcd first (the apiserver needs it), then the apiserver (the API is
// down only while it restarts), then its clients.
var Order = []string{pki.CompEtcd, pki.CompAPIServer, pki.CompControllerManager, pki.CompScheduler}

// Step is what to do with one component and why.
type Step struct {
	Component string
	Action    string
	Reasons   []string // the renewed items behind it
}

// reloads says which renewed items a component picks up from disk by itself, with the
// evidence; everything else a component reads needs a restart.
//
//   - apiserver.crt: kube-apiserver serves --tls-cert-file through a dynamic certificate
//     controller that watches the files; observed here on v1.32.4 (shared/LAB.md, and
//     pkg/live's TestLiveAgainstRealAPIServer: the new certificate is served without a restart).
//   - apiserver-kubelet-client: the apiserver's kubelet client transport sets ReloadTLSFiles
//     (pkg/kubelet/client/kubelet_client.go, v1.35-v1.37): client-go reads the pair again, at
//     most once a second, for every new connection, and closes the connections made with the
//     old one when its periodic check (5 min) sees the change (transport/cert_rotation.go). A
//     connection kept alive until then goes on with the session it authenticated: TLS does
//     not look at a certificate again. Observed in this package's
//     TestAPIServerClientCertsReload on a real apiserver: its next new connection to a kubelet
//     presents the renewed certificate (0.2 s after the renewal).
//   - front-proxy-client: the aggregator loads --proxy-client-cert-file through a dynamic
//     certificate controller (kube-aggregator's apiserver.go, NewDynamicServingContentFromFiles)
//     and rebuilds its proxy handlers when the files change. Observed in
//     TestAPIServerClientCertsReload: the next request to an aggregated API presents it.
//   - apiserver-etcd-client: etcd's client TLS config (client/pkg/transport TLSInfo, used by
//     the apiserver's storage backend) loads the pair from the files at every TLS handshake.
//     An established connection keeps the session it authenticated (TLS does not look at the
//     certificate again), and any new one uses the renewed pair.
//   - etcd/server.crt, etcd/peer.crt: etcd 3.5 loads its certificates on every new TLS
//     handshake (LAB.md: :2379 served the new one at once).
//
// So renewing the apiserver's certificates costs no API downtime: a verify step checks that
// it serves the renewed apiserver.crt and restarts it only when it does not. Read once at
// start, so restarted: the client certificates embedded in controller-manager.conf and
// scheduler.conf. A CA rotation restarts what a new trust needs on its own (pkg/noderotate).
var reloads = map[string]string{
	"apiserver":                pki.CompAPIServer,
	"apiserver-kubelet-client": pki.CompAPIServer,
	"front-proxy-client":       pki.CompAPIServer,
	"apiserver-etcd-client":    pki.CompAPIServer,
	"etcd-server":              pki.CompEtcd,
	"etcd-peer":                pki.CompEtcd,
}

// Plan turns renewed item names into ordered steps. Items without a static-pod component
// (admin.conf, super-admin.conf, etcd-healthcheck-client) need nothing; kubelet items are
// returned in kubelet (the kubelet is a service, not a static pod).
func Plan(renewed []string) (steps []Step, kubelet []string) {
	specs := pki.Default()
	byComp := map[string]*Step{}
	for _, name := range renewed {
		s, err := pki.Lookup(specs, name)
		if err != nil {
			continue
		}
		for _, comp := range s.Components {
			if comp == pki.CompKubelet {
				kubelet = append(kubelet, name)
				continue
			}
			if comp == pki.CompUser {
				continue
			}
			st := byComp[comp]
			if st == nil {
				st = &Step{Component: comp, Action: ActionVerify}
				byComp[comp] = st
			}
			st.Reasons = append(st.Reasons, name)
			if reloads[name] != comp {
				st.Action = ActionRestart
			}
		}
	}
	for _, comp := range Order {
		if st := byComp[comp]; st != nil {
			sort.Strings(st.Reasons)
			steps = append(steps, *st)
		}
	}
	return steps, kubelet
}
