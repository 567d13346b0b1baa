package kubeletserving

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	certificatesv1 "k8s.io/api/certificates/v1"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/certctl/certctl/pkg/backup"
	"github.com/certctl/certctl/pkg/csrwait"
	"github.com/certctl/certctl/pkg/fsutil"
	"github.com/certctl/certctl/pkg/inspect"
	"github.com/certctl/certctl/pkg/kubelet"
	"github.com/certctl/certctl/pkg/live"
	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/restart"
	"github.com/certctl/certctl/pkg/txn"
	certv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
)

// KubeletConfigMap is where kubeadm keeps the kubelet configuration new nodes get.
const (
	KubeletConfigMapNamespace = "kube-system"
	KubeletConfigMapName      = "kubelet-config"
	KubeletConfigMapKey       = "kubelet"
)

// EnableOptions drive Enable.
type EnableOptions struct {
	Layout    pki.Layout
	NodeName  string // default: from the kubelet's client certificate (system:node:<name>)
	Client    kubernetes.Interface
	Approve   bool // approve the node's CSR after validation; else print the command
	Cluster   bool // also set it in kube-system/kubelet-config for nodes that join later
	Restart   kubelet.Restarter
	NoRestart bool
	// NewCertificate sets the kubelet's current serving certificate (kubelet-server-current.pem)
	// aside, backed up, so that the restarted kubelet requests a new one (from a new CA).
	NewCertificate bool
	Policy         Policy
	Timeout        time.Duration // for the CSR and the new serving certificate, default 3m
	// ServingAddr is where the kubelet serves (default 127.0.0.1:10250).
	ServingAddr string
	HealthzURL  string
	Out         io.Writer
	Now         func() time.Time
	// NodeIPText names the node's IPs for messages (default: from kubeadm-flags.env's
	// --node-ip, else "its addresses").
	NodeIPText string
	// ApproverManifest, with Cluster, is installed when the in-cluster approver is not there.
	ApproverManifest []byte
}

// EnableResult says what Enable did.
type EnableResult struct {
	ConfigChanged bool
	BackupID      string
	CSR           string
	Decision      *Decision
	Served        *x509.Certificate
	// ApprovalElsewhere: no admin credentials here; the CSR is approved by the in-cluster
	// approver or on a control-plane node.
	ApprovalElsewhere bool
}

// ConfigPath is the kubelet's configuration file.
func ConfigPath(l pki.Layout) string { return filepath.Join(l.KubeletDir, "config.yaml") }

// NodeName reads the node's name from the kubelet's client certificate.
func NodeName(l pki.Layout) (string, error) {
	inv := pki.Load(l, pki.Default())
	for _, name := range []string{"kubelet-client", "kubelet.conf"} {
		if it := inv.Get(name); it != nil && it.Cert() != nil {
			if n, ok := strings.CutPrefix(it.Cert().Subject.CommonName, NodeUserPrefix); ok && n != "" {
				return n, nil
			}
		}
	}
	return "", fmt.Errorf("cannot tell this node's name from %s: give --node-name", filepath.Join(l.KubeletDir, "pki", "kubelet-client-current.pem"))
}

// SetServerTLSBootstrap turns serverTLSBootstrap on in the kubelet's config file (backup
// first, atomic write); it reports whether the file changed.
func SetServerTLSBootstrap(l pki.Layout, now time.Time) (changed bool, backupID string, err error) {
	path := ConfigPath(l)
	data, err := os.ReadFile(path)
	if err != nil {
		return false, "", fmt.Errorf("read kubelet config %s: %w", path, err)
	}
	out, changed, err := EditConfig(data, Field{"serverTLSBootstrap", "true"})
	if err != nil {
		return false, "", fmt.Errorf("%s: %w", path, err)
	}
	if !changed {
		return false, "", nil
	}
	err = writeWithBackup(l, "kubelet-serving enable", map[string][]byte{path: out}, now, &backupID)
	return true, backupID, err
}

// writeWithBackup writes files as one change under the node lock (the lock renew, restore
// and restart take): it recovers any interrupted change, backs the files up, then replaces
// them through the journal (pkg/txn), keeping each file's mode (0600 for keys). A kill at any
// instant leaves all of them old or, after the next certctl run's recovery, all new.
func writeWithBackup(l pki.Layout, command string, files map[string][]byte, now time.Time, backupID *string) error {
	lock, err := txn.AcquireLock(l.StateDir(), 30*time.Second)
	if err != nil {
		return err
	}
	defer lock.Release()
	if err := txn.RecoverLocked(fsutil.OS{}, l, io.Discard); err != nil {
		return err
	}
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	m, err := backup.Create(fsutil.OS{}, l, command, paths, now)
	if err != nil {
		return fmt.Errorf("back up before writing: %w", err)
	}
	*backupID = m.ID
	// Keys first, then certificates, then the files that point at them: a certificate is
	// never on disk without its key, and the kubelet never points at a missing file.
	rank := func(p string) int {
		switch filepath.Ext(p) {
		case ".key":
			return 0
		case ".crt", ".pem":
			return 1
		}
		return 2
	}
	sort.SliceStable(paths, func(i, j int) bool { return rank(paths[i]) < rank(paths[j]) })
	changes := make([]txn.Change, 0, len(paths))
	for _, p := range paths {
		mode := os.FileMode(0o644)
		if st, err := os.Stat(p); err == nil {
			mode = st.Mode().Perm()
		}
		if strings.HasSuffix(p, ".key") {
			mode = 0o600
		}
		changes = append(changes, txn.Change{Path: p, Data: files[p], Mode: mode})
	}
	j := txn.Journal{Kind: command, Started: now.UTC(), Command: "certctl " + command, BackupID: m.ID, Items: paths}
	if err := txn.Replace(fsutil.OS{}, l, j, changes); err != nil {
		return fmt.Errorf("%w (the previous files are in backup %s: certctl restore %s)", err, m.ID, m.ID)
	}
	return nil
}

// SetClusterConfig turns serverTLSBootstrap on in kube-system/kubelet-config, which kubeadm
// hands to nodes that join later; it reports whether the ConfigMap changed.
func SetClusterConfig(ctx context.Context, cs kubernetes.Interface) (bool, error) {
	cm, err := cs.CoreV1().ConfigMaps(KubeletConfigMapNamespace).Get(ctx, KubeletConfigMapName, metav1.GetOptions{})
	if err != nil {
		return false, fmt.Errorf("get ConfigMap %s/%s: %w", KubeletConfigMapNamespace, KubeletConfigMapName, err)
	}
	data, ok := cm.Data[KubeletConfigMapKey]
	if !ok {
		return false, fmt.Errorf("ConfigMap %s/%s has no %q key", KubeletConfigMapNamespace, KubeletConfigMapName, KubeletConfigMapKey)
	}
	out, changed, err := EditConfig([]byte(data), Field{"serverTLSBootstrap", "true"})
	if err != nil {
		return false, fmt.Errorf("ConfigMap %s/%s: %w", KubeletConfigMapNamespace, KubeletConfigMapName, err)
	}
	if !changed {
		return false, nil
	}
	cm.Data[KubeletConfigMapKey] = string(out)
	if _, err := cs.CoreV1().ConfigMaps(KubeletConfigMapNamespace).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		return false, fmt.Errorf("update ConfigMap %s/%s: %w", KubeletConfigMapNamespace, KubeletConfigMapName, err)
	}
	return true, nil
}

// Enable is the write-up's first fix: serverTLSBootstrap on, kubelet restarted, its
// kubelet-serving CSR validated and approved, and the CA-signed certificate really served.
func Enable(ctx context.Context, o EnableOptions) (*EnableResult, error) {
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Timeout == 0 {
		o.Timeout = 3 * time.Minute
	}
	logf := func(format string, a ...any) { fmt.Fprintf(o.Out, format+"\n", a...) }
	if o.NodeIPText == "" {
		o.NodeIPText = "its addresses"
		var ips []string
		for _, ip := range inspect.NodeIPs(o.Layout) {
			ips = append(ips, ip.String())
		}
		if len(ips) > 0 {
			o.NodeIPText = strings.Join(ips, ", ")
		}
	}
	node := o.NodeName
	if node == "" {
		n, err := NodeName(o.Layout)
		if err != nil {
			return nil, err
		}
		node = n
	}
	if o.Cluster && o.Client == nil {
		return nil, errors.New("--cluster needs admin credentials (admin.conf or --kubeconfig): run it on a control-plane node")
	}
	res := &EnableResult{}
	changed, backupID, err := SetServerTLSBootstrap(o.Layout, o.Now())
	if err != nil {
		return nil, err
	}
	res.ConfigChanged, res.BackupID = changed, backupID
	if changed {
		logf("%s: serverTLSBootstrap: true (backup %s)", ConfigPath(o.Layout), backupID)
	} else {
		logf("%s: serverTLSBootstrap is already true", ConfigPath(o.Layout))
	}
	if o.Cluster {
		ch, err := SetClusterConfig(ctx, o.Client)
		if err != nil {
			return res, err
		}
		logf("ConfigMap %s/%s: serverTLSBootstrap %s", KubeletConfigMapNamespace, KubeletConfigMapName, map[bool]string{true: "set to true: nodes that join from now on request CA-signed serving certificates", false: "was already true"}[ch])
		if err := ensureApprover(ctx, o, logf); err != nil {
			return res, err
		}
	}
	if o.NewCertificate {
		id, err := setServingAside(o.Layout, o.Now())
		if err != nil {
			return res, err
		}
		if id != "" {
			logf("kubelet-server-current.pem set aside (backup %s): the kubelet requests a new serving certificate", id)
			res.BackupID = id
		}
	} else if !changed {
		if served := alreadyServing(ctx, o, node); served != nil {
			res.Served = served
			logf("the kubelet already serves a certificate signed by the cluster CA covering %s, valid until %s: nothing to do",
				strings.Join(append(served.DNSNames, ipStrings(served)...), ", "), served.NotAfter.UTC().Format(time.RFC3339))
			return res, nil
		}
	}
	if o.Client == nil {
		// A worker has no admin credentials: do the node's part; the CSR is approved elsewhere.
		if err := restartForCSR(ctx, o, logf); err != nil {
			return res, err
		}
		res.ApprovalElsewhere = true
		logf("no admin credentials on this node (no admin.conf): the kubelet files a kubernetes.io/kubelet-serving CSR as %s%s for %s once restarted; it is approved\n"+
			"  - by the in-cluster approver, if installed (certctl kubelet-serving manifest | kubectl apply -f -), or\n"+
			"  - on a control-plane node: certctl kubelet-serving approve --node %s\n"+
			"until then the kubelet keeps serving its current certificate", NodeUserPrefix, node, o.NodeIPText, node)
		return res, nil
	}
	roots, err := ClusterRoots(o.Layout)
	if err != nil {
		return res, err
	}
	since := o.Now().Add(-time.Minute)
	if err := restartForCSR(ctx, o, logf); err != nil {
		return res, err
	}
	requestor := NodeUserPrefix + node
	logf("waiting for a kubernetes.io/kubelet-serving CSR from %s", requestor)
	csr, err := waitCSR(ctx, o.Client, requestor, since, o.Timeout)
	if err != nil {
		return res, err
	}
	res.CSR = csr.Name
	if csrwait.Pending(csr) {
		if !o.Approve {
			logf("CSR %s is pending; approve it after checking it:\n  certctl kubelet-serving approve %s\n  (or kubectl certificate approve %s)", csr.Name, csr.Name, csr.Name)
			return res, nil
		}
		ds, err := Approve(ctx, o.Client, ApproveOptions{Names: []string{csr.Name}, Policy: o.Policy})
		if err != nil {
			return res, err
		}
		res.Decision = &ds[0]
		logf("CSR %s: %s %s", csr.Name, ds[0].Action, ds[0].Reason)
		if ds[0].Action == ActionSkipped {
			// Decided between our read and our approval: by the in-cluster approver, say.
			now, err := o.Client.CertificatesV1().CertificateSigningRequests().Get(ctx, csr.Name, metav1.GetOptions{})
			if err != nil {
				return res, fmt.Errorf("read CSR %s: %w", csr.Name, err)
			}
			if refused := csrwait.Refused(now); refused != nil {
				return res, refused // denied meanwhile by another approver
			}
			for _, c := range now.Status.Conditions {
				if c.Type == certificatesv1.CertificateApproved {
					logf("CSR %s was approved meanwhile by %s", csr.Name, orUnknown(c.Reason))
					ds[0].Action, ds[0].Reason = ActionApproved, "approved by another approver: "+orUnknown(c.Reason)
				}
			}
		}
		if ds[0].Action != ActionApproved {
			return res, fmt.Errorf("CSR %s from %s was %s: %s", csr.Name, requestor, ds[0].Action, ds[0].Reason)
		}
	}
	n, err := o.Client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		return res, fmt.Errorf("get node %s: %w", node, err)
	}
	logf("waiting for the kubelet to serve the CA-signed certificate")
	// Meanwhile a watch on the CSR: its signer failing it (or someone denying it) ends the
	// wait at once, with the condition, instead of after the timeout.
	wctx, cancel := context.WithCancelCause(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		var refused *csrwait.RefusedError
		if err := csrwait.UntilRefused(wctx, o.Client, csr.Name); errors.As(err, &refused) {
			cancel(refused)
		}
	}()
	var served *x509.Certificate
	err = kubelet.WaitHealthy(wctx, kubelet.WaitOptions{ServingAddr: o.ServingAddr, HealthzURL: o.HealthzURL, Timeout: o.Timeout,
		Serving: func(chain []*x509.Certificate) error {
			if err := coversNode(chain, n, roots, o.Now()); err != nil {
				return err
			}
			served = chain[0]
			return nil
		}}.InPod(o.Layout.KubeletDir))
	cancel(nil) // a refusal seen before keeps its cause
	<-watched
	var refused *csrwait.RefusedError
	if errors.As(context.Cause(wctx), &refused) {
		return res, refused
	}
	if err != nil {
		return res, err
	}
	res.Served = served
	logf("the kubelet serves a certificate signed by the cluster CA covering %s, valid until %s", strings.Join(append(served.DNSNames, ipStrings(served)...), ", "), served.NotAfter.UTC().Format(time.RFC3339))
	return res, nil
}

// ensureApprover makes sure something approves the serving CSRs of nodes that join later:
// the in-cluster approver is there, or is installed from o.ApproverManifest, or the operator
// is told that nothing approves them.
func ensureApprover(ctx context.Context, o EnableOptions, logf func(string, ...any)) error {
	installed, err := ApproverInstalled(ctx, o.Client, ApproverNamespace, ApproverName)
	switch {
	case err != nil:
		logf("warning: cannot tell whether the in-cluster approver is installed: %v", err)
	case installed:
		logf("Deployment %s/%s (the in-cluster approver) approves the serving CSRs of nodes that join later", ApproverNamespace, ApproverName)
	case o.ApproverManifest != nil:
		done, err := Apply(ctx, o.Client, o.ApproverManifest, false)
		if err != nil {
			return fmt.Errorf("install the in-cluster approver: %w", err)
		}
		logf("installed the in-cluster approver: %s", strings.Join(done, ", "))
	default:
		logf("warning: nothing approves the serving CSRs of nodes that join later: their kubelets keep self-signed certificates and kubectl logs/metrics-server fail on them.\n" +
			"  install the in-cluster approver: certctl kubelet-serving enable --cluster --install-approver --image IMAGE\n" +
			"  (or: certctl kubelet-serving manifest --image IMAGE | kubectl apply -f -)")
	}
	return nil
}

// restartForCSR restarts the kubelet so that it requests a serving certificate, or says that
// it must be restarted (--no-restart).
func restartForCSR(ctx context.Context, o EnableOptions, logf func(string, ...any)) error {
	if o.NoRestart {
		logf("%s", kubelet.NoRestartNotice("serverTLSBootstrap and file its serving CSR"))
		return nil
	}
	if o.Restart == nil {
		o.Restart = restart.KubeletRestarter{Layout: o.Layout}
	}
	logf("restarting the kubelet")
	return o.Restart.Restart(ctx)
}

func ipStrings(c *x509.Certificate) []string {
	var out []string
	for _, ip := range c.IPAddresses {
		out = append(out, ip.String())
	}
	return out
}

// coversNode checks a served chain: signed by the cluster CA and covering every address.
func coversNode(chain []*x509.Certificate, n *corev1.Node, roots *x509.CertPool, now time.Time) error {
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return fmt.Errorf("not signed by the cluster CA yet (%v)", err)
	}
	ips, names := nodeAddresses(n)
	for _, ip := range ips {
		if chain[0].VerifyHostname(ip.String()) != nil {
			return fmt.Errorf("does not cover %s", ip)
		}
	}
	for _, name := range names {
		if chain[0].VerifyHostname(name) != nil {
			return fmt.Errorf("does not cover %s", name)
		}
	}
	return nil
}

// ClusterRoots is the cluster CA: ca.crt, or on a worker the CA kubelet.conf trusts.
func ClusterRoots(l pki.Layout) (*x509.CertPool, error) {
	inv := pki.Load(l, pki.Default())
	pool := x509.NewCertPool()
	if ca := inv.Get("ca"); ca != nil && ca.Cert() != nil {
		pool.AddCert(ca.Cert())
		return pool, nil
	}
	if kc := inv.Get("kubelet.conf"); kc != nil && len(kc.KubeconfigCA) > 0 {
		for _, c := range kc.KubeconfigCA {
			pool.AddCert(c)
		}
		return pool, nil
	}
	return nil, fmt.Errorf("no cluster CA found (%s, or certificate-authority-data in kubelet.conf)", filepath.Join(l.PKIDir, "ca.crt"))
}

// waitCSR waits for the newest kubelet-serving CSR of requestor created after since: the
// newest already there, else the first to arrive (a watch). A Denied or Failed one ends the
// wait at once with a *csrwait.RefusedError: it will never be signed.
func waitCSR(ctx context.Context, cs kubernetes.Interface, requestor string, since time.Time, timeout time.Duration) (*certv1.CertificateSigningRequest, error) {
	sel := fields.OneTermEqualSelector("spec.signerName", certv1.KubeletServingSignerName).String()
	// A list first, so that a refused list fails at once (the watch below would retry it).
	if _, err := cs.CertificatesV1().CertificateSigningRequests().List(ctx, metav1.ListOptions{FieldSelector: sel, Limit: 1}); err != nil {
		return nil, fmt.Errorf("list CSRs: %w", err)
	}
	var found *certv1.CertificateSigningRequest
	consider := func(obj any) {
		c, ok := obj.(*certv1.CertificateSigningRequest)
		if ok && c.Spec.Username == requestor && !c.CreationTimestamp.Time.Before(since) &&
			(found == nil || c.CreationTimestamp.After(found.CreationTimestamp.Time)) {
			found = c
		}
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	_, err := watchtools.UntilWithSync(csrwait.Quiet(wctx), csrwait.ListWatch(cs, sel), &certv1.CertificateSigningRequest{},
		func(store cache.Store) (bool, error) {
			for _, obj := range store.List() {
				consider(obj)
			}
			return found != nil, nil
		},
		func(ev watch.Event) (bool, error) {
			if ev.Type == watch.Added || ev.Type == watch.Modified {
				consider(ev.Object)
			}
			return found != nil, nil
		})
	switch {
	case found != nil:
		if refused := csrwait.Refused(found); refused != nil {
			return nil, refused
		}
		return found, nil
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case wait.Interrupted(err):
		return nil, fmt.Errorf("no kubelet-serving CSR from %s within %s: is the kubelet running with serverTLSBootstrap: true? (its log says why)", requestor, timeout)
	}
	return nil, fmt.Errorf("watch CSRs: %w", err)
}

func orUnknown(s string) string {
	if s == "" {
		return "an unnamed approver"
	}
	return s
}

// alreadyServing returns what the kubelet serves when it is already what Enable aims at (signed
// by the cluster CA, covering the node's addresses: the Node's with admin credentials, else
// the ones this node's files name), so that running enable again restarts nothing.
func alreadyServing(ctx context.Context, o EnableOptions, node string) *x509.Certificate {
	roots, err := ClusterRoots(o.Layout)
	if err != nil {
		return nil
	}
	addr := o.ServingAddr
	if addr == "" {
		addr = "127.0.0.1:10250"
	}
	chain, err := live.Served(ctx, addr, "", nil, 3*time.Second)
	if err != nil || len(chain) == 0 {
		return nil
	}
	n := &corev1.Node{}
	if o.Client != nil {
		if n, err = o.Client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{}); err != nil {
			return nil
		}
	} else {
		for _, ip := range inspect.NodeIPs(o.Layout) {
			n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: ip.String()})
		}
		if len(n.Status.Addresses) == 0 {
			return nil
		}
	}
	if coversNode(chain, n, roots, o.Now()) != nil {
		return nil
	}
	return chain[0]
}

// setServingAside backs up and removes kubelet-server-current.pem (the link the kubelet's
// serving certificate manager reads), so that the kubelet requests a new certificate at its
// next start. It returns the backup's ID, "" when there was none.
func setServingAside(l pki.Layout, now time.Time) (string, error) {
	link := filepath.Join(l.KubeletDir, "pki", "kubelet-server-current.pem")
	if _, err := os.Lstat(link); err != nil {
		return "", nil
	}
	m, err := backup.Create(fsutil.OS{}, l, "kubelet-serving enable --new-certificate", []string{link}, now)
	if err != nil {
		return "", fmt.Errorf("back up %s: %w", link, err)
	}
	if err := os.Remove(link); err != nil {
		return "", fmt.Errorf("remove %s: %w (restore: certctl backup restore %s)", link, err, m.ID)
	}
	return m.ID, nil
}
