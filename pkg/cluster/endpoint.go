package cluster

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/client-go/util/retry"

	"github.com/certctl/certctl/pkg/kubeadmconfig"
	"github.com/certctl/certctl/pkg/kubeconfig"
	"github.com/certctl/certctl/pkg/lease"
	"github.com/certctl/certctl/pkg/live"
	"github.com/certctl/certctl/pkg/noderequest"
	"github.com/certctl/certctl/pkg/noderesult"
)

// EndpointOptions drive Endpoint.
type EndpointOptions struct {
	Endpoint     string // HOST:PORT (or https://HOST:PORT) of the load balancer
	Runner              // the Jobs (JobTimeout: one node's Job; default 10m) and the Lease
	RestartFlags        // as for Renew (the SAN is added by a renewal)
	Roots        *x509.CertPool
	// MaxParallel: the workers moved at once, each wave verified (every kubelet reporting
	// through the new endpoint) before the next; the control-plane nodes go one at a time.
	MaxParallel MaxParallel
	DryRun      bool
	// Checks: VerifyTimeout as for Renew; ReadyTimeout bounds the wait for a node's kubelet to
	// report through the new endpoint after its restart.
	Checks
}

func (o *EndpointOptions) defaults() {
	o.Runner.defaults(10 * time.Minute)
	o.Checks.defaults()
}

// sanRenewal is the renewal that adds host to the apiserver certificate of nodes.
func (o *EndpointOptions) sanRenewal(host string, nodes []string) RenewOptions {
	return RenewOptions{Runner: o.Runner, RestartFlags: o.RestartFlags, Names: []string{"apiserver"}, SANs: []string{host}, Nodes: nodes,
		Roots: o.Roots, Checks: o.Checks}
}

// EndpointReport is what Endpoint did (or, dry run, would do).
type EndpointReport struct {
	From          string        `json:"from"`
	To            string        `json:"to"`
	SANNodes      []string      `json:"sanNodes,omitempty"` // control-plane nodes whose certificate lacked the SAN
	SAN           *RenewReport  `json:"san,omitempty"`
	KubeadmConfig string        `json:"kubeadmConfig"`
	ClusterInfo   string        `json:"clusterInfo"`
	KubeProxy     string        `json:"kubeProxy,omitempty"`
	Nodes         []NodeOutcome `json:"nodes"`
	// Local says what changed in the kubeconfigs of the machine the command ran on.
	Local []string `json:"local,omitempty"`
}

// EndpointRecordName is the ConfigMap (in the Lease's namespace) where a move records the
// endpoint it moves from, so that a rerun after a failure still finds the nodes left on it.
const EndpointRecordName = "certctl-cluster-endpoint"

// ClusterInfoNamespace/Name: the ConfigMap `kubeadm join` discovers the cluster from.
const (
	ClusterInfoNamespace = "kube-public"
	ClusterInfoName      = "cluster-info"
)

// Endpoint moves the whole cluster onto a new API endpoint (case B: a load balancer added
// after the cluster was made on its first node). It refuses unless every control-plane
// node's apiserver is ready and the endpoint already serves the cluster (a certificate
// chaining to the cluster CA). Then, under the Lease: the SAN on every control-plane node that
// lacks it (a renewal, one node at a time, as Renew), controlPlaneEndpoint in kubeadm-config,
// the server of kube-public/cluster-info (and of kube-proxy's kubeconfig when there is one),
// and on every node (control plane first, one at a time; then the workers in waves of
// MaxParallel), the server of admin.conf, super-admin.conf and kubelet.conf by a Job running
// `certctl kubeconfig set-server`, which restarts the kubelet; the next node (wave) starts only
// when this one's kubelets report again.
// A rerun after a failure does again only what is not done yet.
func Endpoint(ctx context.Context, cs kubernetes.Interface, o EndpointOptions) (*EndpointReport, error) {
	o.defaults()
	to, err := kubeconfig.NormalizeServer(o.Endpoint)
	if err != nil {
		return nil, err
	}
	if err := o.needImage(); err != nil {
		return nil, err
	}
	if o.Roots == nil {
		return nil, fmt.Errorf("no cluster CA to verify the endpoint against")
	}
	cps, workers, err := splitNodes(ctx, cs)
	if err != nil {
		if unreachable(err) {
			return nil, fmt.Errorf("the API server is unreachable (%w): move the endpoint when the cluster answers (certctl cluster renew first if its certificates expired)", err)
		}
		return nil, err
	}
	if err := checkAccess(ctx, cs, o.Namespace, o.DryRun, true); err != nil {
		return nil, err
	}
	if err := checkEndpointAccess(ctx, cs); err != nil {
		return nil, err
	}
	sanNodes, err := o.precheck(ctx, cps, to)
	if err != nil {
		return nil, err
	}
	from, err := currentEndpoint(ctx, cs, to)
	if err != nil {
		return nil, err
	}
	rep := &EndpointReport{From: from, To: to, SANNodes: sanNodes}
	for _, n := range append(slices.Clone(cps), workers...) {
		rep.Nodes = append(rep.Nodes, NodeOutcome{Node: n.Name, IP: internalIP(&n), State: "untouched"})
	}
	req := noderequest.Request{Op: noderequest.SetServer, Server: to, From: from}
	if o.DryRun {
		return rep, o.dryRun(ctx, cs, rep, req, hostOf(to))
	}

	held, release, err := o.Hold(ctx, cs)
	if err != nil {
		return rep, err
	}
	defer release()
	o.logf("holding lease %s; moving the cluster from %s to %s", held.Held(), from, to)
	if err := o.addSAN(ctx, cs, rep, held); err != nil {
		return rep, err
	}
	if err := o.moveClusterCopies(ctx, cs, rep); err != nil {
		return rep, err
	}
	cp := make([]bool, len(rep.Nodes))
	for i := range cps {
		cp[i] = true
	}
	move := func(ctx context.Context, out *NodeOutcome, _ bool) error { return o.moveNode(ctx, cs, out, req) }
	if err := o.inWaves(ctx, rep.Nodes, cp, o.MaxParallel.Of(len(workers)), held.Confirm, move); err != nil {
		var we *WaveError
		if errors.As(err, &we) {
			return rep, fmt.Errorf("%w; the nodes done use %s, the others still %s (both work; the report gives each node's state); run the same command again to go on", we, to, from)
		}
		return rep, err
	}
	if err := deleteRecord(ctx, cs, EndpointRecordName, o.VerifyTimeout); err != nil {
		return rep, fmt.Errorf("every node is done, but the record %s/%s could not be removed: %w", lease.Namespace, EndpointRecordName, err)
	}
	return rep, nil
}

// hostOf is the host of https://HOST:PORT.
func hostOf(server string) string {
	host, _, _ := net.SplitHostPort(strings.TrimPrefix(server, "https://"))
	return host
}

// precheck refuses before anything changes unless every apiserver is ready and the endpoint to
// serves this cluster; it returns the control-plane nodes whose certificate lacks its host.
func (o *EndpointOptions) precheck(ctx context.Context, cps []corev1.Node, to string) ([]string, error) {
	hostPort, host := strings.TrimPrefix(to, "https://"), hostOf(to)
	var sanNodes []string
	for _, n := range cps {
		addr := net.JoinHostPort(internalIP(&n), strconv.Itoa(o.Port))
		if err := readyz(ctx, addr, o.Roots); err != nil {
			return nil, fmt.Errorf("refused: the apiserver of %s (%s) is not ready: %w; every apiserver behind the endpoint must be", n.Name, addr, err)
		}
		c, err := servedLeaf(ctx, addr)
		if err != nil {
			return nil, fmt.Errorf("refused: read what %s serves: %w", addr, err)
		}
		if c.VerifyHostname(host) != nil {
			sanNodes = append(sanNodes, n.Name)
		}
	}
	if err := servesCluster(ctx, hostPort, o.Roots); err != nil {
		return nil, fmt.Errorf("refused: %s does not serve this cluster: %w (put the load balancer in front of the apiservers first: see docs/cluster.md)", hostPort, err)
	}
	return sanNodes, nil
}

// currentEndpoint is the endpoint the cluster uses now: kubeadm-config's controlPlaneEndpoint,
// else cluster-info's server; or, when an earlier run to the same endpoint stopped part-way
// (kubeadm-config changed already), the one it recorded, which the nodes it did not reach
// still use.
func currentEndpoint(ctx context.Context, cs kubernetes.Interface, to string) (string, error) {
	if rec, err := cs.CoreV1().ConfigMaps(lease.Namespace).Get(ctx, EndpointRecordName, metav1.GetOptions{}); err == nil && rec.Data["to"] == to && rec.Data["from"] != "" {
		return rec.Data["from"], nil
	}
	doc, _, err := kubeadmconfig.Read(ctx, cs)
	if err != nil {
		return "", err
	}
	fromEP, err := kubeadmconfig.ControlPlaneEndpoint(doc)
	if err != nil {
		return "", err
	}
	if fromEP == "" {
		return clusterInfoServer(ctx, cs)
	}
	from, err := kubeconfig.NormalizeServer(fromEP)
	if err != nil {
		return "", fmt.Errorf("kubeadm-config's controlPlaneEndpoint: %w", err)
	}
	return from, nil
}

// addSAN adds the endpoint's host to the apiserver certificate of the nodes that lack it (a
// renewal under the Lease held), then waits until the endpoint verifies as clients check it.
func (o *EndpointOptions) addSAN(ctx context.Context, cs kubernetes.Interface, rep *EndpointReport, held *lease.Lease) error {
	hostPort, host := strings.TrimPrefix(rep.To, "https://"), hostOf(rep.To)
	if len(rep.SANNodes) > 0 {
		o.logf("adding %s to the apiserver certificate of %s", host, strings.Join(rep.SANNodes, ", "))
		san := o.sanRenewal(host, rep.SANNodes)
		san.Lease = held
		var err error
		if rep.SAN, err = Renew(ctx, cs, san); err != nil {
			return fmt.Errorf("add the SAN %s: %w", host, err)
		}
	}
	var last error
	if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, o.VerifyTimeout, true, func(ctx context.Context) (bool, error) {
		last = readyz(ctx, hostPort, o.Roots)
		return last == nil, nil
	}); err != nil {
		return fmt.Errorf("%s does not verify as %s for a client after the SAN was added: %w", hostPort, host, last)
	}
	return nil
}

// moveClusterCopies records the move (for a rerun after a failure), then points the cluster's
// own copies of the endpoint at it: kubeadm-config's controlPlaneEndpoint, cluster-info's
// kubeconfig, kube-proxy's when there is one.
func (o *EndpointOptions) moveClusterCopies(ctx context.Context, cs kubernetes.Interface, rep *EndpointReport) error {
	from, to, hostPort := rep.From, rep.To, strings.TrimPrefix(rep.To, "https://")
	if from != to {
		if err := writeRecord(ctx, cs, EndpointRecordName, map[string]string{"from": from, "to": to}); err != nil {
			return err
		}
	}
	old, changed, err := kubeadmconfig.SetEndpoint(ctx, cs, hostPort)
	if err != nil {
		return err
	}
	rep.KubeadmConfig = describe(changed, old, hostPort)
	o.logf("kube-system/kubeadm-config: controlPlaneEndpoint %s", rep.KubeadmConfig)
	if rep.ClusterInfo, err = moveConfigMapKubeconfig(ctx, cs, ClusterInfoNamespace, ClusterInfoName, "kubeconfig", from, to); err != nil {
		return err
	}
	o.logf("%s/%s: %s", ClusterInfoNamespace, ClusterInfoName, rep.ClusterInfo)
	if rep.KubeProxy, err = moveConfigMapKubeconfig(ctx, cs, "kube-system", "kube-proxy", "kubeconfig.conf", from, to); err != nil {
		return err
	}
	if rep.KubeProxy != "" {
		o.logf("kube-system/kube-proxy: %s (kube-proxy reads it when its pods start: kubectl -n kube-system rollout restart daemonset kube-proxy)", rep.KubeProxy)
	}
	return nil
}

func (o *EndpointOptions) moveNode(ctx context.Context, cs kubernetes.Interface, out *NodeOutcome, req noderequest.Request) error {
	req.Result = true
	start := time.Now()
	res, err := o.Run(ctx, cs, JobSpec{Node: out.Node, Component: "endpoint", Request: req, Privileged: true}, 8)
	out.Output = strings.TrimSpace(res.Logs)
	if err != nil {
		return err
	}
	nr, err := noderesult.Parse(res.Termination)
	if err != nil {
		return fmt.Errorf("certctl kubeconfig set-server on %s: %w", out.Node, err)
	}
	if nr.KubeletRestarted {
		done := time.Now()
		o.logf("%s: waiting for its kubelet to report through the new endpoint (node Lease renewed, Ready)", out.Node)
		if err := waitKubeletReports(ctx, cs, out.Node, res.sinceRestart(done), o.ReadyTimeout); err != nil {
			return err
		}
	}
	out.State, out.Took = "done", time.Since(start).Round(100*time.Millisecond).String()
	o.logf("%s: done in %s", out.Node, out.Took)
	return nil
}

func (o *EndpointOptions) dryRun(ctx context.Context, cs kubernetes.Interface, rep *EndpointReport, req noderequest.Request, host string) error {
	req.DryRun = true
	if len(rep.SANNodes) > 0 {
		san := o.sanRenewal(host, rep.SANNodes)
		san.DryRun = true
		var err error
		if rep.SAN, err = Renew(ctx, cs, san); err != nil {
			return fmt.Errorf("plan the SAN %s: %w", host, err)
		}
	}
	rep.KubeadmConfig = "would set controlPlaneEndpoint " + strings.TrimPrefix(rep.To, "https://")
	rep.ClusterInfo = "would point its kubeconfig at " + rep.To
	return o.planNodes(ctx, cs, rep.Nodes, req, "certctl kubeconfig set-server --dry-run")
}

// servesCluster checks that addr answers TLS with a chain to the cluster CA (whatever names
// it covers: the SAN may be added by this run) and is ready.
func servesCluster(ctx context.Context, addr string, roots *x509.CertPool) error {
	chain, err := live.Served(ctx, addr, "", nil, 3*time.Second)
	if err != nil {
		return err
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter}); err != nil {
		return fmt.Errorf("its certificate (%s) is not signed by the cluster CA: %w", chain[0].Subject.CommonName, err)
	}
	return nil
}

// moveConfigMapKubeconfig points the kubeconfig kept in a ConfigMap key at to; "" when the
// ConfigMap does not exist (an optional one: kube-proxy).
func moveConfigMapKubeconfig(ctx context.Context, cs kubernetes.Interface, ns, name, key, from, to string) (string, error) {
	return editConfigMapKubeconfig(ctx, cs, ns, name, key, name != ClusterInfoName, func(cfg *clientcmdapi.Config) (string, bool) {
		if len(kubeconfig.MoveServer(cfg, from, to)) == 0 {
			return "unchanged (" + strings.Join(kubeconfig.Servers(cfg), ", ") + ")", false
		}
		return "server " + from + " -> " + to, true
	})
}

// editConfigMapKubeconfig applies edit to the kubeconfig kept in a ConfigMap key and, when
// edit changed it, updates the ConfigMap with the resourceVersion read (a conflict starts
// again from a fresh read). It returns what edit said; "" when an optional ConfigMap does not
// exist.
func editConfigMapKubeconfig(ctx context.Context, cs kubernetes.Interface, ns, name, key string, optional bool, edit func(*clientcmdapi.Config) (what string, changed bool)) (string, error) {
	var what string
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cm, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) && optional {
			what = ""
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %s/%s: %w", ns, name, err)
		}
		cfg, err := clientcmd.Load([]byte(cm.Data[key]))
		if err != nil {
			return fmt.Errorf("%s/%s: key %s is not a kubeconfig: %w", ns, name, key, err)
		}
		var changed bool
		if what, changed = edit(cfg); !changed {
			return nil
		}
		data, err := kubeconfig.Marshal(cfg)
		if err != nil {
			return err
		}
		cm = cm.DeepCopy()
		cm.Data[key] = string(data)
		if _, err := cs.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{FieldManager: "certctl"}); err != nil {
			if apierrors.IsConflict(err) {
				return err
			}
			return fmt.Errorf("update %s/%s: %w", ns, name, err)
		}
		return nil
	})
	return what, err
}

// clusterInfo is the kubeconfig kube-public/cluster-info keeps.
func clusterInfo(ctx context.Context, cs kubernetes.Interface) (*clientcmdapi.Config, error) {
	cm, err := cs.CoreV1().ConfigMaps(ClusterInfoNamespace).Get(ctx, ClusterInfoName, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("read %s/%s: %w", ClusterInfoNamespace, ClusterInfoName, err)
	}
	cfg, err := clientcmd.Load([]byte(cm.Data["kubeconfig"]))
	if err != nil {
		return nil, fmt.Errorf("%s/%s: not a kubeconfig: %w", ClusterInfoNamespace, ClusterInfoName, err)
	}
	return cfg, nil
}

// clusterInfoServer is the server kube-public/cluster-info names (a cluster without
// controlPlaneEndpoint: the first node's address).
func clusterInfoServer(ctx context.Context, cs kubernetes.Interface) (string, error) {
	cfg, err := clusterInfo(ctx, cs)
	if err != nil {
		return "", err
	}
	s := kubeconfig.Servers(cfg)
	if len(s) != 1 {
		return "", fmt.Errorf("%s/%s names %d servers, not one", ClusterInfoNamespace, ClusterInfoName, len(s))
	}
	return kubeconfig.NormalizeServer(s[0])
}

// checkEndpointAccess: what the move writes besides the Jobs.
func checkEndpointAccess(ctx context.Context, cs kubernetes.Interface) error {
	var missing []string
	for _, n := range []struct{ ns, verb string }{
		{"kube-system", "update"}, {ClusterInfoNamespace, "update"}, {ClusterInfoNamespace, "get"},
	} {
		ok, err := allowed(ctx, cs, n.ns, n.verb, "", "configmaps", "", "")
		if err != nil {
			return err
		}
		if !ok {
			missing = append(missing, n.verb+" configmaps in "+n.ns)
		}
	}
	if ok, err := allowed(ctx, cs, "kube-node-lease", "get", "coordination.k8s.io", "leases", "", ""); err != nil {
		return err
	} else if !ok {
		missing = append(missing, "get leases in kube-node-lease")
	}
	if len(missing) > 0 {
		return errors.New("not allowed to " + strings.Join(missing, "; ") + ": see docs/cluster.md for the RBAC this command needs")
	}
	return nil
}

func describe(changed bool, old, now string) string {
	if !changed {
		return "unchanged (" + now + ")"
	}
	if old == "" {
		return "set to " + now
	}
	return old + " -> " + now
}

// splitNodes lists the cluster's nodes: the control-plane nodes (at least one) and the
// workers, each by name.
func splitNodes(ctx context.Context, cs kubernetes.Interface) (cps, workers []corev1.Node, err error) {
	all, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, nil, fmt.Errorf("list the nodes: %w", err)
	}
	for _, n := range all.Items {
		if isControlPlane(&n) {
			cps = append(cps, n)
		} else {
			workers = append(workers, n)
		}
	}
	if cps, err = pickNodes(cps, nil); err != nil {
		return nil, nil, err
	}
	slices.SortFunc(workers, func(a, b corev1.Node) int { return strings.Compare(a.Name, b.Name) })
	return cps, workers, nil
}
