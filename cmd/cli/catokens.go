package cli

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/certctl/certctl/pkg/carotate"
	"github.com/certctl/certctl/pkg/inspect"
	"github.com/certctl/certctl/pkg/kubelet"
	"github.com/certctl/certctl/pkg/noderesult"
	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/restart"
	"github.com/certctl/certctl/pkg/satoken"
)

type caTokensOptions struct {
	*Globals
	Keys    []string
	Refresh bool
	Timeout time.Duration
}

func newCATokensCmd(g *Globals) *cobra.Command {
	o := &caTokensOptions{Globals: g}
	cmd := &cobra.Command{
		Use:   "tokens [--refresh]",
		Short: "List the pods' service-account tokens on this node and the key that signed each; --refresh has the kubelet re-request them",
		Long: `tokens reads the projected service-account tokens the kubelet keeps for the pods of this node
(<kubelet dir>/pods/UID/volumes/kubernetes.io~projected/) and says which key signed each: the
key the apiservers sign with now, or another (the old key of a service-account key rotation,
certctl ca rotate sa). It reads the tokens to check their signatures; it never prints them.

The keys: with --key, the public-key files given (the first is the one the apiservers sign
with; files on this machine, not under --root: a Job mounts them); otherwise this node's
<pki>/sa.pub and, during a rotation, the rotation's other key (<pki>/rotation/sa/old.pub or
new.pub).

--refresh: when a token is not signed by the first key, the kubelet is restarted (its token
cache is in memory: a new kubelet re-requests every pod's token at its next pod sync, in
seconds; no container restarts), then certctl waits until every token is signed by that key
and, once they are, until a minute has passed since the newest was written (client-go in the
pods re-reads its token file once a minute). Run it on every node after phase issue of the
service-account key rotation has run on every control-plane node, before phase drop:
'certctl cluster ca-rotate sa --phase drop' does it on every node first.

Exit code: 0 every token is signed by the first key; 1 some are not (without --refresh);
3 --refresh did not get there within --timeout.`,
		Example: `  # which key signed the pods' tokens on this node
  certctl ca tokens

  # after phase issue on every control-plane node: have the kubelet re-request them now
  certctl ca tokens --refresh

  # on a worker (no sa.pub there), with the new public key copied over
  certctl ca tokens --refresh --key /tmp/sa-new.pub`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context() // ends on SIGINT and SIGTERM (Execute)
			return o.run(ctx)
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&o.Keys, "key", nil, "a public-key file (PEM) tokens may be signed by, not under --root; the first is the one they must be signed by (repeat, or comma-separated)")
	f.BoolVar(&o.Refresh, "refresh", false, "restart the kubelet when a token is not signed by the first key, and wait until every token is")
	f.DurationVar(&o.Timeout, "timeout", 3*time.Minute, "how long --refresh waits for the kubelet's new tokens")
	return cmd
}

// namedKey is a public key and the file it came from.
type namedKey struct {
	path string
	key  crypto.PublicKey
}

func (o *caTokensOptions) keys() ([]namedKey, error) {
	var out []namedKey
	if len(o.Keys) > 0 {
		for _, p := range o.Keys {
			data, err := os.ReadFile(p)
			if err != nil {
				return nil, fmt.Errorf("--key: %w", err)
			}
			k, err := pki.ParsePublicKey(p, data)
			if err != nil {
				return nil, fmt.Errorf("--key: %w", err)
			}
			out = append(out, namedKey{p, k})
		}
		return out, nil
	}
	l := o.Layout()
	cur, path, err := carotate.CurrentSA(l)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no service-account public key on this node (%s): on a worker give the one the apiservers sign with, --key FILE", path)
	}
	if err != nil {
		return nil, err
	}
	out = append(out, namedKey{path, cur})
	p, err := carotate.PathsOf(l, carotate.SA)
	if err != nil {
		return nil, err
	}
	for _, other := range []string{p.OldCert, p.NewCert} {
		data, err := os.ReadFile(other)
		if err != nil {
			continue
		}
		k, err := pki.ParsePublicKey(other, data)
		if err != nil {
			return nil, err
		}
		if carotate.PublicKeySum(k) != carotate.PublicKeySum(cur) {
			out = append(out, namedKey{other, k})
		}
	}
	return out, nil
}

func (o *caTokensOptions) run(ctx context.Context) error {
	keys, err := o.keys()
	if err != nil {
		return err
	}
	ro := satoken.RefreshOptions{Layout: o.Layout(), Want: keys[0].key, Timeout: o.Timeout, Settle: o.Refresh}
	for _, k := range keys[1:] {
		ro.Others = append(ro.Others, k.key)
	}
	nr := noderesult.Result{Command: "ca tokens"}
	if o.Refresh {
		ro.RestartKubelet = func(ctx context.Context) error {
			fmt.Fprintln(o.Streams.Out, "a token is not signed by", keys[0].path+": restarting the kubelet, which re-requests every pod's token")
			if err := (restart.KubeletRestarter{Layout: o.Layout()}).Restart(ctx); err != nil {
				return err
			}
			nr.KubeletRestarted = true
			return kubelet.WaitHealthy(ctx, kubelet.WaitOptions{})
		}
	}
	res, err := satoken.Refresh(ctx, ro)
	if res != nil {
		o.render(keys, res)
	}
	var stale *satoken.StaleTokensError
	switch {
	case errors.As(err, &stale) && !o.Refresh:
		return verdict(inspect.SevWarning, fmt.Errorf("%d token(s) not signed by %s: certctl ca tokens --refresh has the kubelet re-request them", len(stale.Tokens), keys[0].path))
	case err != nil:
		return err
	}
	if res.KubeletRestarted {
		nr.Components = []string{restart.Kubelet}
		fmt.Fprintf(o.Streams.Out, "every token is signed by %s now (%s, the pods' clients have read them)\n", keys[0].path, res.Took.Round(time.Second))
	}
	return noderesult.Write(o.ResultFile, nr)
}

func (o *caTokensOptions) render(keys []namedKey, res *satoken.RefreshResult) {
	w := tabwriter.NewWriter(o.Streams.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "POD\tSIGNED BY\tISSUED\tEXPIRES\tFILE")
	for _, t := range res.Tokens {
		by := "an unknown key"
		if t.Key >= 0 {
			by = filepath.Base(keys[t.Key].path)
		}
		pod := t.Pod
		if pod == "" {
			pod = "uid " + t.PodUID
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", pod, by, stamp(t.IssuedAt), stamp(t.Expiry), t.Path)
	}
	w.Flush()
	fmt.Fprintf(o.Streams.Out, "%d token(s) on this node\n", len(res.Tokens))
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}
