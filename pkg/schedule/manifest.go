package schedule

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/certctl/certctl/pkg/inspect"
	"github.com/certctl/certctl/pkg/lease"
	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/templates"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// ControlPlaneLabel marks control-plane nodes (kubeadm sets it).
const ControlPlaneLabel = pki.ControlPlaneLabel

// ManifestOptions describe the in-cluster variant.
type ManifestOptions struct {
	Nodes     []string
	Image     string
	Namespace string // default kube-system
	Threshold string // default 30d
	Days      int    // default 365
	Restart   bool
	// Schedule is the first node's cron schedule (default "30 3 * * 1"); each further node
	// runs an hour later (or, when the hour is not a single number, 10 minutes later).
	Schedule string
	// LeaseWait is how long a CronJob's renewal waits for the Lease (lease.DefaultRef) while
	// another run holds it (default 30m): the Lease, not the staggering, is what keeps two
	// renewals (or a renewal and `certctl cluster renew`) from restarting nodes at once.
	LeaseWait time.Duration
}

// ServiceAccount is the CronJobs' service account; RoleName its Role and RoleBinding, which
// allow the Lease and nothing else; EventsRoleName the Role and RoleBinding in
// EventsNamespace that let each run record Events on its Node (create and patch events).
const (
	ServiceAccount  = "certctl-renew"
	RoleName        = "certctl-renew-lease"
	EventsRoleName  = "certctl-renew-events"
	EventsNamespace = "default"
)

// ManifestsFor is Manifests for o's nodes or, when o names none, the cluster's control-plane
// nodes, listed through the client client makes.
func ManifestsFor(ctx context.Context, o ManifestOptions, client func() (kubernetes.Interface, error)) ([]byte, error) {
	if len(o.Nodes) == 0 && o.Image != "" {
		cs, err := client()
		if err != nil {
			return nil, fmt.Errorf("%w (or name the control-plane nodes with --node)", err)
		}
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if o.Nodes, err = ControlPlaneNodes(ctx, cs); err != nil {
			return nil, err
		}
	}
	return Manifests(o)
}

// ControlPlaneNodes lists the nodes labelled as control plane.
func ControlPlaneNodes(ctx context.Context, cs kubernetes.Interface) ([]string, error) {
	list, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: ControlPlaneLabel})
	if err != nil {
		return nil, fmt.Errorf("list control-plane nodes: %w", err)
	}
	var out []string
	for _, n := range list.Items {
		out = append(out, n.Name)
	}
	sort.Strings(out)
	if len(out) == 0 {
		return nil, fmt.Errorf("no node has the label %s: name them with --node", ControlPlaneLabel)
	}
	return out, nil
}

// Manifests renders, as a multi-document YAML stream, the CronJobs' ServiceAccount, the Lease
// and a Role and RoleBinding that let the service account take it, a Role and RoleBinding
// that let it create and patch Events in the default namespace (a Node's), then one CronJob
// per node that holds the Lease while it renews (certctl renew --lease) and records its
// findings as Events on its Node (--events-node).
func Manifests(o ManifestOptions) ([]byte, error) {
	if o.Image == "" {
		return nil, fmt.Errorf("--image is required: an image with certctl at its entrypoint")
	}
	if len(o.Nodes) == 0 {
		return nil, fmt.Errorf("no control-plane node given")
	}
	if o.Namespace == "" {
		o.Namespace = "kube-system"
	}
	if o.Threshold == "" {
		o.Threshold = "30d"
	}
	if o.Days == 0 {
		o.Days = 365
	}
	if o.Schedule == "" {
		o.Schedule = "30 3 * * 1"
	}
	if o.LeaseWait == 0 {
		o.LeaseWait = 30 * time.Minute
	}
	if o.LeaseWait < 0 {
		return nil, fmt.Errorf("--lease-wait %s: must not be negative", o.LeaseWait)
	}
	if th, err := inspect.ParseDuration(o.Threshold); err != nil || th <= 0 {
		return nil, fmt.Errorf("--threshold %q: want a positive duration such as 30d", o.Threshold)
	}
	parsed, err := ParseCron(o.Schedule)
	if err != nil {
		return nil, fmt.Errorf("--schedule: %w", err)
	}
	args := []string{"--root", "/host", "renew", "all", "--if-expiring-within", o.Threshold, "--days", strconv.Itoa(o.Days)}
	if o.Restart {
		args = append(args, "--restart")
	}
	args = append(args, "--yes", "--lease", lease.DefaultRef, "--lease-wait", o.LeaseWait.String())
	var buf bytes.Buffer
	rbac, err := templates.Render("schedule/rbac.yaml", map[string]any{
		"Namespace": o.Namespace, "ServiceAccount": ServiceAccount, "Role": RoleName,
		"LeaseNamespace": lease.Namespace, "LeaseName": lease.Name,
		"EventsRole": EventsRoleName, "EventsNamespace": EventsNamespace,
	})
	if err != nil {
		return nil, err
	}
	buf.Write(rbac)
	for i, node := range o.Nodes {
		sched, err := stagger(parsed.Standard(), i) // a CronJob takes Sunday as 0 only
		if err != nil {
			return nil, err
		}
		// After the run, an Event on the Node for every warning or critical finding.
		nodeArgs := append(append([]string{}, args...), "--events-node", node)
		doc, err := templates.Render("schedule/cronjob.yaml", map[string]any{
			"Name": jobName(node), "Namespace": o.Namespace, "Node": node, "Schedule": sched, "Image": o.Image, "Args": nodeArgs,
			"ServiceAccount": ServiceAccount,
		})
		if err != nil {
			return nil, err
		}
		buf.WriteString("---\n")
		buf.Write(doc)
	}
	return buf.Bytes(), nil
}

// stagger shifts a cron schedule by i hours (or i*10 minutes when the hour is not a number).
func stagger(expr string, i int) (string, error) {
	f := strings.Fields(expr)
	if i == 0 {
		return expr, nil
	}
	if h, err := strconv.Atoi(f[1]); err == nil {
		f[1] = strconv.Itoa((h + i) % 24)
		return strings.Join(f, " "), nil
	}
	if m, err := strconv.Atoi(f[0]); err == nil {
		f[0] = strconv.Itoa((m + 10*i) % 60)
		return strings.Join(f, " "), nil
	}
	return "", fmt.Errorf("--schedule %q: give a fixed minute or hour so the nodes can be staggered", expr)
}

// maxCronJobName: a CronJob's name is at most 52 characters, because the Jobs it creates
// append an 11-character suffix and must stay within 63.
const maxCronJobName = 52

// jobName is a valid CronJob name for node, unique per node: a name that is too long keeps
// its first characters and ends in a hash of the whole node name, so two long node names
// with the same prefix do not collide.
func jobName(node string) string {
	n := "certctl-renew-" + strings.ReplaceAll(strings.ToLower(node), ".", "-")
	if len(n) <= maxCronJobName {
		return n
	}
	sum := sha256.Sum256([]byte(node))
	h := hex.EncodeToString(sum[:])[:8]
	return strings.TrimRight(n[:maxCronJobName-len(h)-1], "-") + "-" + h
}
