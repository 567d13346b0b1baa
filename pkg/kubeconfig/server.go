package kubeconfig

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	certutil "k8s.io/client-go/util/cert"

	"github.com/certctl/certctl/pkg/fsutil"
)

// certsIn is the certificates of PEM data, none when it holds none (client-go's parser).
func certsIn(data []byte) []*x509.Certificate {
	certs, _ := certutil.ParseCertsPEM(data)
	return certs
}

// NormalizeServer turns HOST:PORT, HOST (port 6443) or https://HOST[:PORT] into the URL form
// kubeadm writes (https://HOST:PORT), and checks it.
func NormalizeServer(s string) (string, error) {
	in := s
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return "", fmt.Errorf("%q is not an API server address: give HOST:PORT or https://HOST:PORT", in)
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = "6443"
	}
	if host == "" {
		return "", fmt.Errorf("%q has no host: give HOST:PORT", in)
	}
	return "https://" + net.JoinHostPort(host, port), nil
}

// MoveServer points every cluster entry of cfg whose server is from at to, in place, and
// returns the names of the entries it changed (sorted).
func MoveServer(cfg *clientcmdapi.Config, from, to string) []string {
	var changed []string
	for name, c := range cfg.Clusters {
		if c != nil && sameServer(c.Server, from) && c.Server != to {
			c.Server = to
			changed = append(changed, name)
		}
	}
	sort.Strings(changed)
	return changed
}

// Servers lists the distinct servers of cfg's cluster entries (sorted).
func Servers(cfg *clientcmdapi.Config) []string {
	seen := map[string]bool{}
	var out []string
	for _, c := range cfg.Clusters {
		if c != nil && !seen[c.Server] {
			seen[c.Server] = true
			out = append(out, c.Server)
		}
	}
	sort.Strings(out)
	return out
}

func sameServer(a, b string) bool {
	na, err1 := NormalizeServer(a)
	nb, err2 := NormalizeServer(b)
	if err1 != nil || err2 != nil {
		return strings.TrimSuffix(a, "/") == strings.TrimSuffix(b, "/")
	}
	return na == nb
}

// MoveServerFile points the cluster entries of the kubeconfig at path that use from at to,
// and writes it (see rewrite). It returns the entries moved; none: nothing written.
func MoveServerFile(path, from, to string) ([]string, error) {
	return rewrite(path, func(cfg *clientcmdapi.Config) []string { return MoveServer(cfg, from, to) })
}

// rewrite applies edit to the kubeconfig at path and, when edit changed entries, writes the
// file atomically (owner and mode kept) after copying the old one to path.certctl-<time>
// (0600). It returns what edit returned.
func rewrite(path string, edit func(*clientcmdapi.Config) []string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	cfg, err := clientcmd.Load(data)
	if err != nil {
		return nil, fmt.Errorf("%s: not a valid kubeconfig: %w (fix it, then run again)", path, err)
	}
	changed := edit(cfg)
	if len(changed) == 0 {
		return nil, nil
	}
	out, err := Marshal(cfg)
	if err != nil {
		return nil, err
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("stat %s: %w", path, err)
	}
	owner := ownerOf(st)
	bak := path + ".certctl-" + time.Now().UTC().Format("20060102T150405.000Z")
	if err := fsutil.WriteFileAtomicOwned(bak, data, 0o600, owner[0], owner[1]); err != nil {
		return nil, fmt.Errorf("back up %s: %w", path, err)
	}
	if err := fsutil.WriteFileAtomicOwned(path, out, st.Mode().Perm(), owner[0], owner[1]); err != nil {
		return nil, err
	}
	return changed, nil
}

// SetCAFile replaces the certificate-authority-data of every cluster entry of the kubeconfig
// at path that trusts one of the CAs in match (PEM) with ca, and writes the file atomically
// (owner and mode kept) after copying the old one to path.certctl-<time>. It returns the
// entries changed; none: nothing written.
func SetCAFile(path string, match, ca []byte) ([]string, error) {
	want := certsIn(match)
	return rewrite(path, func(cfg *clientcmdapi.Config) []string {
		var changed []string
		for name, c := range cfg.Clusters {
			if c == nil || bytes.Equal(c.CertificateAuthorityData, ca) {
				continue
			}
			if !slices.ContainsFunc(certsIn(c.CertificateAuthorityData), func(x *x509.Certificate) bool { return slices.ContainsFunc(want, x.Equal) }) {
				continue
			}
			c.CertificateAuthorityData = ca
			changed = append(changed, name)
		}
		sort.Strings(changed)
		return changed
	})
}

// WriteClientCertificate puts certPEM/keyPEM into the current user of the kubeconfig at path
// (embedded), written atomically with owner and mode kept, after a copy of the old file
// (path.certctl-<time>, 0600).
func WriteClientCertificate(path string, certPEM, keyPEM []byte) error {
	var failed error
	_, err := rewrite(path, func(cfg *clientcmdapi.Config) []string {
		next, err := SetClientCertificate(cfg, certPEM, keyPEM, nil)
		if err != nil {
			failed = fmt.Errorf("%s: %w", path, err)
			return nil
		}
		*cfg = *next
		return []string{"client certificate"}
	})
	if failed != nil {
		return failed
	}
	return err
}
