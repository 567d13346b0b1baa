package kubeletclient

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"
	jws "k8s.io/cluster-bootstrap/token/jws"

	"github.com/certctl/certctl/pkg/pki"
)

// DiscoveryOptions are what `kubeadm token create --print-join-command` prints.
type DiscoveryOptions struct {
	Server       string   // host:port or https://host:port of an apiserver (or its balancer)
	Token        string   // [a-z0-9]{6}.[a-z0-9]{16}
	CACertHashes []string // sha256:<hex of the CA's SubjectPublicKeyInfo>; at least one
	// TLSServerName, when set, is the name the apiserver's certificate is verified for
	// instead of the host of Server.
	TLSServerName string
	Timeout       time.Duration // waiting for the token's signature in cluster-info; default 1m
	Poll          time.Duration // default 1s
}

// ClusterInfo is the verified content of kube-public/cluster-info.
type ClusterInfo struct {
	Server string // the apiserver URL to use (o.Server, normalised)
	// ClusterServer is the server cluster-info itself names (kubeadm's controlPlaneEndpoint).
	ClusterServer string
	CAData        []byte
	CA            []*x509.Certificate
}

// CAHash is the discovery hash of a CA certificate as kubeadm computes it: sha256 of its
// SubjectPublicKeyInfo.
func CAHash(c *x509.Certificate) string {
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func parsePins(hashes []string) (map[string]bool, error) {
	if len(hashes) == 0 {
		return nil, fmt.Errorf("--discovery-token-ca-cert-hash is required: without it anyone between this node and the apiserver could hand it another CA (kubeadm token create --print-join-command prints it)")
	}
	pins := map[string]bool{}
	for _, h := range hashes {
		alg, v, ok := strings.Cut(h, ":")
		if !ok || alg != "sha256" {
			return nil, fmt.Errorf("discovery hash %q: want sha256:<64 hex digits>", h)
		}
		b, err := hex.DecodeString(v)
		if err != nil || len(b) != sha256.Size {
			return nil, fmt.Errorf("discovery hash %q: want sha256:<64 hex digits>", h)
		}
		pins[strings.ToLower(v)] = true
	}
	return pins, nil
}

func normaliseServer(s string) (string, error) {
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return "", fmt.Errorf("--server %q: want HOST:PORT or https://HOST:PORT", s)
	}
	return "https://" + u.Host, nil
}

// validToken: tok has the bootstrap token format (cluster-bootstrap's pattern), the regexp
// compiled when a token is given: cluster-bootstrap's token/util compiles three at package
// init, which cost every certctl command ~4 ms at start (GODEBUG=inittrace=1).
func validToken(tok string) bool {
	return regexp.MustCompile(bootstrapapi.BootstrapTokenPattern).MatchString(tok)
}

// Discover fetches kube-public/cluster-info and trusts it exactly as `kubeadm join` does
// (cmd/kubeadm/app/discovery/token): the first request is anonymous and unverified; the
// kubeconfig in it must carry a valid JWS signature for the token's id made with the token's
// secret (the bootstrap signer in kube-controller-manager adds one per token), must name one
// cluster, and its CA's public key must match one of the pinned hashes; a second request,
// now verifying the apiserver against that CA, must return the same bytes.
func Discover(ctx context.Context, o DiscoveryOptions) (*ClusterInfo, error) {
	if o.Server == "" || o.Token == "" {
		return nil, fmt.Errorf("the worker flow needs --server, --token and --discovery-token-ca-cert-hash together (kubeadm token create --print-join-command prints them)")
	}
	if !validToken(o.Token) {
		return nil, fmt.Errorf("--token: not a bootstrap token (want [a-z0-9]{6}.[a-z0-9]{16}, as kubeadm token create prints)")
	}
	pins, err := parsePins(o.CACertHashes)
	if err != nil {
		return nil, err
	}
	server, err := normaliseServer(o.Server)
	if err != nil {
		return nil, err
	}
	if o.Timeout == 0 {
		o.Timeout = time.Minute
	}
	if o.Poll == 0 {
		o.Poll = time.Second
	}
	id, _, _ := strings.Cut(o.Token, ".")
	insecure := &rest.Config{Host: server, TLSClientConfig: rest.TLSClientConfig{Insecure: true}, Timeout: 10 * time.Second}
	cm, err := fetchClusterInfo(ctx, insecure, id, o)
	if err != nil {
		return nil, err
	}
	kcData, err := VerifyClusterInfo(cm, o.Token)
	if err != nil {
		return nil, err
	}
	cfg, err := clientcmd.Load(kcData)
	if err != nil {
		return nil, fmt.Errorf("the kubeconfig in %s/%s does not parse: %w", metav1.NamespacePublic, bootstrapapi.ConfigMapClusterInfo, err)
	}
	if len(cfg.Clusters) != 1 {
		return nil, fmt.Errorf("the kubeconfig in %s/%s has %d clusters, want exactly one", metav1.NamespacePublic, bootstrapapi.ConfigMapClusterInfo, len(cfg.Clusters))
	}
	info := &ClusterInfo{Server: server}
	for _, c := range cfg.Clusters {
		info.CAData, info.ClusterServer = c.CertificateAuthorityData, c.Server
	}
	cas, err := pki.ParseCertificates("cluster-info CA", info.CAData)
	if err != nil {
		return nil, fmt.Errorf("%s/%s: %w", metav1.NamespacePublic, bootstrapapi.ConfigMapClusterInfo, err)
	}
	var seen []string
	for _, c := range cas {
		h := CAHash(c)
		seen = append(seen, h)
		if pins[strings.TrimPrefix(h, "sha256:")] {
			info.CA = cas
		}
	}
	if info.CA == nil {
		return nil, fmt.Errorf("the cluster CA served by %s has public key hash %s, which is not the --discovery-token-ca-cert-hash given: refusing to trust it (check the hash on a control-plane node: kubeadm token create --print-join-command)", server, strings.Join(seen, ", "))
	}
	secure := &rest.Config{Host: server, TLSClientConfig: rest.TLSClientConfig{CAData: info.CAData, ServerName: o.TLSServerName}, Timeout: 10 * time.Second}
	cm2, err := fetchClusterInfo(ctx, secure, id, o)
	if err != nil {
		return nil, fmt.Errorf("second request verifying %s against the pinned CA: %w", server, err)
	}
	if !bytes.Equal([]byte(cm2.Data[bootstrapapi.KubeConfigKey]), kcData) {
		return nil, fmt.Errorf("the cluster-info read again over TLS verified against the pinned CA differs from the first one: refusing it")
	}
	return info, nil
}

// VerifyClusterInfo checks the JWS signature of cluster-info's kubeconfig for token and
// returns the kubeconfig's bytes.
func VerifyClusterInfo(cm *corev1.ConfigMap, token string) ([]byte, error) {
	id, secret, _ := strings.Cut(token, ".")
	kc, ok := cm.Data[bootstrapapi.KubeConfigKey]
	if !ok || kc == "" {
		return nil, fmt.Errorf("%s/%s has no %q key: this apiserver is not set up for token bootstrapping", metav1.NamespacePublic, bootstrapapi.ConfigMapClusterInfo, bootstrapapi.KubeConfigKey)
	}
	sig, ok := cm.Data[bootstrapapi.JWSSignatureKeyPrefix+id]
	if !ok || sig == "" {
		return nil, fmt.Errorf("token id %q is not valid for this cluster or has expired: create a new one on a control-plane node (kubeadm token create --print-join-command)", id)
	}
	if !jws.DetachedTokenIsValid(sig, kc, id, secret) {
		return nil, fmt.Errorf("the signature of %s/%s does not verify with this token: either the token is wrong or someone altered cluster-info; refusing to trust this apiserver", metav1.NamespacePublic, bootstrapapi.ConfigMapClusterInfo)
	}
	return []byte(kc), nil
}

// fetchClusterInfo polls cluster-info until it carries a signature for token id, as kubeadm
// does (the signer adds it a moment after the token is created).
func fetchClusterInfo(ctx context.Context, rc *rest.Config, id string, o DiscoveryOptions) (*corev1.ConfigMap, error) {
	rc.QPS, rc.Burst = 50, 100
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("client for %s: %w", rc.Host, err)
	}
	var cm *corev1.ConfigMap
	var last error
	// Each request runs on ctx with the client's own timeout, not on the poll's deadline: a
	// request cut short by the deadline would hide the last complete answer's reason.
	err = wait.PollUntilContextTimeout(ctx, o.Poll, o.Timeout, true, func(context.Context) (bool, error) {
		got, err := cs.CoreV1().ConfigMaps(metav1.NamespacePublic).Get(ctx, bootstrapapi.ConfigMapClusterInfo, metav1.GetOptions{})
		if err != nil {
			last = fmt.Errorf("get %s/%s from %s: %w", metav1.NamespacePublic, bootstrapapi.ConfigMapClusterInfo, rc.Host, err)
			return false, nil
		}
		cm = got
		if _, ok := got.Data[bootstrapapi.JWSSignatureKeyPrefix+id]; !ok {
			last = fmt.Errorf("token id %q is not valid for this cluster or has expired (no signature for it in %s/%s after %s): create a new one on a control-plane node (kubeadm token create --print-join-command)", id, metav1.NamespacePublic, bootstrapapi.ConfigMapClusterInfo, o.Timeout)
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		if last == nil {
			last = err
		}
		return nil, last
	}
	return cm, nil
}
