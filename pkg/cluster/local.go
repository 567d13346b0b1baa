package cluster

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/certctl/certctl/pkg/apiretry"
	"github.com/certctl/certctl/pkg/carotate"
	"github.com/certctl/certctl/pkg/kubeconfig"
	"github.com/certctl/certctl/pkg/pki"
)

// Local is the operator's side of a cluster command: the kubeconfigs on the machine it runs on
// that reach the cluster (the one the command used, the user's ~/.kube/config). `cluster
// endpoint` and `cluster ca-rotate` change what they must name or trust, so they are updated
// with the cluster: each change said in the returned lines.
type Local struct {
	Kubeconfigs []string
}

// LocalKubeconfigs is a Local of paths (under root; "" skipped) that exist, once each.
func LocalKubeconfigs(root string, paths ...string) Local {
	var l Local
	for _, p := range paths {
		if p == "" {
			continue
		}
		p = pki.UnderRoot(root, p)
		if _, err := os.Stat(p); err == nil && !slices.Contains(l.Kubeconfigs, p) {
			l.Kubeconfigs = append(l.Kubeconfigs, p)
		}
	}
	return l
}

// MoveServer points the entries of each kubeconfig that use server from at to (cluster
// endpoint, after the cluster moved).
func (l Local) MoveServer(from, to string) ([]string, error) {
	var said []string
	for _, p := range l.Kubeconfigs {
		moved, err := kubeconfig.MoveServerFile(p, from, to)
		if err != nil {
			return said, fmt.Errorf("the cluster moved, but %w", err)
		}
		if len(moved) > 0 {
			said = append(said, fmt.Sprintf("%s: %s now %s", p, strings.Join(moved, ", "), to))
		}
	}
	return said, nil
}

// Trust makes each kubeconfig that trusted oldCA trust trust instead (cluster ca-rotate, after
// a phase).
func (l Local) Trust(oldCA, trust []byte) ([]string, error) {
	var said []string
	for _, p := range l.Kubeconfigs {
		changed, err := kubeconfig.SetCAFile(p, oldCA, trust)
		if err != nil {
			return said, fmt.Errorf("the phase is done on the cluster, but %w", err)
		}
		if len(changed) > 0 {
			said = append(said, fmt.Sprintf("%s: %s trust what the cluster serves now", p, strings.Join(changed, ", ")))
		}
	}
	return said, nil
}

// Reissue gives each kubeconfig a client certificate of the new cluster CA (kept in the
// rotation's Secret in namespace) through a CSR, same user and groups.
func (l Local) Reissue(ctx context.Context, cs kubernetes.Interface, namespace string) ([]string, error) {
	sec, err := cs.CoreV1().Secrets(namespace).Get(ctx, CARotationSecret, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("read the new CA (%s/%s): %w", namespace, CARotationSecret, err)
	}
	certs, err := pki.ParseCertificates(CARotationSecret, sec.Data["ca.crt"])
	if err != nil {
		return nil, err
	}
	var said []string
	for _, p := range l.Kubeconfigs {
		changed, err := ReissueClientCert(ctx, cs, p, certs[0])
		if err != nil {
			return said, fmt.Errorf("the client certificate of %s: %w", p, err)
		}
		if changed {
			said = append(said, p+": a client certificate of the new CA (same user and groups)")
		}
	}
	return said, nil
}

// ClusterCA is the cluster CA rc trusts (PEM): its certificate-authority-data, or the file it
// names.
func ClusterCA(rc *rest.Config) ([]byte, error) {
	if len(rc.CAData) > 0 || rc.CAFile == "" {
		return rc.CAData, nil
	}
	ca, err := os.ReadFile(rc.CAFile)
	if err != nil {
		return nil, fmt.Errorf("read the cluster CA %s: %w", rc.CAFile, err)
	}
	return ca, nil
}

// Clients are the clientset of rc and the pool of the cluster CA it trusts: what the apiservers
// and kubelets certctl checks must serve certificates of. A kubeconfig without a CA is refused.
func Clients(rc *rest.Config) (kubernetes.Interface, *x509.CertPool, error) {
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, nil, err
	}
	ca, err := ClusterCA(rc)
	if err != nil {
		return nil, nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(ca) {
		return nil, nil, errors.New("the kubeconfig names no cluster CA (certificate-authority-data): certctl verifies what the apiservers and kubelets serve against it")
	}
	return cs, roots, nil
}

// Dialer is a command's connection through the kubeconfig Where finds, each request waiting
// out an apiserver that refuses connections or is not ready for up to Wait (apiretry), said on
// Log.
type Dialer struct {
	Where kubeconfig.Where
	Wait  time.Duration
	Log   io.Writer
}

// Dial is the client configuration, the clientset and the roots it trusts (Clients).
func (d Dialer) Dial() (kubernetes.Interface, *x509.CertPool, *rest.Config, error) {
	rc, err := d.Where.Config()
	if err != nil {
		return nil, nil, nil, err
	}
	apiretry.Wrap(rc, apiretry.Options{Wait: d.Wait, Logf: func(format string, a ...any) {
		fmt.Fprintf(d.Log, "certctl: "+format+"\n", a...)
	}})
	cs, roots, err := Clients(rc)
	return cs, roots, rc, err
}

// Connect is Dial as a Connect.
func (d Dialer) Connect() (kubernetes.Interface, *rest.Config, error) {
	cs, _, rc, err := d.Dial()
	return cs, rc, err
}

// Connect makes the command's client, again after its credentials changed.
type Connect func() (kubernetes.Interface, *rest.Config, error)

// CARotateHere runs one phase of a rotation (CARotate, o.CAs resolved) from the machine whose
// kubeconfigs local holds, and keeps them working through it: before drop of the cluster CA
// (the old one stops being trusted) they get client certificates of the new CA, and the
// command goes on with a client made again with them; after issue the same; after every phase
// they trust what the cluster serves. What changed locally is in the report's Local.
func CARotateHere(ctx context.Context, connect Connect, o CARotateOptions, local Local) (*CARotateReport, error) {
	cs, rc, err := connect()
	if err != nil {
		return nil, err
	}
	if o.OldCA, err = ClusterCA(rc); err != nil {
		return nil, err
	}
	o.Config = rc
	clusterCA := slices.Contains(o.CAs, "ca")
	var said []string
	if clusterCA && o.Phase == carotate.PhaseDrop && !o.DryRun && !o.Rollback {
		// CARotate refuses a rotation of etcd-ca while an etcd member is down; drop changes
		// this command's own credentials first, so the check comes before.
		o.defaults()
		if _, err := o.etcdForRotation(ctx, cs, o.CAs, false); err != nil {
			return nil, err
		}
		if said, err = local.Reissue(ctx, cs, o.Namespace); err != nil {
			return nil, err
		}
		if cs, o.Config, err = connect(); err != nil {
			return nil, err
		}
	}
	rep, err := CARotate(ctx, cs, o)
	if rep == nil {
		return nil, err
	}
	rep.Local = said
	if err != nil {
		return rep, err
	}
	if clusterCA && o.Phase == carotate.PhaseIssue && !o.DryRun && !o.Rollback {
		more, err := local.Reissue(ctx, cs, o.Namespace)
		rep.Local = append(rep.Local, more...)
		if err != nil {
			return rep, err
		}
	}
	if len(rep.Trust) > 0 {
		more, err := local.Trust(o.OldCA, rep.Trust)
		rep.Local = append(rep.Local, more...)
		if err != nil {
			return rep, err
		}
	}
	return rep, nil
}
