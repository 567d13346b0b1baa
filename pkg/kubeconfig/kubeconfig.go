// Package kubeconfig reads and writes the credentials in kubeconfig files through client-go's
// clientcmd: which cluster and user the current context uses, the embedded or referenced
// client certificate, and the CA data. It never prints.
package kubeconfig

import (
	"errors"
	"fmt"
	"os"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Credentials is what the current context of a kubeconfig authenticates with.
type Credentials struct {
	Path        string
	Context     string
	ClusterName string
	UserName    string
	Server      string
	CAData      []byte // certificate-authority-data, or the file it names, read
	CAFile      string // certificate-authority, when a path
	CertData    []byte // client-certificate-data
	KeyData     []byte // client-key-data
	CertFile    string // client-certificate (a path, e.g. kubelet-client-current.pem)
	KeyFile     string // client-key
	Token       bool   // the user authenticates with a token or exec plugin instead
}

// Embedded reports whether the client certificate is inside the file (not a path).
func (c *Credentials) Embedded() bool { return len(c.CertData) > 0 }

// Load parses path and returns the credentials of its current context. A file that does not
// parse, or whose current context names a cluster or user that is not there, is an error
// that names the file.
func Load(path string) (*clientcmdapi.Config, *Credentials, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", path, err)
	}
	cfg, err := clientcmd.Load(data)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: not a valid kubeconfig: %w", path, err)
	}
	creds, err := CurrentCredentials(path, cfg)
	if err != nil {
		return nil, nil, err
	}
	return cfg, creds, nil
}

// CurrentCredentials extracts the current context's credentials from cfg.
func CurrentCredentials(path string, cfg *clientcmdapi.Config) (*Credentials, error) {
	ctxName := cfg.CurrentContext
	if ctxName == "" && len(cfg.Contexts) == 1 {
		for n := range cfg.Contexts {
			ctxName = n
		}
	}
	if ctxName == "" {
		return nil, fmt.Errorf("%s: no current-context set", path)
	}
	ctx, ok := cfg.Contexts[ctxName]
	if !ok || ctx == nil {
		return nil, fmt.Errorf("%s: current-context %q is not defined", path, ctxName)
	}
	cluster, ok := cfg.Clusters[ctx.Cluster]
	if !ok || cluster == nil {
		return nil, fmt.Errorf("%s: context %q names cluster %q, which is not defined", path, ctxName, ctx.Cluster)
	}
	user, ok := cfg.AuthInfos[ctx.AuthInfo]
	if !ok || user == nil {
		return nil, fmt.Errorf("%s: context %q names user %q, which is not defined", path, ctxName, ctx.AuthInfo)
	}
	c := &Credentials{
		Path:        path,
		Context:     ctxName,
		ClusterName: ctx.Cluster,
		UserName:    ctx.AuthInfo,
		Server:      cluster.Server,
		CAData:      cluster.CertificateAuthorityData,
		CAFile:      cluster.CertificateAuthority,
		CertData:    user.ClientCertificateData,
		KeyData:     user.ClientKeyData,
		CertFile:    user.ClientCertificate,
		KeyFile:     user.ClientKey,
		Token:       user.Token != "" || user.TokenFile != "" || user.Exec != nil || user.AuthProvider != nil,
	}
	return c, nil
}

// ErrNotEmbedded is returned by SetClientCertificate for a user whose certificate is a path.
var ErrNotEmbedded = errors.New("client certificate is a file reference, not embedded")

// SetClientCertificate returns a copy of cfg whose current user carries certPEM/keyPEM and
// whose current cluster carries caPEM (when not nil). cfg itself is not changed.
func SetClientCertificate(cfg *clientcmdapi.Config, certPEM, keyPEM, caPEM []byte) (*clientcmdapi.Config, error) {
	out := cfg.DeepCopy()
	creds, err := CurrentCredentials("kubeconfig", out)
	if err != nil {
		return nil, err
	}
	user := out.AuthInfos[creds.UserName]
	if len(user.ClientCertificateData) == 0 && user.ClientCertificate != "" {
		return nil, ErrNotEmbedded
	}
	user.ClientCertificateData = certPEM
	user.ClientKeyData = keyPEM
	if caPEM != nil {
		out.Clusters[creds.ClusterName].CertificateAuthorityData = caPEM
		out.Clusters[creds.ClusterName].CertificateAuthority = ""
	}
	return out, nil
}

// Marshal serialises cfg as YAML, as kubeadm writes it.
func Marshal(cfg *clientcmdapi.Config) ([]byte, error) {
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		return nil, fmt.Errorf("serialise kubeconfig: %w", err)
	}
	return data, nil
}
