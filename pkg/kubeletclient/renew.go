package kubeletclient

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/certctl/certctl/pkg/fsutil"
	"github.com/certctl/certctl/pkg/kubeconfig"
	"github.com/certctl/certctl/pkg/kubelet"
	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/restart"
)

// Modes of Renew.
const (
	ModeCA        = "ca"        // signed here with the cluster CA
	ModeBootstrap = "bootstrap" // the kubelet requests it with a bootstrap token
	ModeInstall   = "install"   // a file issued elsewhere
)

// RenewOptions drive Renew and InstallFile.
type RenewOptions struct {
	Layout       pki.Layout
	Node         string // default: the old certificate's CN, else kubelet.conf
	Validity     time.Duration
	KeyAlgorithm string

	// Worker flow: what `kubeadm token create --print-join-command` prints.
	Discovery DiscoveryOptions

	Restart   kubelet.Restarter // default systemd
	NoRestart bool
	NoWait    bool // do not wait for the new credentials and Node Ready
	// Client reads the Node (an admin's); nil: the node's own new credentials are used.
	Client kubernetes.Interface
	// Server and TLSServerName override kubelet.conf's server for the node's own client
	// (tests, or a node that reaches the apiserver under another address).
	Server, TLSServerName string
	Timeout               time.Duration // for the kubelet's new credentials and Node Ready; default 2m
	Out                   io.Writer
	Now                   func() time.Time
}

// RenewResult says what happened.
type RenewResult struct {
	Mode     string
	Node     string
	Path     string // the new kubelet-client-<time>.pem (ModeCA, ModeInstall)
	Previous string
	BackupID string
	Cert     *x509.Certificate
	Ready    bool          // the Node was seen Ready after the change
	Elapsed  time.Duration // from the start to Ready
}

func (o *RenewOptions) defaults() {
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Timeout == 0 {
		o.Timeout = 2 * time.Minute
	}
	if o.Restart == nil {
		o.Restart = restart.KubeletRestarter{Layout: o.Layout}
	}
}

// Renew repairs the kubelet's client certificate. With a token (o.Discovery.Token) it runs
// the worker flow (RenewBootstrap); otherwise it signs one with the cluster CA, which needs
// ca.key on this node.
func Renew(ctx context.Context, o RenewOptions) (*RenewResult, error) {
	o.defaults()
	if o.Discovery.Token != "" || o.Discovery.Server != "" {
		return renewBootstrap(ctx, o)
	}
	// The CA first: on a worker (no ca.key) its refusal says what to run instead.
	ca, err := pki.SigningCA(o.Layout, noCAKey)
	if err != nil {
		return nil, err
	}
	start := o.Now()
	node, err := NodeName(o.Layout, o.Node)
	if err != nil {
		return nil, err
	}
	issued, err := Issue(IssueOptions{Layout: o.Layout, Node: node, Validity: o.Validity, KeyAlgorithm: o.KeyAlgorithm, Now: start, CA: ca})
	if err != nil {
		return nil, err
	}
	if issued.Capped {
		fmt.Fprintf(o.Out, "note: the validity was cut at the cluster CA's expiry (%s)\n", issued.Cert.NotAfter.UTC().Format(time.RFC3339))
	}
	res, err := installAndRestart(ctx, o, issued.Pair, node, "kubelet-client renew", start)
	if res != nil {
		res.Mode = ModeCA
	}
	return res, err
}

// InstallFile installs a kubelet client certificate issued elsewhere (certctl kubelet-client
// issue on a control-plane node): the pair must verify, be this node's and be signed by the
// cluster CA kubelet.conf trusts.
func InstallFile(ctx context.Context, o RenewOptions, path string) (*RenewResult, error) {
	o.defaults()
	start := o.Now()
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	pair, err := ParsePair(path, data)
	if err != nil {
		return nil, fmt.Errorf("%w: give the file 'certctl kubelet-client issue NODE -o FILE' wrote (certificate and key)", err)
	}
	node, err := NodeName(o.Layout, o.Node)
	if err != nil {
		return nil, err
	}
	roots, _, err := ClusterRoots(o.Layout)
	if err != nil {
		return nil, err
	}
	if err := CheckPair(path, pair, node, roots, start); err != nil {
		return nil, err
	}
	res, err := installAndRestart(ctx, o, pair, node, "kubelet-client install", start)
	if res != nil {
		res.Mode = ModeInstall
	}
	return res, err
}

func installAndRestart(ctx context.Context, o RenewOptions, pair *Pair, node, command string, start time.Time) (*RenewResult, error) {
	in, err := Install(o.Layout, pair, command, start)
	res := &RenewResult{Node: node, Cert: pair.Cert}
	if in != nil {
		res.Path, res.BackupID, res.Previous = in.Path, in.BackupID, in.Previous
	}
	if err != nil {
		return res, err
	}
	fmt.Fprintf(o.Out, "wrote %s (%s, valid until %s), backup %s\n", in.Path, pair.Cert.Subject.CommonName, pair.Cert.NotAfter.UTC().Format(time.RFC3339), in.BackupID)
	fmt.Fprintf(o.Out, "%s -> %s\n", CurrentPath(o.Layout), o.Layout.NodePath(in.Path))
	if in.KubeletConfChanged {
		fmt.Fprintf(o.Out, "%s: the kubelet's user now reads %s\n", KubeletConfPath(o.Layout), o.Layout.NodePath(CurrentPath(o.Layout)))
	}
	if err := restartKubelet(ctx, o, "the new client certificate"); err != nil {
		return res, err
	}
	return res, waitReady(ctx, o, res, start)
}

func restartKubelet(ctx context.Context, o RenewOptions, what string) error {
	if o.NoRestart {
		fmt.Fprintln(o.Out, kubelet.NoRestartNotice(what))
		return nil
	}
	fmt.Fprintln(o.Out, "restarting the kubelet")
	if err := o.Restart.Restart(ctx); err != nil {
		return fmt.Errorf("%w (the files are in place: restart the kubelet yourself, or rerun with --no-restart)", err)
	}
	return nil
}

// waitReady waits until the Node is Ready again, with o.Client or the node's own new
// credentials.
func waitReady(ctx context.Context, o RenewOptions, res *RenewResult, start time.Time) error {
	if o.NoWait {
		return nil
	}
	cs := o.Client
	if cs == nil {
		c, err := NodeClient(o.Layout, o.Server, o.TLSServerName)
		if err != nil {
			return fmt.Errorf("cannot check that node %s is Ready: %w", res.Node, err)
		}
		cs = c
	}
	fmt.Fprintf(o.Out, "waiting for node %s to be Ready\n", res.Node)
	if err := kubelet.WaitNodeReady(ctx, cs, kubelet.NodeReadyOptions{Node: res.Node, Since: start, Timeout: o.Timeout}); err != nil {
		return err
	}
	res.Ready, res.Elapsed = true, o.Now().Sub(start)
	fmt.Fprintf(o.Out, "node %s is Ready (%.1fs)\n", res.Node, res.Elapsed.Seconds())
	return nil
}

// NodeClient is a client authenticated as this node's kubelet: kubelet.conf with its
// certificate paths resolved under the layout's root. server and tlsServerName, when set,
// replace kubelet.conf's.
func NodeClient(l pki.Layout, server, tlsServerName string) (*kubernetes.Clientset, error) {
	path := KubeletConfPath(l)
	_, creds, err := kubeconfig.Load(path)
	if err != nil {
		return nil, err
	}
	rc := &rest.Config{Host: creds.Server, Timeout: 10 * time.Second}
	rc.CAData = creds.CAData
	if len(rc.CAData) == 0 && creds.CAFile != "" {
		if rc.CAData, err = os.ReadFile(pki.UnderRoot(l.Root, creds.CAFile)); err != nil {
			return nil, fmt.Errorf("%s: read CA: %w", path, err)
		}
	}
	rc.CertData, rc.KeyData = creds.CertData, creds.KeyData
	if creds.CertFile != "" {
		cp := pki.FollowLink(l.Root, pki.UnderRoot(l.Root, creds.CertFile))
		if rc.CertData, err = os.ReadFile(cp); err != nil {
			return nil, fmt.Errorf("%s: read client certificate: %w", path, err)
		}
		kp := cp
		if creds.KeyFile != "" {
			kp = pki.FollowLink(l.Root, pki.UnderRoot(l.Root, creds.KeyFile))
		}
		if rc.KeyData, err = os.ReadFile(kp); err != nil {
			return nil, fmt.Errorf("%s: read client key: %w", path, err)
		}
	}
	if server != "" {
		rc.Host = server
	}
	if tlsServerName != "" {
		rc.ServerName = tlsServerName
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cs, nil
}

// BootstrapKubeconfig is what kubeadm join writes to bootstrap-kubelet.conf: the verified
// cluster CA, the server and the bootstrap token.
func BootstrapKubeconfig(server string, caData []byte, token string) ([]byte, error) {
	const cluster, user = "kubernetes", "tls-bootstrap-token-user"
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[cluster] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caData}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{Token: token}
	ctxName := user + "@" + cluster
	cfg.Contexts[ctxName] = &clientcmdapi.Context{Cluster: cluster, AuthInfo: user}
	cfg.CurrentContext = ctxName
	return kubeconfig.Marshal(cfg)
}

// renewBootstrap is the worker flow: verify the cluster as kubeadm join does, write
// bootstrap-kubelet.conf, set kubelet.conf and the current certificate aside (backup first),
// restart the kubelet so it requests a new client certificate with the token (the cluster
// approves it as for a join), wait for it, remove the token file, wait for Node Ready.
func renewBootstrap(ctx context.Context, o RenewOptions) (*RenewResult, error) {
	start := o.Now()
	node, err := NodeName(o.Layout, o.Node)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(o.Out, "verifying the cluster CA served by %s against the discovery hash\n", o.Discovery.Server)
	info, err := Discover(ctx, o.Discovery)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(o.Out, "cluster-info is signed for the token and its CA matches %s\n", CAHash(info.CA[0]))
	boot, err := BootstrapKubeconfig(info.Server, info.CAData, o.Discovery.Token)
	if err != nil {
		return nil, err
	}
	m, prev, err := backupKubeletFiles(o.Layout, "kubelet-client renew (bootstrap)", start)
	if err != nil {
		return nil, err
	}
	res := &RenewResult{Mode: ModeBootstrap, Node: node, BackupID: m.ID, Previous: prev}
	fail := func(err error) (*RenewResult, error) {
		return res, fmt.Errorf("%w (the previous files are in backup %s: certctl restore %s)", err, m.ID, m.ID)
	}
	if err := fsutil.WriteFileAtomic(BootstrapConfPath(o.Layout), boot, 0o600); err != nil {
		return fail(err)
	}
	// The kubelet bootstraps only when kubelet.conf is missing or its certificate unusable:
	// set both aside so it does, whatever state they were in.
	for _, p := range []string{KubeletConfPath(o.Layout), CurrentPath(o.Layout)} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fail(fmt.Errorf("set %s aside: %w", p, err))
		}
		if err := fsutil.SyncDir(filepath.Dir(p)); err != nil {
			return fail(err)
		}
	}
	fmt.Fprintf(o.Out, "wrote %s; set %s and %s aside (backup %s)\n", BootstrapConfPath(o.Layout), KubeletConfPath(o.Layout), CurrentPath(o.Layout), m.ID)
	if err := restartKubelet(ctx, o, "bootstrap-kubelet.conf and request a new client certificate"); err != nil {
		return fail(err)
	}
	if o.NoWait {
		fmt.Fprintf(o.Out, "not waiting: once the kubelet has written a new %s, remove %s (it holds the token)\n", KubeletConfPath(o.Layout), BootstrapConfPath(o.Layout))
		return res, nil
	}
	fmt.Fprintln(o.Out, "waiting for the kubelet to obtain its new client certificate")
	roots := x509.NewCertPool()
	for _, c := range info.CA {
		roots.AddCert(c)
	}
	var last error
	err = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, o.Timeout, true, func(context.Context) (bool, error) {
		cert, err := currentValid(o.Layout, node, roots, o.Now())
		if err != nil {
			last = err
			return false, nil
		}
		res.Cert = cert
		return true, nil
	})
	if err != nil {
		if last == nil {
			last = err
		}
		return fail(fmt.Errorf("the kubelet did not obtain a new client certificate within %s: %w (its log says why; is its CSR approved? kubectl get csr)", o.Timeout, last))
	}
	res.Path = pki.FollowLink(o.Layout.Root, CurrentPath(o.Layout))
	if err := os.Remove(BootstrapConfPath(o.Layout)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return res, fmt.Errorf("remove %s (it holds the token): %w", BootstrapConfPath(o.Layout), err)
	}
	fmt.Fprintf(o.Out, "the kubelet has a new client certificate (valid until %s); removed %s\n", res.Cert.NotAfter.UTC().Format(time.RFC3339), BootstrapConfPath(o.Layout))
	return res, waitReady(ctx, o, res, start)
}

// currentValid reads the certificate kubelet.conf uses and checks it is this node's, valid
// now and signed by roots.
func currentValid(l pki.Layout, node string, roots *x509.CertPool, now time.Time) (*x509.Certificate, error) {
	_, creds, err := kubeconfig.Load(KubeletConfPath(l))
	if err != nil {
		return nil, err
	}
	data := append(append([]byte(nil), creds.CertData...), creds.KeyData...)
	name := KubeletConfPath(l)
	if creds.CertFile != "" {
		name = pki.FollowLink(l.Root, pki.UnderRoot(l.Root, creds.CertFile))
		if data, err = os.ReadFile(name); err != nil {
			return nil, fmt.Errorf("read %s: %w", name, err)
		}
	}
	pair, err := ParsePair(name, data)
	if err != nil {
		return nil, err
	}
	if err := CheckPair(name, pair, node, roots, now); err != nil {
		return nil, err
	}
	return pair.Cert, nil
}
