package noderotate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/certctl/certctl/pkg/carotate"
	"github.com/certctl/certctl/pkg/kubelet"
	"github.com/certctl/certctl/pkg/noderesult"
	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/restart"
	"github.com/certctl/certctl/pkg/satoken"
)

// TokensOptions drive Tokens.
type TokensOptions struct {
	Layout pki.Layout
	// Keys are public-key files (not under the root) tokens may be signed by, the first the one
	// they must be; none: the node's service-account keys (carotate.TokenKeys).
	Keys []string
	// Refresh restarts the kubelet when a token is not signed by the first key, and waits up to
	// Timeout until every token is.
	Refresh bool
	Timeout time.Duration
	Out     io.Writer
}

// StaleTokensError: tokens not signed by Key were found, and Refresh was off.
type StaleTokensError struct {
	Key   string
	Stale *satoken.StaleTokensError
}

func (e *StaleTokensError) Error() string {
	return fmt.Sprintf("%d token(s) not signed by %s: certctl ca tokens --refresh has the kubelet re-request them", len(e.Stale.Tokens), e.Key)
}

func (e *StaleTokensError) Unwrap() error { return e.Stale }

// Tokens is certctl ca tokens: the pods' service-account tokens on the node and the key that
// signed each, written to Out; with Refresh the kubelet re-requests those of another key. The
// result says whether the kubelet restarted (what the orchestrator's sa drop waits on).
func Tokens(ctx context.Context, o TokensOptions) (noderesult.Result, error) {
	keys, err := carotate.TokenKeys(o.Layout, o.Keys)
	if err != nil && len(o.Keys) > 0 {
		return noderesult.Result{}, fmt.Errorf("--key: %w", err)
	}
	if err != nil {
		return noderesult.Result{}, err
	}
	ro := satoken.RefreshOptions{Layout: o.Layout, Want: keys[0].Key, Timeout: o.Timeout, Settle: o.Refresh}
	names := []string{keys[0].Path}
	for _, k := range keys[1:] {
		ro.Others, names = append(ro.Others, k.Key), append(names, k.Path)
	}
	if o.Refresh {
		ro.RestartKubelet = func(ctx context.Context) error {
			fmt.Fprintln(o.Out, "a token is not signed by", keys[0].Path+": restarting the kubelet, which re-requests every pod's token")
			if err := (restart.KubeletRestarter{Layout: o.Layout}).Restart(ctx); err != nil {
				return err
			}
			return kubelet.WaitHealthy(ctx, kubelet.WaitOptions{}.InPod(o.Layout.KubeletDir))
		}
	}
	res, err := satoken.Refresh(ctx, ro)
	if res != nil {
		res.Render(o.Out, names)
	}
	var stale *satoken.StaleTokensError
	switch {
	case errors.As(err, &stale) && !o.Refresh:
		return noderesult.Result{}, &StaleTokensError{Key: keys[0].Path, Stale: stale}
	case err != nil:
		return noderesult.Result{}, err
	}
	if res.KubeletRestarted {
		fmt.Fprintf(o.Out, "every token is signed by %s now (%s, the pods' clients have read them)\n", keys[0].Path, res.Took.Round(time.Second))
	}
	return noderesult.KubeletOnly("ca tokens", res.KubeletRestarted), nil
}
