// Package kubeadmconfig edits the ClusterConfiguration that kubeadm keeps in the
// kube-system/kubeadm-config ConfigMap. kubeadm regenerates certificates from it (the next
// control-plane join, `kubeadm init phase certs apiserver --config`, `kubeadm upgrade`), so a
// SAN added to a certificate but not to apiServer.certSANs there is dropped again later.
//
// Edits go through yaml.v3 nodes: everything else in the document (other fields, their
// order, comments) is kept. Writes retry on conflict (retry.RetryOnConflict). It never prints
// (Change says what an edit did).
package kubeadmconfig

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/retry"

	"github.com/certctl/certctl/pkg/manifest"
)

// Where kubeadm keeps its cluster configuration.
const (
	Namespace = "kube-system"
	Name      = "kubeadm-config"
	Key       = "ClusterConfiguration"
)

// Field is the dotted path of a SAN list in the ClusterConfiguration.
type Field string

// The SAN lists kubeadm reads when it makes a serving certificate.
const (
	APIServerSANs  Field = "apiServer.certSANs"
	EtcdServerSANs Field = "etcd.local.serverCertSANs"
	EtcdPeerSANs   Field = "etcd.local.peerCertSANs"
)

// FieldFor returns the ClusterConfiguration field that holds the extra SANs of the
// certificate named cert (apiserver, etcd-server, etcd-peer), and false for any other.
func FieldFor(cert string) (Field, bool) {
	switch cert {
	case "apiserver":
		return APIServerSANs, true
	case "etcd-server":
		return EtcdServerSANs, true
	case "etcd-peer":
		return EtcdPeerSANs, true
	}
	return "", false
}

// CertFor is the inverse of FieldFor.
func CertFor(f Field) string {
	switch f {
	case EtcdServerSANs:
		return "etcd-server"
	case EtcdPeerSANs:
		return "etcd-peer"
	}
	return "apiserver"
}

// Edit is SANs to add to one field.
type Edit struct {
	Field Field
	SANs  []string
}

// LaterCommand is the command that makes edits once the API is reachable.
func LaterCommand(edits []Edit) string {
	var cmds []string
	for _, e := range edits {
		if len(e.SANs) == 0 {
			continue
		}
		c := "certctl kubeadm-config add-san " + strings.Join(e.SANs, " ")
		if e.Field != APIServerSANs {
			c += " --cert " + CertFor(e.Field)
		}
		cmds = append(cmds, c)
	}
	return strings.Join(cmds, "; ")
}

// AddSANs adds sans to the list at field in the ClusterConfiguration document doc and
// returns the new document and the SANs it added (those not already listed; a SAN matches
// case-insensitively, an IP in any notation). Missing parent mappings and the list itself
// are created; nothing else in the document changes but the indentation of block sequences
// (yaml.v3 writes them indented). A document that is not a ClusterConfiguration, or whose
// etcd is external for an etcd field, is an error.
func AddSANs(doc string, field Field, sans []string) (string, []string, error) {
	top, root, err := clusterConfiguration(doc)
	if err != nil {
		return "", nil, err
	}
	path := strings.Split(string(field), ".")
	if path[0] == "etcd" && value(value(top, "etcd"), "external") != nil {
		return "", nil, fmt.Errorf("%s: etcd is external: its certificates are not made by kubeadm, so %s does not apply", Key, field)
	}
	m := top
	for _, k := range path[:len(path)-1] {
		v := value(m, k)
		if v == nil || v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
			nv := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
			if v == nil {
				m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: k}, nv)
			} else {
				*v = *nv
			}
			v = nv
		}
		if v.Kind != yaml.MappingNode {
			return "", nil, fmt.Errorf("%s: %s is not a mapping", Key, k)
		}
		m = v
	}
	last := path[len(path)-1]
	seq := value(m, last)
	switch {
	case seq == nil:
		seq = &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: last}, seq)
	case seq.Kind == yaml.ScalarNode && seq.Tag == "!!null":
		*seq = yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", HeadComment: seq.HeadComment, LineComment: seq.LineComment}
	case seq.Kind != yaml.SequenceNode:
		return "", nil, fmt.Errorf("%s: %s is not a list", Key, field)
	}
	var have []string
	for _, n := range seq.Content {
		have = append(have, n.Value)
	}
	var added []string
	for _, s := range sans {
		if slices.ContainsFunc(append(have, added...), func(h string) bool { return sameSAN(h, s) }) {
			continue
		}
		added = append(added, s)
		seq.Content = append(seq.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s})
	}
	if len(added) == 0 {
		return doc, nil, nil
	}
	out, err := encode(root)
	if err != nil {
		return "", nil, err
	}
	return out, added, nil
}

func sameSAN(a, b string) bool {
	if ia, ib := net.ParseIP(a), net.ParseIP(b); ia != nil && ib != nil {
		return ia.Equal(ib)
	}
	return strings.EqualFold(a, b)
}

// value returns the value node of key in mapping m, or nil.
var value = manifest.MapValue

// Missing returns, per edit, the SANs that doc does not list yet (edits with none left are
// dropped).
func Missing(doc string, edits []Edit) ([]Edit, error) {
	var out []Edit
	for _, e := range edits {
		_, added, err := AddSANs(doc, e.Field, e.SANs)
		if err != nil {
			return nil, err
		}
		if len(added) > 0 {
			out = append(out, Edit{Field: e.Field, SANs: added})
		}
	}
	return out, nil
}

// ErrNotFound says the cluster has no kubeadm-config ConfigMap (not made by kubeadm).
var ErrNotFound = errors.New("ConfigMap " + Namespace + "/" + Name + " not found: the cluster was not made by kubeadm, or by a kubeadm older than 1.8")

// Read returns the ClusterConfiguration document and the ConfigMap's resourceVersion.
func Read(ctx context.Context, cs kubernetes.Interface) (doc, resourceVersion string, err error) {
	cm, err := cs.CoreV1().ConfigMaps(Namespace).Get(ctx, Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "", "", ErrNotFound
	}
	if err != nil {
		return "", "", fmt.Errorf("read %s/%s: %w", Namespace, Name, err)
	}
	doc, ok := cm.Data[Key]
	if !ok {
		return "", "", fmt.Errorf("%s/%s has no %s key", Namespace, Name, Key)
	}
	return doc, cm.ResourceVersion, nil
}

// Result is what Apply changed.
type Result struct {
	Added           []Edit // the SANs written, per field; empty when everything was there
	ResourceVersion string // of the ConfigMap after the write (or as read, when nothing changed)
	Attempts        int    // reads-and-writes it took (more than 1 after a conflict)
}

// Apply adds the edits' SANs to the ConfigMap. Each attempt reads the ConfigMap, edits the
// document and updates it with the resourceVersion it read, so a concurrent change (kubeadm
// upgrade, another node's certctl) is never overwritten: on a conflict it starts again from
// a fresh read (retry.RetryOnConflict). The ConfigMap changes in one update or not at all.
func Apply(ctx context.Context, cs kubernetes.Interface, edits []Edit) (*Result, error) {
	res := &Result{}
	rv, err := update(ctx, cs, func(doc string) (string, error) {
		res.Attempts++
		res.Added = nil
		for _, e := range edits {
			var added []string
			var err error
			doc, added, err = AddSANs(doc, e.Field, e.SANs)
			if err != nil {
				return "", err
			}
			if len(added) > 0 {
				res.Added = append(res.Added, Edit{Field: e.Field, SANs: added})
			}
		}
		return doc, nil
	})
	if err != nil {
		return nil, err
	}
	res.ResourceVersion = rv
	return res, nil
}

// update reads the ConfigMap, edits its document and, when the edit changed it, updates the
// ConfigMap with the resourceVersion it read; on a conflict (kubeadm upgrade, another
// certctl) it starts again from a fresh read (retry.RetryOnConflict), so no concurrent change
// is overwritten. It returns the ConfigMap's resourceVersion after the write (or as read,
// when nothing changed).
func update(ctx context.Context, cs kubernetes.Interface, edit func(doc string) (string, error)) (string, error) {
	var rv string
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cm, err := cs.CoreV1().ConfigMaps(Namespace).Get(ctx, Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("read %s/%s: %w", Namespace, Name, err)
		}
		doc, ok := cm.Data[Key]
		if !ok {
			return fmt.Errorf("%s/%s has no %s key", Namespace, Name, Key)
		}
		out, err := edit(doc)
		if err != nil {
			return fmt.Errorf("%s/%s: %w", Namespace, Name, err)
		}
		rv = cm.ResourceVersion
		if out == doc {
			return nil
		}
		cm = cm.DeepCopy()
		cm.Data[Key] = out
		updated, err := cs.CoreV1().ConfigMaps(Namespace).Update(ctx, cm, metav1.UpdateOptions{FieldManager: "certctl"})
		if err != nil {
			if apierrors.IsConflict(err) {
				return err // RetryOnConflict needs the API error itself
			}
			return fmt.Errorf("update %s/%s: %w", Namespace, Name, err)
		}
		rv = updated.ResourceVersion
		return nil
	})
	return rv, err
}

// DefaultTimeout bounds each request to the API server: an unreachable API must not hold a
// renewal up.
const DefaultTimeout = 10 * time.Second

// NewClientset returns a clientset authenticated by the kubeconfig at path (admin.conf),
// each request bounded by timeout.
func NewClientset(path string, timeout time.Duration) (kubernetes.Interface, error) {
	rc, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	rc.Timeout = timeout
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	return cs, nil
}

// ControlPlaneEndpoint returns the ClusterConfiguration's controlPlaneEndpoint ("" when unset).
func ControlPlaneEndpoint(doc string) (string, error) {
	top, _, err := clusterConfiguration(doc)
	if err != nil {
		return "", err
	}
	if v := value(top, "controlPlaneEndpoint"); v != nil {
		return v.Value, nil
	}
	return "", nil
}

// SetControlPlaneEndpoint returns doc with controlPlaneEndpoint set to ep (created when
// missing), and the value it replaced. Nothing else in the document changes.
func SetControlPlaneEndpoint(doc, ep string) (out, old string, err error) {
	top, root, err := clusterConfiguration(doc)
	if err != nil {
		return "", "", err
	}
	v := value(top, "controlPlaneEndpoint")
	if v == nil {
		top.Content = append(top.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: "controlPlaneEndpoint"},
			&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: ep})
	} else {
		if v.Value == ep {
			return doc, ep, nil
		}
		old = v.Value
		v.Kind, v.Tag, v.Value, v.Style = yaml.ScalarNode, "!!str", ep, 0
	}
	out, err = encode(root)
	return out, old, err
}

// SetEndpoint sets controlPlaneEndpoint in the ConfigMap (read, edit, update with the
// resourceVersion read; retried on a conflict) and returns the value it replaced. An
// endpoint already in place is not written again.
func SetEndpoint(ctx context.Context, cs kubernetes.Interface, ep string) (old string, changed bool, err error) {
	_, err = update(ctx, cs, func(doc string) (string, error) {
		out, prev, err := SetControlPlaneEndpoint(doc, ep)
		old, changed = prev, err == nil && out != doc
		return out, err
	})
	return old, changed, err
}

// clusterConfiguration parses doc and returns its top mapping and the document node.
func clusterConfiguration(doc string) (top, root *yaml.Node, err error) {
	root = &yaml.Node{}
	if err := yaml.Unmarshal([]byte(doc), root); err != nil {
		return nil, nil, fmt.Errorf("parse %s: %w", Key, err)
	}
	if root.Kind != yaml.DocumentNode || len(root.Content) != 1 || root.Content[0].Kind != yaml.MappingNode {
		return nil, nil, fmt.Errorf("%s is not a YAML mapping", Key)
	}
	top = root.Content[0]
	if k := value(top, "kind"); k == nil || k.Value != "ClusterConfiguration" {
		return nil, nil, fmt.Errorf("%s: kind is not ClusterConfiguration", Key)
	}
	if v := value(top, "apiVersion"); v == nil || !slices.Contains(KnownAPIVersions, v.Value) {
		got := "none"
		if v != nil {
			got = v.Value
		}
		return nil, nil, &UnknownAPIVersionError{Got: got}
	}
	return top, root, nil
}

// KnownAPIVersions are the kubeadm API versions of a ClusterConfiguration whose fields
// (apiServer.certSANs, controlPlaneEndpoint, etcd.local.serverCertSANs...) certctl edits:
// v1beta3 (kubeadm 1.22-1.36; clusters made then keep it until an upgrade rewrites it) and
// v1beta4 (1.31 on, the only one kubeadm 1.37 reads).
var KnownAPIVersions = []string{"kubeadm.k8s.io/v1beta3", "kubeadm.k8s.io/v1beta4"}

// UnknownAPIVersionError is a ClusterConfiguration of a kubeadm API certctl does not know
// (a newer kubeadm's): certctl changes nothing rather than guess where its fields went.
type UnknownAPIVersionError struct{ Got string }

func (e *UnknownAPIVersionError) Error() string {
	return fmt.Sprintf("%s/%s %s: apiVersion %s is not one certctl knows (%s): it changes nothing in it; a newer certctl may know it, or give the SANs to kubeadm yourself (kubeadm init phase upload-config kubeadm --config FILE)",
		Namespace, Name, Key, e.Got, strings.Join(KnownAPIVersions, ", "))
}

func encode(root *yaml.Node) (string, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(root); err != nil {
		return "", fmt.Errorf("write %s: %w", Key, err)
	}
	if err := enc.Close(); err != nil {
		return "", fmt.Errorf("write %s: %w", Key, err)
	}
	return buf.String(), nil
}

// Change is what adding SANs to one field did to the ConfigMap, or on a dry run would do.
type Change struct {
	Field  Field
	Asked  []string // the SANs asked for
	Added  []string // added (on a dry run: missing); empty when the field listed them all
	DryRun bool
}

// String is the change as certctl kubeadm-config add-san says it.
func (c Change) String() string {
	cm := Namespace + "/" + Name
	switch {
	case len(c.Added) == 0 && c.DryRun:
		return fmt.Sprintf("%s: %s already lists %s; dry run: nothing changed", cm, c.Field, strings.Join(c.Asked, ", "))
	case len(c.Added) == 0:
		return fmt.Sprintf("%s: %s already lists %s: nothing changed", cm, c.Field, strings.Join(c.Asked, ", "))
	case c.DryRun:
		return fmt.Sprintf("%s: would add %s to %s; dry run: nothing changed", cm, strings.Join(c.Added, ", "), c.Field)
	}
	return fmt.Sprintf("%s: added %s to %s", cm, strings.Join(c.Added, ", "), c.Field)
}

// AddTo adds sans to field (Apply); on a dry run it only reads what is missing (Missing).
func AddTo(ctx context.Context, cs kubernetes.Interface, field Field, sans []string, dryRun bool) (Change, error) {
	c := Change{Field: field, Asked: sans, DryRun: dryRun}
	edits := []Edit{{Field: field, SANs: sans}}
	if dryRun {
		doc, _, err := Read(ctx, cs)
		if err != nil {
			return c, err
		}
		missing, err := Missing(doc, edits)
		if err != nil || len(missing) == 0 {
			return c, err
		}
		c.Added = missing[0].SANs
		return c, nil
	}
	res, err := Apply(ctx, cs, edits)
	if err != nil || len(res.Added) == 0 {
		return c, err
	}
	c.Added = res.Added[0].SANs
	return c, nil
}
