package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/certctl/certctl/internal/apipoll"
	"github.com/certctl/certctl/pkg/apiretry"
	"github.com/certctl/certctl/pkg/kubeadmconfig"
	"github.com/certctl/certctl/pkg/lease"
	"github.com/certctl/certctl/pkg/live"
	"github.com/certctl/certctl/pkg/noderequest"
	"github.com/certctl/certctl/pkg/pki"
)

// ProgressName is the ConfigMap (in the Lease's namespace) where a cluster renewal records
// which nodes are done, so that a rerun with the same arguments resumes after them.
const ProgressName = "certctl-cluster-renew"

// RenewOptions drive Renew.
type RenewOptions struct {
	Runner       // the Jobs (JobTimeout: one node's Job; default 10m) and the Lease
	RestartFlags // passed on to each node's restart
	// What each node runs: certctl renew NAMES --san ... --days ... --if-expiring-within ...
	Names            []string
	SANs             []string
	Days             int
	IfExpiringWithin time.Duration // 0: renew unconditionally
	IfExpiringArg    string        // the flag's text, passed on to the nodes
	// SkipKubeadmConfig: do not record SANs in kube-system/kubeadm-config. Otherwise the
	// command records them once, before the first node, and the nodes' Jobs do not.
	SkipKubeadmConfig bool
	// Nodes limits the run (default: every control-plane node, by name).
	Nodes  []string
	DryRun bool
	// Checks: VerifyTimeout, the node's apiserver ready with its new certificate; Port.
	Checks
	Roots *x509.CertPool
	// Lease, when set, is a Lease the caller already holds (cluster endpoint renews under its
	// own); Renew then neither takes nor releases one.
	Lease *lease.Lease
}

// NodeOutcome is what happened on one node.
type NodeOutcome struct {
	Node    string `json:"node"`
	IP      string `json:"ip"`
	State   string `json:"state"` // done, resumed (done by an earlier run), failed, interrupted (the API lost), untouched, planned
	Took    string `json:"took,omitempty"`
	Served  string `json:"served,omitempty"` // the apiserver certificate served after, serial
	Problem string `json:"problem,omitempty"`
	Output  string `json:"output,omitempty"` // the node's certctl output (dry run, failure)
}

// RenewReport is the whole rollout.
type RenewReport struct {
	// KubeadmConfig: what --san did (or, in a dry run, would do) to kube-system/kubeadm-config.
	KubeadmConfig *KubeadmConfigChange `json:"kubeadmConfig,omitempty"`
	Nodes         []NodeOutcome        `json:"nodes"`
}

func (o *RenewOptions) defaults() {
	o.Runner.defaults(10 * time.Minute)
	o.Checks.defaults()
}

// nodeRequest is what every node's Job runs. It holds no Lease (the command holds it for the
// whole rollout) and leaves kube-system/kubeadm-config alone (the command records --san there
// once, before the first node).
func (o *RenewOptions) nodeRequest() noderequest.Request {
	r := noderequest.Request{Op: noderequest.Renew, Names: o.Names, SANs: o.SANs, Days: o.Days, IfExpiringWithin: o.IfExpiringArg,
		SkipKubeadmConfig: len(o.SANs) > 0, DryRun: o.DryRun}
	if !o.DryRun {
		r.Restart = o.RestartFlags.request()
	}
	return r
}

// nodeArgs is nodeRequest's command line: what the progress record is kept under (a rerun of
// the same command resumes it), and what the logs show.
func (o *RenewOptions) nodeArgs() []string {
	args, _ := o.nodeRequest().Args() // renew of o.Names: valid whenever Renew runs
	return args
}

// localArgs is what a node would run by hand: renew NAMES and their --san, --days,
// --if-expiring-within.
func (o *RenewOptions) localArgs() []string {
	args, _ := noderequest.Request{Op: noderequest.Renew, Names: o.Names, SANs: o.SANs, Days: o.Days, IfExpiringWithin: o.IfExpiringArg}.Args()
	return args
}

// UnreachableError says the API cannot be reached at all (every apiserver certificate
// expired: case C), with what to run on the nodes instead.
type UnreachableError struct {
	Err      error
	NodeArgs []string
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf(`the API server is unreachable: %v
Renew on the nodes themselves, one control-plane node at a time (the API comes back with the first):
  1. on the first control-plane node:  certctl %s
  2. check it serves the new certificate: certctl inspect --live
  3. then the next control-plane node, the same two commands, until all are done`, e.Err, strings.Join(e.NodeArgs, " "))
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// Renew renews the control-plane nodes one at a time: a privileged Job pinned to the node runs
// `certctl --root /host renew ... --restart --yes`; then the node's own apiserver must be ready
// and serve a certificate that verifies against the cluster CA, covers every --san and is the
// renewed one before the next node starts. It stops at the first node that fails (that node's
// renewal rolled back by itself, the rest untouched). A Lease keeps other runs out; a
// ConfigMap records the nodes done, so a rerun with the same arguments resumes.
func Renew(ctx context.Context, cs kubernetes.Interface, o RenewOptions) (*RenewReport, error) {
	o.defaults()
	if err := o.needImage(); err != nil {
		return nil, err
	}
	if o.Roots == nil {
		return nil, fmt.Errorf("no cluster CA to verify the apiservers against")
	}
	nodes, err := o.listControlPlanes(ctx, cs)
	if err != nil {
		if unreachable(err) {
			return nil, &UnreachableError{Err: err, NodeArgs: append(o.localArgs(), "--restart", "--yes")}
		}
		return nil, fmt.Errorf("list the control-plane nodes: %w", err)
	}
	targets, err := pickNodes(nodes.Items, o.Nodes)
	if err != nil {
		return nil, err
	}
	recordSANs := len(o.SANs) > 0 && !o.SkipKubeadmConfig
	if err := checkAccess(ctx, cs, o.Namespace, o.DryRun, recordSANs); err != nil {
		return nil, err
	}
	rep := &RenewReport{}
	for _, n := range targets {
		rep.Nodes = append(rep.Nodes, NodeOutcome{Node: n.Name, IP: internalIP(&n), State: "untouched"})
	}
	if o.DryRun {
		if recordSANs {
			if rep.KubeadmConfig, err = UpdateKubeadmConfig(ctx, cs, o.Names, o.SANs, true); err != nil {
				return rep, err
			}
		}
		return rep, o.dryRun(ctx, cs, rep)
	}
	held := o.Lease
	if held == nil {
		var release func()
		if held, release, err = o.Hold(ctx, cs); err != nil {
			return rep, err
		}
		defer release()
		o.logf("holding lease %s", held.Held())
	}
	if recordSANs {
		// Once, before any node: kubeadm makes certificates from it (the next join), so the
		// SAN must be there whatever happens to the rollout.
		if rep.KubeadmConfig, err = UpdateKubeadmConfig(ctx, cs, o.Names, o.SANs, false); err != nil {
			return rep, err
		}
		if rep.KubeadmConfig != nil {
			o.logf("%s", rep.KubeadmConfig)
		}
	}
	if err := o.renewNodes(ctx, cs, rep, held, nodes.Items); err != nil {
		return rep, err
	}
	if err := deleteRecord(ctx, cs, ProgressName, o.VerifyTimeout); err != nil {
		return rep, fmt.Errorf("every node is done, but the progress record %s/%s could not be removed: %w", lease.Namespace, ProgressName, err)
	}
	return rep, nil
}

// renewNodes renews the report's nodes one at a time under held, each verified before the
// next, skipping those an earlier run of the same command recorded done; all are the cluster's
// control-plane nodes (the peers that must be ready before each).
func (o *RenewOptions) renewNodes(ctx context.Context, cs kubernetes.Interface, rep *RenewReport, held *lease.Lease, all []corev1.Node) error {
	key := strings.Join(o.nodeArgs(), " ")
	done, err := readProgress(ctx, cs, key)
	if err != nil {
		return err
	}
	for i := range rep.Nodes {
		out := &rep.Nodes[i]
		if at, ok := done[out.Node]; ok {
			out.State = "resumed"
			o.logf("%s: done by an earlier run at %s: skipped", out.Node, at)
			continue
		}
		if err := held.Confirm(ctx); err != nil {
			return fmt.Errorf("stopped before %s: %w", out.Node, err)
		}
		if err := o.peersReady(ctx, all, out.Node); err != nil {
			return fmt.Errorf("stopped before %s (untouched): %w; run the same command again once they are", out.Node, err)
		}
		if err := o.renewNode(ctx, cs, out); err != nil {
			if g, ok := apiGaveUp(err); ok {
				out.State, out.Problem = StateInterrupted, err.Error()
				return &APILostError{Nodes: []string{out.Node}, Err: g}
			}
			out.State, out.Problem = "failed", err.Error()
			var rest []string
			for _, r := range rep.Nodes[i+1:] {
				rest = append(rest, r.Node)
			}
			untouched := ""
			if len(rest) > 0 {
				untouched = fmt.Sprintf("; nodes %s untouched", strings.Join(rest, ", "))
			}
			return fmt.Errorf("node %s failed: %w%s; run the same command again to resume from %s", out.Node, err, untouched, out.Node)
		}
		done[out.Node] = time.Now().UTC().Format(time.RFC3339)
		if err := writeProgress(ctx, cs, key, done); err != nil {
			return err
		}
	}
	return nil
}

func (o *RenewOptions) renewNode(ctx context.Context, cs kubernetes.Interface, out *NodeOutcome) error {
	start := time.Now()
	addr := net.JoinHostPort(out.IP, strconv.Itoa(o.Port))
	before, _ := servedLeaf(ctx, addr)
	res, err := o.Run(ctx, cs, JobSpec{Node: out.Node, Component: "renew", Request: o.nodeRequest(), Privileged: true}, 0)
	if err != nil {
		if res.Logs != "" {
			out.Output = tail(res.Logs, 4000)
			return fmt.Errorf("%w (the node's renewal rolls itself back)", err)
		}
		return err
	}
	if res.Adopted {
		// The Job of an earlier run: what the node served before it ran is not known (it
		// may have ended already), so the check is that the served certificate verifies.
		before = nil
	}
	o.logf("%s: job %s done in %s; checking https://%s/readyz and the certificate it serves", out.Node, res.Job, res.Took.Round(100*time.Millisecond), addr)
	served, err := o.verify(ctx, addr, before)
	if err != nil {
		out.Output = tail(res.Logs, 4000)
		return err
	}
	out.State, out.Served = "done", served
	out.Output = strings.TrimSpace(res.Logs)
	for _, l := range lastLines(res.Logs, 12) {
		o.logf("%s:   | %s", out.Node, l)
	}
	out.Took = time.Since(start).Round(100 * time.Millisecond).String()
	o.logf("%s: done in %s: serves %s", out.Node, out.Took, served)
	return nil
}

// verify polls the node's apiserver until it is ready and serves what the renewal aimed at.
func (o *RenewOptions) verify(ctx context.Context, addr string, before *x509.Certificate) (string, error) {
	renewsAPIServer := len(o.Names) == 0 || slices.Contains(o.Names, "all") || slices.Contains(o.Names, "apiserver")
	var last string
	var served string
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, o.VerifyTimeout, true, func(ctx context.Context) (bool, error) {
		c, err := servedLeaf(ctx, addr)
		if err != nil {
			last = err.Error()
			return false, nil
		}
		host, _, _ := net.SplitHostPort(addr)
		if _, err := c.Verify(x509.VerifyOptions{Roots: o.Roots, DNSName: host}); err != nil {
			last = "served certificate does not verify: " + err.Error()
			return false, nil
		}
		for _, s := range o.SANs {
			if c.VerifyHostname(s) != nil {
				last = "served certificate does not cover " + s
				return false, nil
			}
		}
		if renewsAPIServer && before != nil && c.SerialNumber.Cmp(before.SerialNumber) == 0 {
			if o.IfExpiringWithin == 0 || time.Until(c.NotAfter) <= o.IfExpiringWithin {
				last = "still serves the old certificate (serial " + before.SerialNumber.Text(16) + ")"
				return false, nil
			}
		}
		if err := readyz(ctx, addr, o.Roots); err != nil {
			last = err.Error()
			return false, nil
		}
		served = fmt.Sprintf("serial %s, expires %s", c.SerialNumber.Text(16), c.NotAfter.UTC().Format(time.RFC3339))
		return true, nil
	})
	if err != nil {
		return "", fmt.Errorf("apiserver %s not ready with its renewed certificate within %s: %s", addr, o.VerifyTimeout, last)
	}
	return served, nil
}

func (o *RenewOptions) dryRun(ctx context.Context, cs kubernetes.Interface, rep *RenewReport) error {
	return o.planNodes(ctx, cs, rep.Nodes, o.nodeRequest(), "certctl renew --dry-run")
}

// planNodes runs req, a dry run, on each of nodes in turn, each node's plan (its log) in its
// Output; what names the node command in a failure.
func (r *Runner) planNodes(ctx context.Context, cs kubernetes.Interface, nodes []NodeOutcome, req noderequest.Request, what string) error {
	for i := range nodes {
		out := &nodes[i]
		res, err := r.Job(ctx, cs, JobSpec{Node: out.Node, Component: "plan", Request: req})
		if err != nil {
			out.State, out.Problem = "failed", err.Error()
			return fmt.Errorf("plan on node %s: %w", out.Node, err)
		}
		out.State, out.Output = "planned", strings.TrimSpace(res.Logs)
		if res.ExitCode != 0 {
			out.State, out.Problem = "failed", fmt.Sprintf("%s exited %d", what, res.ExitCode)
			return fmt.Errorf("plan on node %s: %s: %s", out.Node, out.Problem, tail(res.Logs, 600))
		}
	}
	return nil
}

func pickNodes(cps []corev1.Node, only []string) ([]corev1.Node, error) {
	slices.SortFunc(cps, func(a, b corev1.Node) int { return strings.Compare(a.Name, b.Name) })
	if len(only) == 0 {
		if len(cps) == 0 {
			return nil, fmt.Errorf("no node has the label %s", pki.ControlPlaneLabel)
		}
		return cps, nil
	}
	var out []corev1.Node
	for _, name := range only {
		i := slices.IndexFunc(cps, func(n corev1.Node) bool { return n.Name == name })
		if i < 0 {
			return nil, fmt.Errorf("%q is not a control-plane node of this cluster (nodes labelled %s: %s)", name, pki.ControlPlaneLabel, nodeNames(cps))
		}
		out = append(out, cps[i])
	}
	return out, nil
}

func nodeNames(ns []corev1.Node) string {
	var out []string
	for _, n := range ns {
		out = append(out, n.Name)
	}
	return strings.Join(out, ", ")
}

func internalIP(n *corev1.Node) string {
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			return a.Address
		}
	}
	return ""
}

// checkAccess asks the API whether this user may do what the run needs, so that a missing
// permission is said before anything is created.
func checkAccess(ctx context.Context, cs kubernetes.Interface, ns string, dryRun, kubeadmConfig bool) error {
	type need struct{ group, resource, sub, verb, ns, name string }
	needs := []need{
		{"batch", "jobs", "", "create", ns, ""}, {"batch", "jobs", "", "delete", ns, ""}, {"batch", "jobs", "", "list", ns, ""},
		{"", "pods", "", "list", ns, ""}, {"", "pods", "", "watch", ns, ""}, {"", "pods", "log", "get", ns, ""},
	}
	if !dryRun {
		needs = append(needs,
			need{"coordination.k8s.io", "leases", "", "create", lease.Namespace, ""},
			need{"coordination.k8s.io", "leases", "", "update", lease.Namespace, lease.Name},
			need{"", "configmaps", "", "create", lease.Namespace, ""},
			need{"", "configmaps", "", "update", lease.Namespace, ProgressName})
	}
	if kubeadmConfig {
		needs = append(needs, need{"", "configmaps", "", "get", kubeadmconfig.Namespace, kubeadmconfig.Name})
		if !dryRun {
			needs = append(needs, need{"", "configmaps", "", "update", kubeadmconfig.Namespace, kubeadmconfig.Name})
		}
	}
	var missing []string
	for _, n := range needs {
		ok, err := allowed(ctx, cs, n.ns, n.verb, n.group, n.resource, n.sub, n.name)
		if err != nil {
			return err
		}
		if !ok {
			res := n.resource
			if n.sub != "" {
				res += "/" + n.sub
			}
			if n.name != "" {
				res += " " + n.name
			}
			missing = append(missing, fmt.Sprintf("%s %s in %s", n.verb, res, n.ns))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("not allowed to %s: see docs/cluster.md for the RBAC this command needs", strings.Join(missing, "; "))
	}
	return nil
}

// allowed asks the API (SelfSubjectAccessReview) whether this user may do verb on resource.
func allowed(ctx context.Context, cs kubernetes.Interface, ns, verb, group, resource, sub, name string) (bool, error) {
	r, err := cs.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
		Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace: ns, Verb: verb, Group: group, Resource: resource, Subresource: sub, Name: name,
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		return false, fmt.Errorf("check permissions: %w", err)
	}
	return r.Status.Allowed, nil
}

func readProgress(ctx context.Context, cs kubernetes.Interface, key string) (map[string]string, error) {
	cm, err := cs.CoreV1().ConfigMaps(lease.Namespace).Get(ctx, ProgressName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the progress record %s/%s: %w", lease.Namespace, ProgressName, err)
	}
	done := map[string]string{}
	if cm.Data["args"] != key {
		return done, nil // another command's record: start over
	}
	for k, v := range cm.Data {
		if node, ok := strings.CutPrefix(k, "done."); ok {
			done[node] = v
		}
	}
	return done, nil
}

func writeProgress(ctx context.Context, cs kubernetes.Interface, key string, done map[string]string) error {
	data := map[string]string{"args": key}
	for n, at := range done {
		data["done."+n] = at
	}
	return writeRecord(ctx, cs, ProgressName, data)
}

// writeRecord creates or replaces the data of a ConfigMap of certctl's in the Lease's namespace.
func writeRecord(ctx context.Context, cs kubernetes.Interface, name string, data map[string]string) error {
	cms := cs.CoreV1().ConfigMaps(lease.Namespace)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cm, err := cms.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			_, err = cms.Create(ctx, &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: lease.Namespace, Labels: map[string]string{LabelName: "certctl"}},
				Data:       data,
			}, metav1.CreateOptions{})
			return err
		}
		if err != nil {
			return err
		}
		cm.Data = data
		_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("write %s/%s: %w", lease.Namespace, name, err)
	}
	return nil
}

// PeersNotReadyError: before a control-plane node's apiserver is restarted, the apiserver of
// another control-plane node is not ready. Restarting now would leave the load balancer with
// fewer apiservers than the operator counts on (none, on a cluster of two).
type PeersNotReadyError struct {
	Node     string            // the node about to be worked on
	NotReady map[string]string // node: its /readyz's last answer
	Waited   time.Duration
}

func (e *PeersNotReadyError) Error() string {
	var parts []string
	for _, n := range slices.Sorted(maps.Keys(e.NotReady)) {
		parts = append(parts, fmt.Sprintf("%s (%s)", n, e.NotReady[n]))
	}
	return fmt.Sprintf("the apiserver of %s is not ready after %s: restarting %s's now would leave fewer apiservers serving", strings.Join(parts, ", "), e.Waited.Round(time.Second), e.Node)
}

// peersReady waits, up to o.VerifyTimeout, until the apiserver of every control-plane node but
// node answers /readyz at its own address with a certificate of the cluster CA: a node is
// taken down only while all the others serve (one left recovering by an earlier step or
// test, an etcd member just back, is waited for).
func (o *RenewOptions) peersReady(ctx context.Context, cps []corev1.Node, node string) error {
	addrs := map[string]string{}
	for i := range cps {
		if cps[i].Name != node && internalIP(&cps[i]) != "" {
			addrs[cps[i].Name] = net.JoinHostPort(internalIP(&cps[i]), strconv.Itoa(o.Port))
		}
	}
	start := time.Now()
	notReady := map[string]string{}
	logged := false
	err := wait.PollUntilContextTimeout(ctx, time.Second, o.VerifyTimeout, true, func(ctx context.Context) (bool, error) {
		round := map[string]string{}
		for name, addr := range addrs {
			if err := readyz(ctx, addr, o.Roots); err != nil {
				round[name] = err.Error()
			}
		}
		if ctx.Err() != nil {
			return false, nil // cut by the deadline: the last whole round says who was not ready
		}
		notReady = round
		if len(notReady) > 0 && !logged {
			o.logf("%s: waiting up to %s for the apiservers of %s to be ready before this node's restart", node, o.VerifyTimeout, strings.Join(slices.Sorted(maps.Keys(notReady)), ", "))
			logged = true
		}
		return len(notReady) == 0, nil
	})
	if err == nil {
		return nil
	}
	if len(notReady) == 0 {
		return err // the context ended before any answer
	}
	return &PeersNotReadyError{Node: node, NotReady: maps.Clone(notReady), Waited: time.Since(start)}
}

// listControlPlanes lists the control-plane nodes. An API that refuses connections (an
// apiserver restarting: the Job of an earlier, killed run restarting the node the kubeconfig
// names) is waited for by the client itself (pkg/apiretry, --api-wait); what is left is an
// error for unreachable to judge.
func (o *RenewOptions) listControlPlanes(ctx context.Context, cs kubernetes.Interface) (*corev1.NodeList, error) {
	return cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: pki.ControlPlaneLabel})
}

// transientAPI says whether err is the API refusing or dropping a connection, or not answering
// in time (an apiserver stopped for a restart), rather than an answer or a certificate.
func transientAPI(err error) bool {
	var netErr net.Error
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) ||
		errors.As(err, &netErr) && netErr.Timeout()
}

// unreachable tells a dead or untrusted API (connection refused, timeout, TLS failure) from an
// API that answered with an error, by the error's type.
func unreachable(err error) bool {
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		return false
	}
	var (
		netErr    net.Error
		certErr   *tls.CertificateVerificationError
		invalid   x509.CertificateInvalidError
		unknownCA x509.UnknownAuthorityError
		hostname  x509.HostnameError
	)
	return transientAPI(err) || errors.As(err, &netErr) || errors.As(err, &certErr) || errors.As(err, &invalid) ||
		errors.As(err, &unknownCA) || errors.As(err, &hostname)
}

// servedLeaf is the certificate addr serves (read; the caller verifies it).
func servedLeaf(ctx context.Context, addr string) (*x509.Certificate, error) {
	chain, err := live.Served(ctx, addr, "", nil, 3*time.Second)
	if err != nil {
		return nil, err
	}
	return chain[0], nil
}

func readyz(ctx context.Context, addr string, roots *x509.CertPool) error {
	host, _, _ := net.SplitHostPort(addr)
	c := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: host}}}
	if err := apipoll.Get(ctx, c, "https://"+addr+"/readyz"); err != nil {
		return fmt.Errorf("%s/readyz: %w", addr, err)
	}
	return nil
}

// lastLines are the last n non-empty lines of s.
func lastLines(s string, n int) []string {
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return out
}

// deleteRecord removes the ConfigMap name of lease.Namespace (a record gone already is fine).
// An apiserver restarting under the command can cut the DELETE's answer (unexpected EOF),
// which the client's retry (pkg/apiretry) does not send again, as a write may have been
// applied; deleting a record is idempotent, so a connection that broke is tried again, as a
// read would be, for up to timeout. An answer of the API (Forbidden, ...) ends it at once.
func deleteRecord(ctx context.Context, cs kubernetes.Interface, name string, timeout time.Duration) error {
	var last error
	err := wait.PollUntilContextTimeout(ctx, time.Second, timeout, true, func(ctx context.Context) (bool, error) {
		last = cs.CoreV1().ConfigMaps(lease.Namespace).Delete(ctx, name, metav1.DeleteOptions{})
		switch {
		case last == nil || apierrors.IsNotFound(last):
			return true, nil
		case apiretry.Retryable(http.MethodGet, last):
			return false, nil
		}
		return false, last
	})
	if err != nil && last != nil {
		return last
	}
	return err
}
