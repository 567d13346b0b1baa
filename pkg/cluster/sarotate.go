package cluster

import (
	"context"
	"crypto"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/sync/errgroup"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/certctl/certctl/pkg/carotate"
	"github.com/certctl/certctl/pkg/noderequest"
	"github.com/certctl/certctl/pkg/noderesult"
	"github.com/certctl/certctl/pkg/satoken"
)

// The service-account key pair in cluster ca-rotate: its new pair lives in the rotation Secret
// as sa.pub and sa.key (control-plane nodes only: workers hold no sa.key); before phase drop
// every node's kubelet re-requests the pods' tokens, and legacy token Secrets of the old key
// refuse the drop.

// The rotation Secret's items for sa: the new public key, and the old one (for the
// refresh before trust's rollback, on workers too, which hold no sa.pub).
const (
	saNewItem = "sa.pub"
	saOldItem = "sa-old.pub"
)

// tokenConcurrency bounds the nodes whose tokens are refreshed at once before drop: each restarts
// its kubelet (no container restarts) and waits a minute for the pods' clients to re-read.
const tokenConcurrency = 16

// LegacyTokensError: phase drop of sa refused because legacy service-account token Secrets
// still hold tokens no apiserver will accept after it.
type LegacyTokensError struct {
	Secrets []string // namespace/name
}

func (e *LegacyTokensError) Error() string {
	names := e.Secrets
	if len(names) > 10 {
		names = append(slices.Clone(names[:10]), fmt.Sprintf("and %d more", len(e.Secrets)-10))
	}
	return fmt.Sprintf("%d legacy service-account token Secret(s) (type %s) hold tokens not signed by the new key, and no apiserver would accept them after drop: %s. Have the controller-manager (which signs with the new key since phase issue) re-issue each: kubectl -n NAMESPACE patch secret NAME --type=json -p '[{\"op\":\"remove\",\"path\":\"/data/token\"}]' (its users must read the Secret again), or delete the ones nobody uses; then run drop again",
		len(e.Secrets), corev1.SecretTypeServiceAccountToken, strings.Join(names, ", "))
}

// legacyTokens lists the legacy token Secrets whose token newSA did not sign.
func legacyTokens(ctx context.Context, cs kubernetes.Interface, newSA crypto.PublicKey) ([]string, error) {
	list, err := cs.CoreV1().Secrets("").List(ctx, metav1.ListOptions{FieldSelector: "type=" + string(corev1.SecretTypeServiceAccountToken)})
	if err != nil {
		return nil, fmt.Errorf("list the legacy service-account token Secrets (the old key's tokens in them would stop working after drop): %w", err)
	}
	var out []string
	for _, s := range list.Items {
		tok := s.Data[corev1.ServiceAccountTokenKey]
		if len(tok) == 0 {
			continue // not populated yet: the controller-manager signs it with the new key
		}
		if i, _, _ := satoken.Signer(string(tok), newSA); i != 0 {
			out = append(out, s.Namespace+"/"+s.Name)
		}
	}
	slices.Sort(out)
	return out, nil
}

// refreshTokens runs `certctl ca tokens --refresh` on every node (tokenConcurrency at a time)
// with the public key item of the rotation Secret (saNewItem before drop, saOldItem before
// trust's rollback): each kubelet holding a pod token of another key restarts and re-requests
// them all, and the Job ends once the pods' clients have read them.
func (o *CARotateOptions) refreshTokens(ctx context.Context, cs kubernetes.Interface, nodes []corev1.Node, item string) error {
	if item == saOldItem && !o.secretHasOldSA {
		o.logf("the rotation Secret holds no %s (made by an older certctl): the pods' tokens are not re-requested with the old key; a node whose pods hold tokens of the new key refuses the rollback", saOldItem)
		return nil
	}
	which := map[string]string{saNewItem: "the new service-account key before drop", saOldItem: "the old service-account key before trust's rollback"}[item]
	o.logf("every node's pod tokens re-requested with %s (%d nodes, %d at a time)", which, len(nodes), tokenConcurrency)
	var g errgroup.Group
	g.SetLimit(tokenConcurrency)
	for _, n := range nodes {
		g.Go(func() error {
			start := time.Now()
			res, err := o.Run(ctx, cs, JobSpec{Node: n.Name, Component: "tokens", Privileged: true,
				Secret: CARotationSecret, SecretItems: []string{item},
				Request: noderequest.Request{Op: noderequest.CATokens, File: SecretDir + "/" + item, Result: true}}, 0)
			if err != nil {
				return fmt.Errorf("%s: the pods' tokens: %w", n.Name, err)
			}
			nr, err := noderesult.Parse(res.Termination)
			if err != nil {
				return fmt.Errorf("certctl ca tokens on %s: %w", n.Name, err)
			}
			if nr.KubeletRestarted {
				if err := waitKubeletReports(ctx, cs, n.Name, start, o.ReadyTimeout); err != nil {
					return err
				}
			}
			o.logf("%s: every pod token signed by %s (%s; kubelet restarted: %v)", n.Name, item, time.Since(start).Round(100*time.Millisecond), nr.KubeletRestarted)
			return nil
		})
	}
	return g.Wait()
}

// nodeClient is a client of one control-plane node's apiserver (addr), with the command's
// credentials (and the server name it verifies, when its kubeconfig sets one), trusting bundle.
func (o *CARotateOptions) nodeClient(addr string, bundle []byte) (kubernetes.Interface, error) {
	cfg := rest.CopyConfig(o.Config)
	cfg.Host = "https://" + addr
	cfg.TLSClientConfig.CAData, cfg.TLSClientConfig.CAFile = bundle, ""
	cfg.Timeout = 5 * time.Second
	return kubernetes.NewForConfig(cfg)
}

// jwksKeys are the keys a node's apiserver publishes at /openid/v1/jwks.
func jwksKeys(ctx context.Context, cs kubernetes.Interface) ([]crypto.PublicKey, error) {
	data, err := cs.CoreV1().RESTClient().Get().AbsPath("/openid/v1/jwks").DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("GET /openid/v1/jwks: %w", err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("/openid/v1/jwks: %w", err)
	}
	var out []crypto.PublicKey
	for _, k := range set.Keys {
		out = append(out, k.Key)
	}
	return out, nil
}

// verifySA checks a control-plane node's apiserver (addr) after a phase of sa: after trust it
// publishes the new key beside the old, from issue on it signs tokens with the new key, after
// drop it publishes the new key alone.
func (o *CARotateOptions) verifySA(ctx context.Context, addr string, bundle []byte) error {
	if o.Config == nil || o.newSA == nil || o.Rollback {
		return nil
	}
	cs, err := o.nodeClient(addr, bundle)
	if err != nil {
		return err
	}
	want := carotate.PublicKeySum(o.newSA)
	var last string
	// Each request runs on ctx with the client's own timeout, not on the poll's deadline: a
	// request cut short by the deadline would hide the last complete answer.
	err = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, o.ReadyTimeout, true, func(context.Context) (bool, error) {
		keys, err := jwksKeys(ctx, cs)
		if err != nil {
			last = err.Error()
			return false, nil
		}
		has := slices.ContainsFunc(keys, func(k crypto.PublicKey) bool { return carotate.PublicKeySum(k) == want })
		switch {
		case !has:
			last = fmt.Sprintf("/openid/v1/jwks publishes %d key(s), not the new one", len(keys))
			return false, nil
		case o.Phase == "drop" && len(keys) != 1:
			last = fmt.Sprintf("/openid/v1/jwks publishes %d keys, want the new one alone", len(keys))
			return false, nil
		case o.Phase == "trust" && len(keys) < 2:
			last = "/openid/v1/jwks publishes the new key alone, want old + new"
			return false, nil
		}
		if o.Phase == "trust" {
			return true, nil
		}
		// From issue on the apiserver signs with the new key: a token of the namespace's
		// default service account, never used, says which key signed it.
		secs := int64(600)
		tr, err := cs.CoreV1().ServiceAccounts(o.Namespace).CreateToken(ctx, "default",
			&authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{ExpirationSeconds: &secs}}, metav1.CreateOptions{})
		if err != nil {
			last = "a token request: " + err.Error()
			return false, nil
		}
		if i, _, err := satoken.Signer(tr.Status.Token, o.newSA); i != 0 {
			last = fmt.Sprintf("signs tokens with another key than the new one (%v)", err)
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("apiserver %s after phase %s of sa within %s: %s", addr, o.Phase, o.ReadyTimeout, last)
	}
	return nil
}
