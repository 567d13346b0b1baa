// Package sandbox writes a realistic kubeadm node tree (PKI, kubeconfigs, static-pod
// manifests, kubelet files, ~/.kube/config) under a directory, freshly generated, with
// chosen faults from the field cases. It is what `certctl sandbox` and the tests use when no
// real cluster is at hand. The tree has the shape kubeadm v1.37.2 writes (init phase certs,
// kubeconfig, control-plane, etcd local, kubelet-start, kubelet-finalize) on its first
// control-plane node, with controlPlaneEndpoint at the load balancer.
package sandbox

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/certctl/certctl/pkg/kubeconfig"
	"github.com/certctl/certctl/pkg/pki"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Fault is a broken state from the field cases.
type Fault string

const (
	// FaultAPIServerNoLBSAN: the apiserver certificate lacks the load-balancer IP (case B).
	FaultAPIServerNoLBSAN Fault = "apiserver-no-lb-san"
	// FaultAPIServerExpired: the apiserver certificate expired yesterday (case C).
	FaultAPIServerExpired Fault = "apiserver-expired"
	// FaultKubeletNoIPSANs: the kubelet serves its self-signed kubelet.crt without IP SANs (case A).
	FaultKubeletNoIPSANs Fault = "kubelet-no-ip-sans"
	// FaultStaleUserKubeconfig: ~/.kube/config holds an older admin certificate than admin.conf (case D).
	FaultStaleUserKubeconfig Fault = "stale-user-kubeconfig"
)

// AllFaults lists every fault.
var AllFaults = []Fault{FaultAPIServerNoLBSAN, FaultAPIServerExpired, FaultKubeletNoIPSANs, FaultStaleUserKubeconfig}

// ParseFaults reads a comma-separated list; "all" and "none" are accepted.
func ParseFaults(s string) ([]Fault, error) {
	s = strings.TrimSpace(s)
	switch s {
	case "", "none":
		return nil, nil
	case "all":
		return AllFaults, nil
	}
	var out []Fault
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		ok := false
		for _, k := range AllFaults {
			if Fault(f) == k {
				out, ok = append(out, k), true
			}
		}
		if !ok {
			var names []string
			for _, k := range AllFaults {
				names = append(names, string(k))
			}
			return nil, fmt.Errorf("unknown fault %q (want all, none or a list of: %s)", f, strings.Join(names, ", "))
		}
	}
	return out, nil
}

// Options shape the tree.
type Options struct {
	Dir          string // the root; the node's /etc/kubernetes lands in Dir/etc/kubernetes
	NodeName     string // default master-1
	NodeIP       net.IP // default 10.2.1.151
	LBIP         net.IP // the load balancer in front of the apiserver, default 10.2.1.139
	KeyAlgorithm string // default rsa-2048 (kubeadm's)
	Home         string // the user's home inside the tree, default /root
	Now          time.Time
	Faults       []Fault
	// LeafValidity is the leaves' lifetime, default one year (kubeadm's).
	LeafValidity time.Duration
}

func (o *Options) defaults() {
	if o.NodeName == "" {
		o.NodeName = "master-1"
	}
	if o.NodeIP == nil {
		o.NodeIP = net.ParseIP("10.2.1.151")
	}
	if o.LBIP == nil {
		o.LBIP = net.ParseIP("10.2.1.139")
	}
	if o.KeyAlgorithm == "" {
		o.KeyAlgorithm = pki.AlgRSA2048
	}
	if o.Home == "" {
		o.Home = "/root"
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if o.LeafValidity == 0 {
		o.LeafValidity = 365 * 24 * time.Hour
	}
}

func (o *Options) has(f Fault) bool {
	for _, x := range o.Faults {
		if x == f {
			return true
		}
	}
	return false
}

type pair struct {
	cert *x509.Certificate
	key  crypto.Signer
}

type gen struct {
	o    Options
	keys chan crypto.Signer
	kerr error
	mu   sync.Mutex
}

// Create writes the tree and returns its layout.
func Create(o Options) (pki.Layout, error) {
	o.defaults()
	if o.Dir == "" {
		return pki.Layout{}, fmt.Errorf("sandbox: no directory given")
	}
	l := pki.NewLayout(pki.LayoutOptions{Root: o.Dir, Home: o.Home})
	if _, err := os.Stat(filepath.Join(l.PKIDir, "ca.crt")); err == nil {
		return l, fmt.Errorf("%s already holds a PKI: choose an empty directory", l.PKIDir)
	}
	g := &gen{o: o}
	if err := g.keysAhead(24); err != nil {
		return l, err
	}
	if err := g.write(l); err != nil {
		return l, err
	}
	return l, nil
}

// keysAhead generates n keys on all cores: RSA generation dominates the run time.
func (g *gen) keysAhead(n int) error {
	g.keys = make(chan crypto.Signer, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, err := pki.GenerateKey(g.o.KeyAlgorithm)
			if err != nil {
				errs <- err
				return
			}
			g.keys <- k
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func (g *gen) key() crypto.Signer {
	select {
	case k := <-g.keys:
		return k
	default:
		k, err := pki.GenerateKey(g.o.KeyAlgorithm)
		if err != nil {
			panic(err) // the algorithm was already accepted by keysAhead
		}
		return k
	}
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n.Add(n, big.NewInt(1))
}

type leafSpec struct {
	cn       string
	orgs     []string
	dns      []string
	ips      []net.IP
	eku      []x509.ExtKeyUsage
	notAfter time.Time
	nb       time.Time
}

func (g *gen) ca(cn string) (pair, error) {
	key := g.key()
	now := g.o.Now
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: cn},
		DNSNames:              []string{cn},
		NotBefore:             now.Add(-5 * time.Minute).UTC(),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour).UTC(),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return pair{}, fmt.Errorf("sign CA %s: %w", cn, err)
	}
	c, err := x509.ParseCertificate(der)
	return pair{c, key}, err
}

func (g *gen) leaf(ca pair, s leafSpec) (pair, error) {
	key := g.key()
	nb := s.nb
	if nb.IsZero() {
		nb = g.o.Now.Add(-5 * time.Minute)
	}
	na := s.notAfter
	if na.IsZero() {
		na = g.o.Now.Add(g.o.LeafValidity)
	}
	ku := x509.KeyUsageDigitalSignature
	if _, rsaKey := key.Public().(interface{ Size() int }); rsaKey {
		ku |= x509.KeyUsageKeyEncipherment
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: s.cn, Organization: s.orgs},
		DNSNames:              s.dns,
		IPAddresses:           s.ips,
		NotBefore:             nb.UTC(),
		NotAfter:              na.UTC(),
		KeyUsage:              ku,
		ExtKeyUsage:           s.eku,
		BasicConstraintsValid: true,
		AuthorityKeyId:        ca.cert.SubjectKeyId,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return pair{}, fmt.Errorf("sign %s: %w", s.cn, err)
	}
	c, err := x509.ParseCertificate(der)
	return pair{c, key}, err
}

var (
	serverAuth = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	clientAuth = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	bothAuth   = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
)

func (g *gen) write(l pki.Layout) error {
	o := g.o
	node, ip := o.NodeName, o.NodeIP
	files := map[string][]byte{}
	putPair := func(base string, p pair) error {
		files[filepath.Join(l.PKIDir, base+".crt")] = pki.EncodeCertificates(p.cert)
		k, err := pki.EncodePrivateKey(p.key)
		files[filepath.Join(l.PKIDir, base+".key")] = k
		return err
	}
	ca, err := g.ca("kubernetes")
	if err != nil {
		return err
	}
	etcdCA, err := g.ca("etcd-ca")
	if err != nil {
		return err
	}
	fpCA, err := g.ca("front-proxy-ca")
	if err != nil {
		return err
	}
	apiIPs := []net.IP{net.ParseIP("10.96.0.1"), ip}
	if !o.has(FaultAPIServerNoLBSAN) {
		apiIPs = append(apiIPs, o.LBIP)
	}
	apiSpec := leafSpec{cn: "kube-apiserver", eku: serverAuth, ips: apiIPs,
		dns: []string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", node}}
	if o.has(FaultAPIServerExpired) {
		apiSpec.nb = o.Now.Add(-366 * 24 * time.Hour)
		apiSpec.notAfter = o.Now.Add(-24 * time.Hour)
	}
	localIPs := []net.IP{ip, net.ParseIP("127.0.0.1"), net.ParseIP("::1")}
	etcdDNS := []string{node, "localhost"}
	sort.Strings(etcdDNS) // kubeadm writes the DNS SANs sorted
	leaves := []struct {
		base string
		ca   pair
		spec leafSpec
	}{
		{"apiserver", ca, apiSpec},
		// No Organization since kubeadm 1.37 (1.35.5, 1.36.1): the apiserver's rights on the
		// kubelets come from the ClusterRoleBinding kubeadm:apiserver-kubelet-client
		// (kubernetes#138957, kubeadm#3310), no longer from kubeadm:cluster-admins.
		{"apiserver-kubelet-client", ca, leafSpec{cn: "kube-apiserver-kubelet-client", eku: clientAuth}},
		{"apiserver-etcd-client", etcdCA, leafSpec{cn: "kube-apiserver-etcd-client", eku: clientAuth}},
		{"front-proxy-client", fpCA, leafSpec{cn: "front-proxy-client", eku: clientAuth}},
		{"etcd/server", etcdCA, leafSpec{cn: node, dns: etcdDNS, ips: localIPs, eku: bothAuth}},
		{"etcd/peer", etcdCA, leafSpec{cn: node, dns: etcdDNS, ips: localIPs, eku: bothAuth}},
		{"etcd/healthcheck-client", etcdCA, leafSpec{cn: "kube-etcd-healthcheck-client", eku: clientAuth}},
	}
	for _, p := range []struct {
		base string
		p    pair
	}{{"ca", ca}, {"etcd/ca", etcdCA}, {"front-proxy-ca", fpCA}} {
		if err := putPair(p.base, p.p); err != nil {
			return err
		}
	}
	for _, lf := range leaves {
		p, err := g.leaf(lf.ca, lf.spec)
		if err != nil {
			return err
		}
		if err := putPair(lf.base, p); err != nil {
			return err
		}
	}
	sa := g.key()
	saKey, err := pki.EncodePrivateKey(sa)
	if err != nil {
		return err
	}
	saPub, err := pki.EncodePublicKey(sa.Public())
	if err != nil {
		return err
	}
	files[filepath.Join(l.PKIDir, "sa.key")] = saKey
	files[filepath.Join(l.PKIDir, "sa.pub")] = saPub

	// Kubeconfigs, with the servers kubeadm 1.35+ writes (ControlPlaneKubeletLocalMode, GA in
	// 1.35): admin.conf and super-admin.conf (and the ~/.kube/config copied from admin.conf)
	// name the controlPlaneEndpoint, the load balancer; kubelet.conf, controller-manager.conf
	// and scheduler.conf name this node's own apiserver, its advertise address.
	server := "https://" + net.JoinHostPort(o.LBIP.String(), "6443")
	localServer := "https://" + net.JoinHostPort(ip.String(), "6443")
	caPEM := pki.EncodeCertificates(ca.cert)
	var admin pair
	for _, kc := range []struct {
		file, user, server string
		spec               leafSpec
	}{
		{"admin.conf", "kubernetes-admin", server, leafSpec{cn: "kubernetes-admin", orgs: []string{"kubeadm:cluster-admins"}, eku: clientAuth}},
		{"super-admin.conf", "kubernetes-super-admin", server, leafSpec{cn: "kubernetes-super-admin", orgs: []string{"system:masters"}, eku: clientAuth}},
		{"controller-manager.conf", "system:kube-controller-manager", localServer, leafSpec{cn: "system:kube-controller-manager", eku: clientAuth}},
		{"scheduler.conf", "system:kube-scheduler", localServer, leafSpec{cn: "system:kube-scheduler", eku: clientAuth}},
	} {
		p, err := g.leaf(ca, kc.spec)
		if err != nil {
			return err
		}
		if kc.file == "admin.conf" {
			admin = p
		}
		data, err := kubeconfigYAML(kc.server, kc.user, caPEM, p)
		if err != nil {
			return err
		}
		files[filepath.Join(l.KubeconfigDir, kc.file)] = data
	}
	userPair := admin
	if o.has(FaultStaleUserKubeconfig) {
		// The copy made at install time, a year ago, with a certificate that expired since.
		userPair, err = g.leaf(ca, leafSpec{cn: "kubernetes-admin", orgs: []string{"kubeadm:cluster-admins"}, eku: clientAuth,
			nb: o.Now.Add(-370 * 24 * time.Hour), notAfter: o.Now.Add(-5 * 24 * time.Hour)})
		if err != nil {
			return err
		}
	}
	userKC, err := kubeconfigYAML(server, "kubernetes-admin", caPEM, userPair)
	if err != nil {
		return err
	}
	files[l.UserKubeconfig] = userKC

	// Kubelet.
	kubeletPKI := filepath.Join(l.KubeletDir, "pki")
	client, err := g.leaf(ca, leafSpec{cn: "system:node:" + node, orgs: []string{"system:nodes"}, eku: clientAuth})
	if err != nil {
		return err
	}
	clientPEM, err := combined(client)
	if err != nil {
		return err
	}
	stamp := o.Now.Add(-30 * 24 * time.Hour)
	clientFile := filepath.Join(kubeletPKI, fmt.Sprintf("kubelet-client-%s.pem", stamp.UTC().Format("2006-01-02-15-04-05")))
	files[clientFile] = clientPEM
	files[filepath.Join(l.KubeconfigDir, "kubelet.conf")] = kubeletConf(localServer, node, caPEM)
	serverTLSBootstrap := !o.has(FaultKubeletNoIPSANs)
	if o.has(FaultKubeletNoIPSANs) {
		// What the kubelet makes itself: a throw-away CA "<host>-ca@<unix>" and a certificate
		// "<host>@<unix>" for the hostname only, the pair written to kubelet.crt / kubelet.key.
		selfCA, err := g.ca(fmt.Sprintf("%s-ca@%d", node, stamp.Unix()))
		if err != nil {
			return err
		}
		srv, err := g.leaf(selfCA, leafSpec{cn: fmt.Sprintf("%s@%d", node, stamp.Unix()), dns: []string{node}, eku: serverAuth,
			nb: stamp, notAfter: stamp.Add(365 * 24 * time.Hour)})
		if err != nil {
			return err
		}
		files[filepath.Join(kubeletPKI, "kubelet.crt")] = pki.EncodeCertificates(srv.cert, selfCA.cert)
		k, err := pki.EncodePrivateKey(srv.key)
		if err != nil {
			return err
		}
		files[filepath.Join(kubeletPKI, "kubelet.key")] = k
	} else {
		srv, err := g.leaf(ca, leafSpec{cn: "system:node:" + node, orgs: []string{"system:nodes"}, dns: []string{node}, ips: []net.IP{ip}, eku: serverAuth})
		if err != nil {
			return err
		}
		pemData, err := combined(srv)
		if err != nil {
			return err
		}
		files[filepath.Join(kubeletPKI, fmt.Sprintf("kubelet-server-%s.pem", stamp.UTC().Format("2006-01-02-15-04-05")))] = pemData
	}
	kcfg, err := kubeletConfig(serverTLSBootstrap)
	if err != nil {
		return err
	}
	files[filepath.Join(l.KubeletDir, "config.yaml")] = []byte(kcfg)
	// kubeadm 1.36+ (NodeLocalCRISocket, GA in 1.36): the CRI socket is in
	// instance-config.yaml, merged into config.yaml; kubeadm-flags.env holds only
	// --hostname-override (no --container-runtime-endpoint, --node-ip or
	// --pod-infra-container-image). The node's IP is the apiserver's --advertise-address.
	files[filepath.Join(l.KubeletDir, "instance-config.yaml")] = []byte("containerRuntimeEndpoint: \"unix:///run/containerd/containerd.sock\"\n")
	files[filepath.Join(l.KubeletDir, "kubeadm-flags.env")] = []byte(fmt.Sprintf("KUBELET_KUBEADM_ARGS=\"--hostname-override=%s\"\n", node))
	mans, err := manifests(node, ip)
	if err != nil {
		return err
	}
	manifestPaths := map[string]bool{}
	for comp, data := range mans {
		files[filepath.Join(l.ManifestsDir, comp)] = []byte(data)
		manifestPaths[filepath.Join(l.ManifestsDir, comp)] = true
	}
	if err := writeAll(files, manifestPaths); err != nil {
		return err
	}
	// The service-account key pair was made when the tree was (Now): its age, which inspect
	// reports, is the tree's.
	for _, name := range []string{"sa.key", "sa.pub"} {
		if err := os.Chtimes(filepath.Join(l.PKIDir, name), o.Now, o.Now); err != nil {
			return fmt.Errorf("date %s: %w", name, err)
		}
	}
	// The kubelet's rotating files are symlinks to the dated PEMs beside them, ABSOLUTE node
	// paths as the kubelet writes them (kubelet-client-current.pem ->
	// /var/lib/kubelet/pki/kubelet-client-<date>.pem): under --root they point outside the
	// tree, and certctl must resolve them under the root.
	link := func(target, name string) error {
		if err := os.Symlink(l.NodePath(target), filepath.Join(kubeletPKI, name)); err != nil {
			return fmt.Errorf("link %s: %w", name, err)
		}
		return nil
	}
	if err := link(clientFile, "kubelet-client-current.pem"); err != nil {
		return err
	}
	if serverTLSBootstrap {
		srvFile := filepath.Join(kubeletPKI, fmt.Sprintf("kubelet-server-%s.pem", stamp.UTC().Format("2006-01-02-15-04-05")))
		if err := link(srvFile, "kubelet-server-current.pem"); err != nil {
			return err
		}
	}
	return nil
}

func combined(p pair) ([]byte, error) {
	k, err := pki.EncodePrivateKey(p.key)
	if err != nil {
		return nil, err
	}
	return append(pki.EncodeCertificates(p.cert), k...), nil
}

func writeAll(files map[string][]byte, manifestPaths map[string]bool) error {
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("create %s: %w", filepath.Dir(p), err)
		}
		// kubeadm writes keys, sa.pub, kubeconfigs and static-pod manifests 0600, certificates
		// and the kubelet's files 0644; the kubelet its PEMs 0600.
		mode := os.FileMode(0o644)
		if strings.HasSuffix(p, ".key") || strings.HasSuffix(p, ".conf") || strings.HasSuffix(p, ".pem") ||
			filepath.Base(p) == "sa.pub" || manifestPaths[p] || filepath.Base(p) == "config" && strings.Contains(p, ".kube") {
			mode = 0o600
		}
		if err := os.WriteFile(p, files[p], mode); err != nil {
			return fmt.Errorf("write %s: %w", p, err)
		}
	}
	return nil
}

func kubeconfigYAML(server, user string, caPEM []byte, p pair) ([]byte, error) {
	certPEM := pki.EncodeCertificates(p.cert)
	keyPEM, err := pki.EncodePrivateKey(p.key)
	if err != nil {
		return nil, err
	}
	ctx := user + "@kubernetes"
	cfg := &clientcmdapi.Config{
		Clusters:       map[string]*clientcmdapi.Cluster{"kubernetes": {Server: server, CertificateAuthorityData: caPEM}},
		AuthInfos:      map[string]*clientcmdapi.AuthInfo{user: {ClientCertificateData: certPEM, ClientKeyData: keyPEM}},
		Contexts:       map[string]*clientcmdapi.Context{ctx: {Cluster: "kubernetes", AuthInfo: user}},
		CurrentContext: ctx,
	}
	return kubeconfig.Marshal(cfg)
}

// kubeletConf is kubelet.conf of the node kubeadm init ran on: written with the node's user
// (system:node:NODE), then pointed at the rotating PEM by the kubelet-finalize phase
// (a joined node's kubelet writes "default-auth"/"default-context" instead).
func kubeletConf(server, node string, caPEM []byte) []byte {
	user := "system:node:" + node
	ctx := user + "@kubernetes"
	cfg := &clientcmdapi.Config{
		Clusters: map[string]*clientcmdapi.Cluster{"kubernetes": {Server: server, CertificateAuthorityData: caPEM}},
		AuthInfos: map[string]*clientcmdapi.AuthInfo{user: {
			ClientCertificate: "/var/lib/kubelet/pki/kubelet-client-current.pem",
			ClientKey:         "/var/lib/kubelet/pki/kubelet-client-current.pem",
		}},
		Contexts:       map[string]*clientcmdapi.Context{ctx: {Cluster: "kubernetes", AuthInfo: user}},
		CurrentContext: ctx,
	}
	data, _ := kubeconfig.Marshal(cfg)
	return data
}

// Describe says what Create wrote at l: the node, where, and the faults planted.
func (o Options) Describe(l pki.Layout) string {
	o.defaults()
	fault := "none"
	if len(o.Faults) > 0 {
		names := make([]string, len(o.Faults))
		for i, f := range o.Faults {
			names[i] = string(f)
		}
		fault = strings.Join(names, ", ")
	}
	return fmt.Sprintf("sandbox node %s (%s) written under %s\nPKI: %s\nfaults: %s", o.NodeName, o.NodeIP, l.Root, l.PKIDir, fault)
}
