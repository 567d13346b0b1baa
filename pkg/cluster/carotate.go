package cluster

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/client-go/util/keyutil"

	"github.com/certctl/certctl/pkg/carotate"
	"github.com/certctl/certctl/pkg/csrwait"
	kubeconfigpkg "github.com/certctl/certctl/pkg/kubeconfig"
	"github.com/certctl/certctl/pkg/kubelet"
	"github.com/certctl/certctl/pkg/kubeletserving"
	"github.com/certctl/certctl/pkg/lease"
	"github.com/certctl/certctl/pkg/live"
	"github.com/certctl/certctl/pkg/noderequest"
	"github.com/certctl/certctl/pkg/noderesult"
	"github.com/certctl/certctl/pkg/pki"
)

// CARotationSecret holds the new CAs during a rotation (in the Jobs' namespace, --namespace:
// the Jobs mount it, and a pod mounts Secrets of its own namespace only), as CA.crt and CA.key for
// each CA rotated (ca, etcd-ca, front-proxy-ca): the control-plane nodes' Jobs mount them all,
// the workers' ca.crt only. It is deleted after drop.
const CARotationSecret = "certctl-ca-rotation"

// The ConfigMap where the apiservers publish the CAs they verify clients with, for extension
// API servers (kube-system/extension-apiserver-authentication), and its keys.
const (
	AuthConfigMap       = "extension-apiserver-authentication"
	authClientCA        = "client-ca-file"
	authRequestHeaderCA = "requestheader-client-ca-file"
)

// authKey is the key of AuthConfigMap that carries a CA, for the CAs it carries.
var authKey = map[string]string{"ca": authClientCA, "front-proxy-ca": authRequestHeaderCA}

// RotatedCAs resolves the CA arguments of cluster ca-rotate: none means the cluster CA "ca";
// otherwise as carotate.ExpandAll ("all" is the three).
func RotatedCAs(args []string) ([]string, error) {
	if len(args) == 0 {
		return []string{"ca"}, nil
	}
	return carotate.ExpandAll(args)
}

// CARotateOptions drive CARotate.
type CARotateOptions struct {
	// CAs are the CAs rotated together: ca, etcd-ca, front-proxy-ca, and sa, the
	// service-account key pair (default: ca). etcd-ca, front-proxy-ca and sa live on the
	// control-plane nodes only.
	CAs      []string
	Phase    string // trust, issue, drop; with Rollback, the phase to undo ("": as the cluster shows)
	Rollback bool   // undo a phase on every node where it is the last applied, in reverse order
	Days     int    // the new CA's validity (trust); default 3650
	// OldCA is the cluster CA the command's kubeconfig trusts now (PEM): the new one is made
	// like it (subject, key algorithm).
	OldCA        []byte
	Runner       // the Jobs (JobTimeout: one node's Job; default 10m) and the Lease
	RestartFlags // as for Renew, passed to each node's restart
	// MaxParallel: the workers changed at once, each wave verified (every kubelet reporting
	// again) before the next; the control-plane nodes go one at a time.
	MaxParallel MaxParallel
	DryRun      bool
	// Checks: a node's apiserver ready as the phase expects, the cluster's copies of the CAs
	// settled, a kubelet reporting again.
	Checks

	// Config is the command's client configuration: with it, each control-plane node's own
	// apiserver is checked after a phase of sa (its JWKS, the key it signs with).
	Config *rest.Config

	planOnly       bool             // dry run before the Secret exists: the nodes plan with --generate
	newSA          crypto.PublicKey // the new service-account public key, when sa is rotated
	secretHasOldSA bool             // the Secret holds the old one too (saOldItem)
}

// CARotateReport is what a phase did on the cluster.
type CARotateReport struct {
	Phase string   `json:"phase"`
	CAs   []string `json:"cas"`
	// NewCA is the sha256 of each new CA certificate, by CA.
	NewCA map[string]string `json:"newCA,omitempty"`
	Nodes []NodeOutcome     `json:"nodes"`
	// AuthConfigMap says what kube-system/extension-apiserver-authentication carries.
	AuthConfigMap []string `json:"authConfigMap,omitempty"`
	ClusterInfo   string   `json:"clusterInfo,omitempty"`
	RootCA        string   `json:"rootCA,omitempty"` // the kube-root-ca.crt ConfigMaps
	// TrustBundle says what the ClusterTrustBundle TrustBundleName carries.
	TrustBundle string `json:"trustBundle,omitempty"`
	// Etcd is each control-plane node's etcd member as the API reported it before the run
	// (rotations of etcd-ca).
	Etcd []EtcdMemberState `json:"etcd,omitempty"`
	// Trust is the CA bundle a client of the cluster must trust after this phase (PEM).
	Trust []byte `json:"-"`
	// Local says what changed in the kubeconfigs of the machine the command ran on.
	Local []string `json:"local,omitempty"`
}

func (o *CARotateOptions) defaults() {
	o.Runner.defaults(10 * time.Minute)
	o.Checks.defaults()
	if o.Days == 0 {
		o.Days = 3650
	}
}

// CARotate runs one phase of the rotation of o.CAs on every node that holds them (the cluster
// CA: every node; etcd-ca and front-proxy-ca: the control-plane nodes), control-plane nodes
// first and one at a time, each verified from outside before the next (the node's apiserver
// ready, serving a certificate of the CA the phase expects; its kubelet reporting again),
// under the Lease; then the cluster's own copies of the CAs: what
// kube-system/extension-apiserver-authentication carries for extension API servers and, for
// the cluster CA, kube-public/cluster-info and every namespace's kube-root-ca.crt (as the
// controller-manager publishes them). What each phase does is phaseSteps.
func CARotate(ctx context.Context, cs kubernetes.Interface, o CARotateOptions) (*CARotateReport, error) {
	o.defaults()
	cas, err := o.validate()
	if err != nil {
		return nil, err
	}
	r := &rotation{o: &o, cs: cs, cas: cas, cluster: slices.Contains(cas, "ca")}
	// The cluster CA(s) the command's kubeconfig trusts: what the apiservers are checked with.
	if r.olds, err = pki.ParseCertificates("the kubeconfig's certificate-authority-data", o.OldCA); err != nil {
		return nil, err
	}
	if r.cps, r.workers, err = splitNodes(ctx, cs); err != nil {
		return nil, err
	}
	if err := o.checkRotateAccess(ctx, cs, cas); err != nil {
		return nil, err
	}
	r.rep = &CARotateReport{Phase: o.Phase, CAs: cas, NewCA: map[string]string{}}
	// Every phase of etcd-ca (and its rollback) restarts etcd on each control-plane node:
	// refused before anything changes while a member is down.
	if r.rep.Etcd, err = o.etcdForRotation(ctx, cs, cas, o.DryRun); err != nil {
		return r.rep, err
	}
	r.plan()
	if !o.DryRun {
		var release func()
		if r.held, release, err = o.Hold(ctx, cs); err != nil {
			return r.rep, err
		}
		defer release()
		o.logf("holding lease %s", r.held.Held())
	}
	if err := r.newCAs(ctx); err != nil {
		return r.rep, err
	}
	if err := r.kubeletProbe(ctx); err != nil {
		return r.rep, err
	}
	step, ok := phaseSteps[phaseKey{o.Phase, o.Rollback}]
	if !ok {
		return r.rep, fmt.Errorf("no step for phase %q (rollback %v)", o.Phase, o.Rollback)
	}
	r.step = step
	if err := r.tokensBefore(ctx); err != nil {
		return r.rep, err
	}
	if err := r.nodes(ctx); err != nil || o.DryRun {
		return r.rep, err
	}
	return r.rep, r.clusterCopies(ctx)
}

// rotation is one run of CARotate: what it found before the nodes' step, and its report.
type rotation struct {
	o       *CARotateOptions
	cs      kubernetes.Interface
	cas     []string
	cluster bool // the cluster CA is rotated: every node, cluster-info, kube-root-ca.crt
	step    phaseStep

	cps, workers []corev1.Node
	order        []corev1.Node // the nodes in the order of the phase
	held         *lease.Lease  // nil in a dry run

	news    map[string]*x509.Certificate // the new CA of each CA rotated
	secret  *corev1.Secret               // the rotation Secret as newCAs read or made it (nil: a dry run)
	newCert *x509.Certificate            // the new cluster CA, when it is rotated
	probe   bool                         // the Secret holds a kubelet probe for the workers (kubeletProbe)
	olds    []*x509.Certificate          // the old cluster CA(s)
	// bundle is what a client of the apiservers trusts during the phase (old + new when the
	// cluster CA is rotated, the kubeconfig's otherwise).
	newPEM, oldPEM, bundle []byte

	rep *CARotateReport
}

// validate checks the phase and rollback arguments and resolves the CAs.
func (o *CARotateOptions) validate() ([]string, error) {
	cas, err := RotatedCAs(o.CAs)
	if err != nil {
		return nil, err
	}
	phases := []string{carotate.PhaseTrust, carotate.PhaseIssue, carotate.PhaseDrop}
	switch {
	case !o.Rollback && !slices.Contains(phases, o.Phase):
		return nil, fmt.Errorf("--phase %q: want trust, issue or drop (or --rollback)", o.Phase)
	case o.Rollback && !slices.Contains([]string{"", carotate.PhaseTrust, carotate.PhaseIssue}, o.Phase):
		return nil, fmt.Errorf("--rollback --phase %q: the cluster-wide rollback undoes trust or issue; after drop (the old CA trusted nowhere, its Secret deleted) roll back node by node: certctl ca rotate %s --rollback", o.Phase, strings.Join(cas, " "))
	case o.Rollback && o.Phase == "" && !slices.Contains(cas, "ca"):
		return nil, fmt.Errorf("--rollback of %s: give --phase trust or issue (the phase to undo on every node where it is the last one applied)", strings.Join(cas, " "))
	}
	return cas, o.needImage()
}

// checkRotateAccess asks the API whether this run may do what the phase needs, before it
// changes anything.
func (o *CARotateOptions) checkRotateAccess(ctx context.Context, cs kubernetes.Interface, cas []string) error {
	if err := checkAccess(ctx, cs, o.Namespace, o.DryRun, false); err != nil {
		return err
	}
	if o.DryRun {
		return nil
	}
	if slices.ContainsFunc(cas, func(ca string) bool { return authKey[ca] != "" }) {
		if ok, err := allowed(ctx, cs, "kube-system", "update", "", "configmaps", "", AuthConfigMap); err != nil {
			return err
		} else if !ok {
			return fmt.Errorf("not allowed to update configmaps %s in kube-system (what extension API servers verify clients with; certctl takes the CA out that no apiserver trusts any more): see docs/cluster.md for the RBAC this command needs", AuthConfigMap)
		}
	}
	if slices.Contains(cas, "ca") {
		// The kubelet probe for the workers goes into the rotation Secret (kubeletProbe).
		if ok, err := allowed(ctx, cs, o.Namespace, "update", "", "secrets", "", CARotationSecret); err != nil {
			return err
		} else if !ok {
			return fmt.Errorf("not allowed to update secrets %s in %s (a client certificate of the new CA for the workers' Jobs: whether a kubelet reloaded its client CA file): see docs/cluster.md for the RBAC this command needs", CARotationSecret, o.Namespace)
		}
	}
	if !slices.Contains(cas, carotate.SA) {
		return nil
	}
	// Phase drop reads every legacy token Secret (its token must be the new key's); each
	// control-plane node's apiserver is asked for a token to see which key it signs with.
	for _, n := range []struct{ ns, verb, resource, sub, what string }{
		{"", "list", "secrets", "", "list secrets in all namespaces (legacy service-account token Secrets of the old key refuse drop)"},
		{o.Namespace, "create", "serviceaccounts", "token", "create serviceaccounts/token in " + o.Namespace + " (which key each apiserver signs with)"},
	} {
		if ok, err := allowed(ctx, cs, n.ns, n.verb, "", n.resource, n.sub, ""); err != nil {
			return err
		} else if !ok {
			return fmt.Errorf("not allowed to %s: see docs/cluster.md for the RBAC this command needs", n.what)
		}
	}
	return nil
}

// plan orders the nodes (control-plane nodes first; reversed for a rollback) and reports each
// untouched.
func (r *rotation) plan() {
	if r.o.Rollback {
		r.rep.Phase = "rollback"
	}
	r.order = slices.Clone(r.cps)
	if r.cluster {
		r.order = append(r.order, r.workers...) // etcd-ca and front-proxy-ca live on control-plane nodes only
	}
	if r.o.Rollback {
		slices.Reverse(r.order)
	}
	for _, n := range r.order {
		r.rep.Nodes = append(r.rep.Nodes, NodeOutcome{Node: n.Name, IP: internalIP(&n), State: "untouched"})
	}
}

// newCAs gets the new CAs (from the Secret, or made by trust) and, when the cluster CA is
// rotated, the old ones and the bundle clients trust during the phase; for a rollback without
// --phase, which phase the cluster shows.
func (r *rotation) newCAs(ctx context.Context) error {
	o := r.o
	var err error
	if r.news, r.secret, err = o.newCAs(ctx, r.cs, r.cas, r.olds[0], r.cps); err != nil {
		return err
	}
	for ca, c := range r.news {
		sum := sha256.Sum256(c.Raw)
		r.rep.NewCA[ca] = hex.EncodeToString(sum[:])
	}
	if o.newSA != nil {
		r.rep.NewCA[carotate.SA] = carotate.PublicKeySum(o.newSA)
	}
	r.bundle = o.OldCA
	if r.cluster {
		r.newCert = r.news["ca"]
		r.newPEM = pki.EncodeCertificates(r.newCert)
		// The old CA(s): what the kubeconfig and kube-public/cluster-info trust, without the
		// new one (after trust both hold both; a kubeconfig refreshed from a node may hold the
		// new only).
		if info, err := clusterInfoCA(ctx, r.cs); err == nil {
			for _, c := range pki.CertificatesIn(info) {
				if !slices.ContainsFunc(r.olds, c.Equal) {
					r.olds = append(r.olds, c)
				}
			}
		}
		r.olds = slices.DeleteFunc(r.olds, func(c *x509.Certificate) bool { return c.Equal(r.newCert) })
		r.oldPEM = pki.EncodeCertificates(r.olds...)
		if len(r.olds) == 0 {
			return fmt.Errorf("the kubeconfig trusts only the new CA: the old one is gone already (phase drop done?)")
		}
		r.bundle = append(slices.Clone(r.oldPEM), r.newPEM...)
		if o.Rollback && o.Phase == "" {
			if o.Phase, err = undone(ctx, r.cps, o.Port, r.newCert, o.VerifyTimeout); err != nil {
				return err
			}
		}
	}
	if o.Rollback {
		r.rep.Phase = "rollback of " + o.Phase
		o.logf("rolling back phase %s of %s on every node where it is the last phase applied", o.Phase, strings.Join(r.cas, ", "))
	}
	return nil
}

// tokensBefore re-requests every node's pods' tokens with the step's key before the key they
// are signed with stops being accepted (sa rotated): before drop the old key goes, before
// trust's rollback the new one. Legacy token Secrets refuse drop first.
func (r *rotation) tokensBefore(ctx context.Context) error {
	if !slices.Contains(r.cas, carotate.SA) || r.o.DryRun || r.step.tokens == "" {
		return nil
	}
	if r.step.legacyCheck {
		stale, err := legacyTokens(ctx, r.cs, r.o.newSA)
		if err != nil {
			return err
		}
		if len(stale) > 0 {
			return &LegacyTokensError{Secrets: stale}
		}
	}
	if err := r.o.refreshTokens(ctx, r.cs, append(slices.Clone(r.cps), r.workers...), r.step.tokens); err != nil {
		return fmt.Errorf("before %s of sa: %w; nothing was changed on the nodes, run the same command again", r.rep.Phase, err)
	}
	return nil
}

// nodes runs the phase on every node in order: the control-plane nodes one at a time, the
// workers in waves of MaxParallel, each node verified before the next wave; it stops after the
// first wave in which a node failed, naming every node that failed.
func (r *rotation) nodes(ctx context.Context) error {
	cp := make([]bool, len(r.order))
	for i := range r.order {
		cp[i] = isControlPlane(&r.order[i])
	}
	var before func(context.Context) error
	if r.held != nil {
		before = r.held.Confirm
	}
	err := r.o.inWaves(ctx, r.rep.Nodes, cp, r.o.MaxParallel.Of(len(r.workers)), before, r.rotateNode)
	var we *WaveError
	if errors.As(err, &we) {
		return fmt.Errorf("%w; the nodes before are done, the others untouched (the report gives each node's state): fix it and run the same command again (a node done is not changed again), or --rollback", we)
	}
	return err
}

// clusterCopies brings the cluster's own copies of the CAs to what the step says: what the
// apiservers publish for extension API servers (they add what they verify with, never take a
// CA out: certctl takes out the one no apiserver trusts any more), cluster-info, the
// ClusterTrustBundle and every kube-root-ca.crt; then deletes the rotation Secret when the
// step ends the rotation.
func (r *rotation) clusterCopies(ctx context.Context) error {
	o := r.o
	for _, ca := range r.cas {
		key := authKey[ca]
		if key == "" {
			continue
		}
		line, err := settleAuthCA(ctx, r.cs, key, r.news[ca], r.step.auth, o.ReadyTimeout)
		if err != nil {
			return err
		}
		r.rep.AuthConfigMap = append(r.rep.AuthConfigMap, line)
		o.logf("kube-system/%s: %s", AuthConfigMap, line)
	}
	if r.cluster && r.step.copies != copiesUnchanged {
		if err := r.publishTrust(ctx); err != nil {
			return err
		}
	}
	if r.step.deleteSecret == "" {
		return nil
	}
	if err := r.cs.CoreV1().Secrets(o.Namespace).Delete(ctx, CARotationSecret, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("%s, but the Secret %s/%s could not be deleted: %w (delete it: it holds the new CAs' keys)", r.step.deleteSecret, o.Namespace, CARotationSecret, err)
	}
	return nil
}

// publishTrust sets kube-public/cluster-info and the ClusterTrustBundle to the step's copies of
// the cluster CA and waits until the controller-manager has every kube-root-ca.crt carry them.
func (r *rotation) publishTrust(ctx context.Context) error {
	o := r.o
	has := func(data string) (newCA, old bool) {
		in := pki.CertificatesIn([]byte(data))
		in1 := func(c *x509.Certificate) bool { return slices.ContainsFunc(in, c.Equal) }
		return in1(r.newCert), slices.ContainsFunc(r.olds, in1)
	}
	var want func(string) bool
	var carry string
	switch r.step.copies {
	case copiesBoth:
		r.rep.Trust, carry = r.bundle, "old + new"
		want = func(d string) bool { n, old := has(d); return n && old }
	case copiesNew:
		r.rep.Trust, carry = r.newPEM, "the new CA alone"
		want = func(d string) bool { n, old := has(d); return n && !old }
	case copiesOld:
		r.rep.Trust, carry = r.oldPEM, "the old CA alone again"
		want = func(d string) bool { n, old := has(d); return !n && old }
	}
	var err error
	if r.rep.ClusterInfo, err = setClusterInfoCA(ctx, r.cs, r.rep.Trust); err != nil {
		return err
	}
	o.logf("%s/%s: %s", ClusterInfoNamespace, ClusterInfoName, r.rep.ClusterInfo)
	if r.rep.TrustBundle, err = publishTrustBundle(ctx, r.cs, r.rep.Trust); err != nil {
		return err
	}
	o.logf("ClusterTrustBundle %s: %s", TrustBundleName, r.rep.TrustBundle)
	n, err := waitRootCA(ctx, r.cs, want, o.ReadyTimeout)
	if err != nil {
		return err
	}
	r.rep.RootCA = fmt.Sprintf("%d kube-root-ca.crt ConfigMaps carry %s", n, carry)
	o.logf("%s", r.rep.RootCA)
	return nil
}

// newCAs returns the new CA certificate of each of cas: from the Secret, or (phase trust)
// made now, each like its old CA (subject, key algorithm), and kept in the Secret for the
// nodes' Jobs. The old cluster CA is the kubeconfig's; the old etcd and front-proxy CAs are
// read from every control-plane node ('certctl ca show'), which must all hold the same. The
// Secret is returned as read or made (nil in a dry run that would make it).
func (o *CARotateOptions) newCAs(ctx context.Context, cs kubernetes.Interface, cas []string, clusterOld *x509.Certificate, cps []corev1.Node) (map[string]*x509.Certificate, *corev1.Secret, error) {
	sec, err := cs.CoreV1().Secrets(o.Namespace).Get(ctx, CARotationSecret, metav1.GetOptions{})
	if err == nil {
		news, err := o.fromSecret(sec, cas)
		if err != nil {
			return nil, nil, err
		}
		return news, sec, nil
	}
	if !apierrors.IsNotFound(err) {
		return nil, nil, fmt.Errorf("read %s/%s: %w", o.Namespace, CARotationSecret, err)
	}
	if o.Phase != carotate.PhaseTrust || o.Rollback {
		return nil, nil, fmt.Errorf("%s/%s is missing: the rotation starts with --phase trust", o.Namespace, CARotationSecret)
	}
	olds := map[string]*x509.Certificate{"ca": clusterOld}
	var oldSA crypto.PublicKey
	if others := slices.DeleteFunc(slices.Clone(cas), func(c string) bool { return c == "ca" }); len(others) > 0 {
		shown, sa, err := o.showCAs(ctx, cs, cps, others)
		if err != nil {
			return nil, nil, err
		}
		maps.Copy(olds, shown)
		oldSA = sa
	}
	out := map[string]*x509.Certificate{}
	data := map[string][]byte{}
	var made []string
	for _, ca := range cas {
		if ca == carotate.SA {
			what, err := o.newSAKey(oldSA, data)
			if err != nil {
				return nil, nil, err
			}
			made = append(made, what)
			continue
		}
		c, what, err := o.newCA(ca, olds[ca], data)
		if err != nil {
			return nil, nil, err
		}
		out[ca] = c
		made = append(made, what)
	}
	if o.DryRun {
		o.planOnly = true
		o.logf("dry run: would make new CAs %s and keep them in %s/%s", strings.Join(made, ", "), o.Namespace, CARotationSecret)
		return out, nil, nil
	}
	sec, err = cs.CoreV1().Secrets(o.Namespace).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: CARotationSecret, Namespace: o.Namespace, Labels: map[string]string{LabelName: "certctl"}},
		Type:       corev1.SecretTypeOpaque,
		Data:       data,
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, nil, fmt.Errorf("keep the new CAs in %s/%s: %w", o.Namespace, CARotationSecret, err)
	}
	o.logf("new CAs %s, in %s/%s", strings.Join(made, ", "), o.Namespace, CARotationSecret)
	return out, sec, nil
}

// fromSecret reads the new CAs of a rotation under way from its Secret, which must hold the
// rotation of cas.
func (o *CARotateOptions) fromSecret(sec *corev1.Secret, cas []string) (map[string]*x509.Certificate, error) {
	var holds []string
	for _, ca := range carotate.CAs {
		if pub, _ := carotate.SecretNames(ca); len(sec.Data[pub]) > 0 {
			holds = append(holds, ca)
		}
	}
	if !slices.Equal(holds, cas) {
		return nil, fmt.Errorf("%s/%s holds the rotation of %s: run its phases with the same CAs (certctl cluster ca-rotate %s --phase ...) or roll it back, before rotating %s",
			o.Namespace, CARotationSecret, strings.Join(holds, " "), strings.Join(holds, " "), strings.Join(cas, " "))
	}
	out := map[string]*x509.Certificate{}
	for _, ca := range cas {
		if ca == carotate.SA {
			var err error
			if o.newSA, err = pki.ParsePublicKey(o.Namespace+"/"+CARotationSecret+" "+saNewItem, sec.Data[saNewItem]); err != nil {
				return nil, err
			}
			o.secretHasOldSA = len(sec.Data[saOldItem]) > 0
			continue
		}
		c, err := pki.ParseCertificates(o.Namespace+"/"+CARotationSecret+" "+ca+".crt", sec.Data[ca+".crt"])
		if err != nil {
			return nil, err
		}
		out[ca] = c[0]
	}
	return out, nil
}

// newCA makes the new CA of ca like old (subject, key algorithm; o.Days) and puts its
// certificate and key into data, the Secret's; it returns the CA and what was made.
func (o *CARotateOptions) newCA(ca string, old *x509.Certificate, data map[string][]byte) (*x509.Certificate, string, error) {
	key, err := pki.GenerateKey(pki.KeyAlgorithm(old.PublicKey))
	if err != nil {
		return nil, "", fmt.Errorf("a key like the old %s's: %w", ca, err)
	}
	now := time.Now()
	c, err := pki.NewCA(key, old, now.Add(-5*time.Minute), now.AddDate(0, 0, o.Days))
	if err != nil {
		return nil, "", err
	}
	keyPEM, err := keyutil.MarshalPrivateKeyToPEM(key)
	if err != nil {
		return nil, "", err
	}
	data[ca+".crt"], data[ca+".key"] = pki.EncodeCertificates(c), keyPEM
	return c, fmt.Sprintf("%s (%s, %s, %d days)", ca, c.Subject, pki.KeyAlgorithm(key.Public()), o.Days), nil
}

// newSAKey makes the new service-account key pair like old (its algorithm) and puts it into
// data with the old public key (what trust's rollback re-requests the pods' tokens with).
func (o *CARotateOptions) newSAKey(old crypto.PublicKey, data map[string][]byte) (string, error) {
	key, err := pki.GenerateKey(pki.KeyAlgorithm(old))
	if err != nil {
		return "", fmt.Errorf("a key like the old service-account key: %w", err)
	}
	keyPEM, err := keyutil.MarshalPrivateKeyToPEM(key)
	if err != nil {
		return "", err
	}
	pubPEM, err := pki.EncodePublicKey(key.Public())
	if err != nil {
		return "", err
	}
	oldPEM, err := pki.EncodePublicKey(old)
	if err != nil {
		return "", err
	}
	o.newSA, data[saNewItem], data["sa.key"], data[saOldItem] = key.Public(), pubPEM, keyPEM, oldPEM
	o.secretHasOldSA = true
	return fmt.Sprintf("sa (service-account key, %s)", pki.KeyAlgorithm(key.Public())), nil
}

// showCAs reads the CAs cas from every control-plane node (a read-only Job running
// 'certctl ca show'): they must be there, and the same on every node. It returns the CA
// certificates, and the service-account public key when cas holds SA.
func (o *CARotateOptions) showCAs(ctx context.Context, cs kubernetes.Interface, cps []corev1.Node, cas []string) (map[string]*x509.Certificate, crypto.PublicKey, error) {
	out := map[string]*x509.Certificate{}
	var saKey crypto.PublicKey
	from := map[string]string{}
	for _, n := range cps {
		res, err := o.Run(ctx, cs, JobSpec{Node: n.Name, Component: "show",
			Request: noderequest.Request{Op: noderequest.CAShow, Names: cas, Record: true}}, 0)
		if err != nil {
			return nil, nil, err
		}
		var shown carotate.Shown
		if err := res.Record(noderesult.KindCAShow, &shown); err != nil {
			return nil, nil, fmt.Errorf("%s: what the node holds of %s: %w", n.Name, strings.Join(cas, ", "), err)
		}
		for _, ca := range cas {
			if ca == carotate.SA {
				k, err := shown.SAKey()
				if err != nil {
					return nil, nil, fmt.Errorf("%s: %w", n.Name, err)
				}
				if k == nil {
					return nil, nil, fmt.Errorf("%s: no service-account key on the node (no %s)", n.Name, shown.Missing[ca])
				}
				if saKey == nil {
					saKey, from[ca] = k, n.Name
				} else if carotate.PublicKeySum(saKey) != carotate.PublicKeySum(k) {
					return nil, nil, fmt.Errorf("%s holds another service-account key (sa.pub) than %s: the control-plane nodes must share it", n.Name, from[ca])
				}
				continue
			}
			c, err := shown.Cert(ca)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %w", n.Name, err)
			}
			if c == nil {
				return nil, nil, fmt.Errorf("%s: no %s on the node (no %s; external etcd?): certctl cluster ca-rotate rotates the CAs kubeadm keeps on the control-plane nodes", n.Name, ca, shown.Missing[ca])
			}
			if prev := out[ca]; prev == nil {
				out[ca], from[ca] = c, n.Name
			} else if !prev.Equal(c) {
				return nil, nil, fmt.Errorf("%s holds another %s (%s, serial %s) than %s (%s, serial %s): the control-plane nodes must share their CAs", n.Name, ca, c.Subject, c.SerialNumber, from[ca], prev.Subject, prev.SerialNumber)
			}
		}
	}
	return out, saKey, nil
}

// settleAuthCA brings key of kube-system/extension-apiserver-authentication to want (see
// authWant) for newCA: it takes out the CAs no apiserver trusts any more, then waits until
// the ConfigMap carries what every apiserver verifies with (they publish it when they start).
func settleAuthCA(ctx context.Context, cs kubernetes.Interface, key string, newCA *x509.Certificate, want string, timeout time.Duration) (string, error) {
	cms := cs.CoreV1().ConfigMaps("kube-system")
	keep := func(c *x509.Certificate) bool {
		switch want {
		case "new":
			return c.Equal(newCA)
		case "old":
			return !c.Equal(newCA)
		}
		return true
	}
	ok := func(in []*x509.Certificate) bool {
		hasNew := slices.ContainsFunc(in, newCA.Equal)
		others := slices.ContainsFunc(in, func(c *x509.Certificate) bool { return !c.Equal(newCA) })
		switch want {
		case "new":
			return hasNew && !others
		case "old":
			return !hasNew && others
		}
		return hasNew && others
	}
	var last, lastErr string // what the ConfigMap showed last; the last error reading it
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		cm, err := cms.Get(ctx, AuthConfigMap, metav1.GetOptions{})
		if err != nil {
			lastErr = err.Error()
			return false, nil
		}
		in := pki.CertificatesIn([]byte(cm.Data[key]))
		if ok(in) {
			return true, nil
		}
		kept := slices.DeleteFunc(slices.Clone(in), func(c *x509.Certificate) bool { return !keep(c) })
		if len(kept) == 0 || len(kept) == len(in) {
			last = fmt.Sprintf("%s carries %d CA(s), not yet the new one", key, len(in))
			return false, nil // the apiservers have not published the new CA yet
		}
		cm.Data[key] = string(pki.EncodeCertificates(kept...))
		if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
			lastErr = err.Error() // a conflict with an apiserver's own update: read again
		}
		return false, nil
	})
	if last == "" {
		last = lastErr
	}
	if err != nil {
		return "", fmt.Errorf("kube-system/%s: %s does not carry the CAs the apiservers verify with within %s: %s", AuthConfigMap, key, timeout, last)
	}
	return fmt.Sprintf("%s: %s", key, map[string]string{"new": "the new CA alone", "old": "the old CA alone again", "both": "old + new"}[want]), nil
}

// rotateNode runs the phase on one node (cp: a control-plane node) and verifies it: its
// apiserver serving as the step expects, its kubelet reporting again when it was restarted,
// a worker's new certificates when the step gives them.
func (r *rotation) rotateNode(ctx context.Context, out *NodeOutcome, cp bool) error {
	o := r.o
	start := time.Now()
	if o.planOnly && !cp && r.step.fromSecret {
		out.State, out.Output = "planned", "the kubelet's clientCAFile and kubelet.conf would trust old + new CA (the new CA is made by the real run; a worker never gets its key)"
		return nil
	}
	res, err := o.Run(ctx, r.cs, r.nodeSpec(out.Node, cp), 10)
	out.Output = strings.TrimSpace(res.Logs)
	if err != nil {
		return err
	}
	if o.DryRun {
		out.State = "planned"
		return nil
	}
	done := time.Now()
	nr, err := noderesult.Parse(res.Termination)
	if err != nil {
		return fmt.Errorf("certctl ca rotate on %s: %w", out.Node, err)
	}
	if cp {
		if err := r.verifyAPIServer(ctx, out.IP); err != nil {
			return err
		}
	}
	if nr.KubeletRestarted {
		if err := waitKubeletReports(ctx, r.cs, out.Node, res.sinceRestart(done.Add(-2*time.Second)), o.ReadyTimeout); err != nil {
			return err
		}
	}
	// A worker (its ca.crt now the new CA) gets a kubelet client certificate of the new CA
	// through a CSR the controller-manager signs, then a serving certificate through its own.
	if !cp && r.newCert != nil && r.step.workerCerts {
		if err := o.workerClientCert(ctx, r.cs, out.Node, r.newCert); err != nil {
			return err
		}
		if err := waitKubeletReports(ctx, r.cs, out.Node, time.Now().Add(-time.Second), o.ReadyTimeout); err != nil {
			return err
		}
		if err := o.workerServing(ctx, r.cs, out, r.newCert, r.bundle); err != nil {
			return err
		}
	}
	out.State, out.Took = "done", time.Since(start).Round(100*time.Millisecond).String()
	o.logf("%s: done in %s", out.Node, out.Took)
	return nil
}

// probeValidity is how long the client certificate kubeletProbe makes is valid: one run, with
// room for a fleet of thousands of workers (a new one is made by every run).
const probeValidity = 12 * time.Hour

// kubeletProbe puts into the rotation Secret, for the workers' Jobs, a client certificate of the
// new cluster CA (kubelet.NewProbe: no groups, valid for this run): a worker's certctl changes
// its kubelet's clientCAFile in place (trust, issue, their rollbacks) and asks the kubelet with
// it whether the kubelet reloaded the file, instead of restarting it. Made afresh by every run
// that has workers to do, with the new CA's key the Secret holds; the Secret goes after drop.
func (r *rotation) kubeletProbe(ctx context.Context) error {
	o := r.o
	if !r.cluster || len(r.workers) == 0 || o.DryRun || r.newCert == nil {
		return nil
	}
	sec := r.secret.DeepCopy() // as newCAs read or made it: nothing else writes it under the Lease
	key, err := pki.ParsePrivateKey(CARotationSecret+"/ca.key", sec.Data["ca.key"])
	if err != nil {
		return err
	}
	probe, err := kubelet.NewProbe(r.newCert, key, time.Now(), probeValidity)
	if err != nil {
		return err
	}
	sec.Data[kubelet.ProbeFile] = probe
	if _, err := r.cs.CoreV1().Secrets(o.Namespace).Update(ctx, sec, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("keep the kubelet probe in %s/%s: %w", o.Namespace, CARotationSecret, err)
	}
	r.probe = true
	return nil
}

// nodeSpec is the Job of the phase on node: `certctl ca rotate CAS --phase P` (--rollback,
// the new CAs from the Secret, --restart), or its plan in a dry run.
func (r *rotation) nodeSpec(node string, cp bool) JobSpec {
	o := r.o
	req := noderequest.Request{Op: noderequest.CARotate, Names: r.cas, Phase: o.Phase, Rollback: o.Rollback, DryRun: o.DryRun}
	spec := JobSpec{Node: node, Component: "carotate", Privileged: !o.DryRun}
	switch {
	case r.step.fromSecret && o.planOnly:
		req.Generate = true
	case r.step.fromSecret:
		req.NewCADir = SecretDir
		spec.Secret = CARotationSecret
		if !cp {
			spec.SecretItems = []string{"ca.crt"} // a worker never gets the key
		}
	}
	if !cp && r.probe && !o.DryRun {
		// A worker's kubelet client CA file changes in place (trust, issue, their rollbacks):
		// the probe tells its reload, the Secret's CA keys stay out of the Job.
		spec.Secret = CARotationSecret
		spec.SecretItems = append(spec.SecretItems, kubelet.ProbeFile)
		req.KubeletProbe = SecretDir + "/" + kubelet.ProbeFile
	}
	if o.DryRun {
		spec.Component = "plan"
	} else {
		req.Restart, req.Result = o.RestartFlags.request(), true
	}
	spec.Request = req
	return spec
}

// verifyAPIServer waits until the apiserver at ip is ready and serves a certificate of the CA
// the step expects (the new cluster CA after issue and drop; old or new otherwise), and, when
// sa is rotated, signs with the key the step expects.
func (r *rotation) verifyAPIServer(ctx context.Context, ip string) error {
	o := r.o
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(r.bundle)
	pool := roots
	if r.newCert != nil && r.step.servedByNew {
		pool = x509.NewCertPool()
		pool.AddCert(r.newCert)
	}
	addr := net.JoinHostPort(ip, strconv.Itoa(o.Port))
	var last string
	if err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, o.VerifyTimeout, true, func(ctx context.Context) (bool, error) {
		c, err := servedLeaf(ctx, addr)
		if err != nil {
			last = err.Error()
			return false, nil
		}
		if _, err := c.Verify(x509.VerifyOptions{Roots: pool}); err != nil {
			last = "serves a certificate the expected CA did not sign: " + err.Error()
			return false, nil
		}
		if err := readyz(ctx, addr, roots); err != nil {
			last = err.Error()
			return false, nil
		}
		return true, nil
	}); err != nil {
		return fmt.Errorf("apiserver %s not ready as expected within %s: %s", addr, o.VerifyTimeout, last)
	}
	if slices.Contains(r.cas, carotate.SA) {
		return o.verifySA(ctx, addr, r.bundle)
	}
	return nil
}

// workerClientCert gets the worker's kubelet a client certificate of the new CA: a key made
// here, a CSR as system:node:NODE to kubernetes.io/kube-apiserver-client-kubelet approved with
// this run's credentials and signed by the controller-manager (now with the new CA), handed to
// the node's Job in a Secret of its own and installed there by `certctl kubelet-client install`
// (which restarts the kubelet). The Secret is deleted afterwards.
func (o *CARotateOptions) workerClientCert(ctx context.Context, cs kubernetes.Interface, node string, newCA *x509.Certificate) error {
	certPEM, keyPEM, err := signedByNewCA(ctx, cs, csrRequest{
		subject:      pkix.Name{CommonName: "system:node:" + node, Organization: []string{"system:nodes"}},
		signer:       certificatesv1.KubeAPIServerClientKubeletSignerName,
		generateName: "certctl-ca-rotation-" + node + "-",
		what:         "the kubelet client certificate of " + node,
	}, newCA)
	if err != nil {
		return err
	}
	name := "certctl-kubelet-client-" + strings.ReplaceAll(strings.ToLower(node), ".", "-")
	secrets := cs.CoreV1().Secrets(o.Namespace)
	_ = secrets.Delete(ctx, name, metav1.DeleteOptions{})
	if _, err := secrets.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: o.Namespace, Labels: map[string]string{LabelName: "certctl", LabelNode: node}},
		Data:       map[string][]byte{"kubelet-client.pem": append(append([]byte{}, certPEM...), keyPEM...)},
	}, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("hand the client certificate of %s over: %w", node, err)
	}
	defer func() { _ = secrets.Delete(context.WithoutCancel(ctx), name, metav1.DeleteOptions{}) }()
	req := noderequest.Request{Op: noderequest.KubeletClientInstall, File: SecretDir + "/kubelet-client.pem"}
	o.logf("%s: its kubelet client certificate signed by the new CA through a CSR", node)
	_, err = o.Run(ctx, cs, JobSpec{Node: node, Component: "kubelet-client", Request: req, Privileged: true, Secret: name}, 6)
	return err
}

// workerServing: a worker whose kubelet serves a certificate of the old CA (serverTLSBootstrap)
// gets a new one through its own CSR: `certctl kubelet-serving enable --new-certificate` on the
// node sets the old one aside and restarts the kubelet, whose CSR is approved here with
// certctl's checks (or by the in-cluster approver), and signed by the new CA.
func (o *CARotateOptions) workerServing(ctx context.Context, cs kubernetes.Interface, out *NodeOutcome, newCA *x509.Certificate, bundle []byte) error {
	addr := net.JoinHostPort(out.IP, "10250")
	chain, err := live.Served(ctx, addr, "", nil, 3*time.Second)
	if err != nil {
		return fmt.Errorf("read what the kubelet of %s serves: %w", out.Node, err)
	}
	olds := x509.NewCertPool()
	for _, c := range pki.CertificatesIn(bundle) {
		if !c.Equal(newCA) {
			olds.AddCert(c)
		}
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{Roots: olds}); err != nil {
		return nil // self-signed, or already the new CA's: nothing to do
	}
	o.logf("%s: its kubelet serves a certificate of the old CA", out.Node)
	start := time.Now()
	// The kubelet files its CSR while the Job runs; it is approved as it arrives (with
	// certctl's checks; the in-cluster approver may do it first) by a watch of the kubelet
	// serving CSRs, one list and one watch per node instead of a list every second: the Job's
	// log can then be read through the kubelet's new serving certificate.
	approveCtx, stopApproving := context.WithCancel(ctx)
	defer stopApproving()
	go wait.UntilWithContext(approveCtx, func(ctx context.Context) {
		_ = kubeletserving.Watch(ctx, cs, kubeletserving.ApproveOptions{Requestor: kubeletserving.NodeUserPrefix + out.Node}, func(kubeletserving.Decision) {})
	}, time.Second)
	if _, err = o.Run(ctx, cs, JobSpec{Node: out.Node, Component: "serving", Request: noderequest.Request{Op: noderequest.KubeletServingEnable}, Privileged: true}, 0); err != nil {
		return err
	}
	only := x509.NewCertPool()
	only.AddCert(newCA)
	var last string
	err = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, o.ReadyTimeout, true, func(ctx context.Context) (bool, error) {
		chain, err := live.Served(ctx, addr, "", nil, 3*time.Second)
		if err != nil {
			last = err.Error()
			return false, nil
		}
		if _, err := chain[0].Verify(x509.VerifyOptions{Roots: only}); err != nil {
			last = "still serves a certificate the new CA did not sign"
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("the kubelet of %s has no serving certificate of the new CA within %s: %s", out.Node, o.ReadyTimeout, last)
	}
	o.logf("%s: its kubelet serves a certificate of the new CA (%s)", out.Node, time.Since(start).Round(100*time.Millisecond))
	return nil
}

// clusterInfoCA is the CA data of kube-public/cluster-info's kubeconfig.
func clusterInfoCA(ctx context.Context, cs kubernetes.Interface) ([]byte, error) {
	cfg, err := clusterInfo(ctx, cs)
	if err != nil {
		return nil, err
	}
	var out []byte
	for _, c := range cfg.Clusters {
		out = append(out, c.CertificateAuthorityData...)
	}
	return out, nil
}

// setClusterInfoCA sets the CA of kube-public/cluster-info's kubeconfig (the bootstrap signer
// re-signs it for joins).
func setClusterInfoCA(ctx context.Context, cs kubernetes.Interface, ca []byte) (string, error) {
	return editConfigMapKubeconfig(ctx, cs, ClusterInfoNamespace, ClusterInfoName, "kubeconfig", false, func(cfg *clientcmdapi.Config) (string, bool) {
		changed := false
		for _, c := range cfg.Clusters {
			if !bytes.Equal(c.CertificateAuthorityData, ca) {
				c.CertificateAuthorityData, changed = ca, true
			}
		}
		if !changed {
			return "unchanged", false
		}
		return fmt.Sprintf("certificate-authority-data: %d CA certificate(s)", bytes.Count(ca, []byte("BEGIN CERTIFICATE"))), true
	})
}

// waitRootCA waits until every namespace's kube-root-ca.crt (what pods' projected tokens
// mount as ca.crt) satisfies want, and returns how many there are.
func waitRootCA(ctx context.Context, cs kubernetes.Interface, want func(string) bool, timeout time.Duration) (int, error) {
	var n int
	var last string
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		cms, err := cs.CoreV1().ConfigMaps("").List(ctx, metav1.ListOptions{FieldSelector: "metadata.name=kube-root-ca.crt"})
		if err != nil {
			last = err.Error()
			return false, nil
		}
		n = len(cms.Items)
		for _, cm := range cms.Items {
			if !want(cm.Data["ca.crt"]) {
				last = cm.Namespace + "/kube-root-ca.crt does not carry the CAs yet"
				return false, nil
			}
		}
		return n > 0, nil
	})
	if err != nil {
		return n, fmt.Errorf("the controller-manager has not published the CAs in every kube-root-ca.crt within %s: %s", timeout, last)
	}
	return n, nil
}

// ReissueClientCert gives the kubeconfig at path a client certificate of newCA when its
// current user's embedded certificate is another CA's: a new key, a CSR with the same subject
// (user and groups) to kubernetes.io/kube-apiserver-client, approved with the kubeconfig's own
// credentials and signed by the controller-manager (with the new CA after phase issue); the
// file is written atomically after a copy of the old one (path.certctl-<time>). Without it, the
// operator's kubeconfig stops working at phase drop. It returns whether it changed the file.
func ReissueClientCert(ctx context.Context, cs kubernetes.Interface, path string, newCA *x509.Certificate) (bool, error) {
	cfg, err := clientcmd.LoadFromFile(path)
	if err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	creds, err := kubeconfigpkg.CurrentCredentials(path, cfg)
	if err != nil {
		return false, err
	}
	if !creds.Embedded() {
		return false, nil // a token, an exec plugin, a certificate file: not certctl's to change
	}
	old, err := pki.ParseCertificates(path, creds.CertData)
	if err != nil {
		return false, err
	}
	if old[0].CheckSignatureFrom(newCA) == nil {
		return false, nil
	}
	certPEM, keyPEM, err := signedByNewCA(ctx, cs, csrRequest{
		subject:      pkix.Name{CommonName: old[0].Subject.CommonName, Organization: old[0].Subject.Organization},
		signer:       certificatesv1.KubeAPIServerClientSignerName,
		generateName: "certctl-ca-rotation-client-",
		what:         "the operator's client certificate (" + path + ")",
	}, newCA)
	if err != nil {
		return false, err
	}
	if err := kubeconfigpkg.WriteClientCertificate(path, certPEM, keyPEM); err != nil {
		return false, err
	}
	return true, nil
}

// undone is the phase a cluster-wide --rollback undoes, as the cluster shows it: issue when a
// control-plane apiserver serves a certificate of the new CA, trust when every one serves the
// old. An apiserver that does not answer is asked again every half second for up to timeout:
// it may be restarting under the Job of a run that was killed (the run after the kill adopts
// that Job), and the phase is trust only once every apiserver has said so.
func undone(ctx context.Context, cps []corev1.Node, port int, newCA *x509.Certificate, timeout time.Duration) (string, error) {
	pending := make([]string, len(cps))
	for i := range cps {
		pending[i] = net.JoinHostPort(internalIP(&cps[i]), strconv.Itoa(port))
	}
	phase := carotate.PhaseTrust
	var last error
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		var still []string
		for _, addr := range pending {
			c, err := servedLeaf(ctx, addr)
			switch {
			case err != nil:
				last = fmt.Errorf("what %s serves: %w", addr, err)
				still = append(still, addr)
			case c.CheckSignatureFrom(newCA) == nil:
				phase = carotate.PhaseIssue
				return true, nil
			}
		}
		pending = still
		return len(pending) == 0, nil
	})
	if phase == carotate.PhaseIssue {
		return phase, nil
	}
	if err != nil {
		return "", fmt.Errorf("which phase to roll back (or give --phase): %s did not answer within %s: %w", strings.Join(pending, ", "), timeout, last)
	}
	return phase, nil
}

// csrRequest is a client certificate to get through the certificates API.
type csrRequest struct {
	subject      pkix.Name
	signer       string // kubernetes.io/kube-apiserver-client(-kubelet)
	generateName string
	what         string // for messages and the approval
}

// OtherSignerError is a CSR the controller-manager signed with another CA than the new one:
// it signs with the CA of its --cluster-signing-cert-file, which phase issue moves to the new
// CA. A certificate once signed is not signed again: the request is not waited on further.
type OtherSignerError struct {
	CSR, What string
	Issuer    string // the issuer of the certificate it got
}

func (e *OtherSignerError) Error() string {
	return fmt.Sprintf("the CSR %s for %s was signed by %q, not by the new CA (is the controller-manager signing with the new CA? run --phase issue first)", e.CSR, e.What, e.Issuer)
}

// signedByNewCA gets a client certificate of newCA through the certificates API
// (pkg/csrwait): a new key, a CSR for r.subject to r.signer approved with this run's
// credentials and signed by the controller-manager (with the new CA after phase issue),
// watched until signed (at most 2 minutes; a Denied or Failed CSR ends the wait at once, as a
// *csrwait.RefusedError; a certificate of another CA as an *OtherSignerError). The CSR is
// deleted afterwards.
func signedByNewCA(ctx context.Context, cs kubernetes.Interface, r csrRequest, newCA *x509.Certificate) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: r.subject}, key)
	if err != nil {
		return nil, nil, err
	}
	certPEM, name, err := csrwait.Issue(ctx, cs, csrwait.Request{
		NamePrefix: r.generateName,
		CSR:        pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
		Key:        key,
		Signer:     r.signer,
		Usages:     []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth},
		Approval: certificatesv1.CertificateSigningRequestCondition{Reason: "CertctlCARotation",
			Message: "certctl cluster ca-rotate: " + r.what + " re-issued by the new cluster CA"},
	})
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", r.what, err)
	}
	c, err := pki.ParseCertificates("the certificate of the CSR "+name, certPEM)
	if err != nil {
		return nil, nil, err
	}
	if c[0].CheckSignatureFrom(newCA) != nil {
		return nil, nil, &OtherSignerError{CSR: name, What: r.what, Issuer: c[0].Issuer.String()}
	}
	if keyPEM, err = keyutil.MarshalPrivateKeyToPEM(key); err != nil {
		return nil, nil, err
	}
	return certPEM, keyPEM, nil
}
