// Package satoken reads service-account tokens (JWTs signed with the cluster's service-account
// key, sa.key) and says which public key signed them: the projected tokens the kubelet writes
// into the pods of this node, and any token given as a string (a legacy token Secret's). It is
// what the service-account key rotation (pkg/carotate, "sa") decides with: the old public key
// may leave the apiservers only when no token in use is signed by the old private key.
//
// Signatures are checked with go-jose, the library the apiserver itself uses.
package satoken

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/certctl/certctl/pkg/pki"
)

// Algorithms are the JWS algorithms the apiserver signs service-account tokens with (RSA and
// ECDSA keys, as kube-apiserver's --service-account-signing-key-file accepts).
var Algorithms = []jose.SignatureAlgorithm{jose.RS256, jose.ES256, jose.ES384, jose.ES512}

// Claims are the claims of a service-account token that say what it is for.
type Claims struct {
	Issuer    string    // iss
	Subject   string    // system:serviceaccount:NS:NAME
	IssuedAt  time.Time // iat; zero in legacy tokens
	Expiry    time.Time // exp; zero in legacy tokens (they never expire)
	Pod       string    // NS/NAME of the pod a projected token is bound to; "" otherwise
	Legacy    bool      // a legacy Secret-based token (kubernetes.io/serviceaccount/... claims)
	KeyID     string    // the kid header: the apiserver's id of the signing key
	Algorithm string
}

// k8sClaims are the kubernetes.io claims of a bound token.
type k8sClaims struct {
	Namespace string `json:"namespace"`
	Pod       *struct {
		Name string `json:"name"`
	} `json:"pod,omitempty"`
}

type allClaims struct {
	jwt.Claims
	K8s         *k8sClaims `json:"kubernetes.io,omitempty"`
	LegacySAKey string     `json:"kubernetes.io/serviceaccount/service-account.name,omitempty"`
}

// ErrNotSigned: the token verifies with none of the keys given.
var ErrNotSigned = errors.New("signed by none of the keys given")

// Signer returns the index in keys of the public key that signed token, and its claims. A
// token that is not a JWT is an error; a JWT none of keys verifies is ErrNotSigned (wrapped),
// with its claims read unverified.
func Signer(token string, keys ...crypto.PublicKey) (int, Claims, error) {
	tok, err := jwt.ParseSigned(strings.TrimSpace(token), Algorithms)
	if err != nil {
		return -1, Claims{}, fmt.Errorf("not a service-account token: %w", err)
	}
	var c Claims
	if len(tok.Headers) > 0 {
		c.KeyID, c.Algorithm = tok.Headers[0].KeyID, tok.Headers[0].Algorithm
	}
	for i, k := range keys {
		var all allClaims
		if tok.Claims(k, &all) == nil {
			fill(&c, all)
			return i, c, nil
		}
	}
	var all allClaims
	if err := tok.UnsafeClaimsWithoutVerification(&all); err == nil {
		fill(&c, all)
	}
	return -1, c, ErrNotSigned
}

func fill(c *Claims, a allClaims) {
	c.Subject = a.Subject
	c.Issuer = a.Issuer
	if a.IssuedAt != nil {
		c.IssuedAt = a.IssuedAt.Time()
	}
	if a.Expiry != nil {
		c.Expiry = a.Expiry.Time()
	}
	if a.K8s != nil && a.K8s.Pod != nil {
		c.Pod = a.K8s.Namespace + "/" + a.K8s.Pod.Name
	}
	c.Legacy = a.LegacySAKey != ""
}

// File is one projected service-account token the kubelet keeps for a pod on this node.
type File struct {
	Path   string // on this machine (under the root)
	PodUID string
	Token  string
}

// Projected lists the projected service-account tokens of the pods on the node at l: every
// file of the kubelet's projected volumes (<kubelet dir>/pods/UID/volumes/kubernetes.io~projected/
// VOLUME/) that holds a JWT. The kubelet writes them through its ..data link; the link names
// are read, not the timestamped directories behind them.
func Projected(l pki.Layout) ([]File, error) {
	pods := filepath.Join(l.Resolve(l.KubeletDir), "pods")
	uids, err := os.ReadDir(pods)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", pods, err)
	}
	var out []File
	for _, u := range uids {
		vols := filepath.Join(pods, u.Name(), "volumes", "kubernetes.io~projected")
		dirs, err := os.ReadDir(vols)
		if err != nil {
			continue // a pod without projected volumes, or one being torn down
		}
		for _, d := range dirs {
			dir := filepath.Join(vols, d.Name())
			files, err := os.ReadDir(dir)
			if err != nil {
				continue
			}
			for _, f := range files {
				if strings.HasPrefix(f.Name(), "..") {
					continue
				}
				p := filepath.Join(dir, f.Name())
				data, err := os.ReadFile(p)
				if err != nil || !looksLikeJWT(data) {
					continue
				}
				out = append(out, File{Path: p, PodUID: u.Name(), Token: strings.TrimSpace(string(data))})
			}
		}
	}
	slices.SortFunc(out, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
	return out, nil
}

// looksLikeJWT: three base64url parts, the first a JSON header (eyJ is `{"`).
func looksLikeJWT(data []byte) bool {
	s := strings.TrimSpace(string(data))
	return len(s) < 64<<10 && strings.HasPrefix(s, "eyJ") && strings.Count(s, ".") == 2 && !strings.ContainsAny(s, " \n\t")
}

// Token is a projected token of the node with the key that signed it.
type Token struct {
	File
	Claims
	// Key is the index of the key that signed it in the keys given to Survey; -1: none.
	Key int
}

// Survey reads every projected token of the node at l and says which of keys signed each.
func Survey(l pki.Layout, keys ...crypto.PublicKey) ([]Token, error) {
	files, err := Projected(l)
	if err != nil {
		return nil, err
	}
	out := make([]Token, 0, len(files))
	for _, f := range files {
		i, c, err := Signer(f.Token, keys...)
		if err != nil && !errors.Is(err, ErrNotSigned) {
			continue // not a token after all
		}
		out = append(out, Token{File: f, Claims: c, Key: i})
	}
	return out, nil
}

// Name is how a token is named to a person: its pod (or pod UID) and file.
func (t Token) Name() string {
	who := t.Pod
	if who == "" {
		who = "pod " + t.PodUID
	}
	return fmt.Sprintf("%s (%s)", who, t.Path)
}

// ClientReread is how long after a new token file a client in the pod may still send the
// token it read before: client-go re-reads its token file once a minute (and at once on a 401).
const ClientReread = time.Minute

// RefreshOptions drive Refresh.
type RefreshOptions struct {
	Layout pki.Layout
	// Want is the key every projected token must be signed by (the key the apiservers sign
	// with now); Others are keys a token may be signed by (the old key), to name them.
	Want   crypto.PublicKey
	Others []crypto.PublicKey
	// RestartKubelet restarts this node's kubelet: its token cache is in memory, so a new
	// kubelet re-requests every pod's token at its next sync (seconds), signed by Want.
	RestartKubelet func(ctx context.Context) error
	Timeout        time.Duration // default 3m
	Poll           time.Duration // default 1s
	// Settle: wait until ClientReread has passed since the newest token was issued, so that
	// the pods' clients have read them (default true through Refresh's callers).
	Settle bool
	Now    func() time.Time
}

// RefreshResult says what Refresh found and did.
type RefreshResult struct {
	Tokens           []Token // as they are at the end
	Stale            int     // tokens not signed by Want at the start
	KubeletRestarted bool
	Took             time.Duration
}

// StaleTokensError: tokens still not signed by the wanted key when the time ran out.
type StaleTokensError struct {
	Tokens  []Token
	Timeout time.Duration
}

func (e *StaleTokensError) Error() string {
	var names []string
	for _, t := range e.Tokens {
		names = append(names, t.Name())
	}
	if len(names) > 5 {
		names = append(names[:5], fmt.Sprintf("and %d more", len(names)-5))
	}
	return fmt.Sprintf("%d projected token(s) on this node are still not signed by the new key after %s: %s (is the kubelet running, and does every apiserver sign with the new key?)", len(e.Tokens), e.Timeout, strings.Join(names, "; "))
}

// Refresh makes every projected token of this node one of o.Want: when any is not, it restarts
// the kubelet and polls until every token is signed by o.Want (a new pod's too), then, with
// Settle, until the pods' clients have had the time to read them.
func Refresh(ctx context.Context, o RefreshOptions) (*RefreshResult, error) {
	if o.Timeout == 0 {
		o.Timeout = 3 * time.Minute
	}
	if o.Poll == 0 {
		o.Poll = time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	start := o.Now()
	keys := append([]crypto.PublicKey{o.Want}, o.Others...)
	stale := func() ([]Token, []Token, error) {
		all, err := Survey(o.Layout, keys...)
		if err != nil {
			return nil, nil, err
		}
		var bad []Token
		for _, t := range all {
			if t.Key != 0 {
				bad = append(bad, t)
			}
		}
		return all, bad, nil
	}
	all, bad, err := stale()
	if err != nil {
		return nil, err
	}
	res := &RefreshResult{Tokens: all, Stale: len(bad)}
	if len(bad) > 0 {
		if o.RestartKubelet == nil {
			return res, &StaleTokensError{Tokens: bad}
		}
		if err := o.RestartKubelet(ctx); err != nil {
			return res, fmt.Errorf("restart the kubelet to have it re-request the pods' tokens: %w", err)
		}
		res.KubeletRestarted = true
		deadline, cancel := context.WithTimeout(ctx, o.Timeout)
		defer cancel()
		tick := time.NewTicker(o.Poll)
		defer tick.Stop()
		for len(bad) > 0 {
			select {
			case <-deadline.Done():
				return res, &StaleTokensError{Tokens: bad, Timeout: o.Timeout}
			case <-tick.C:
			}
			if all, bad, err = stale(); err != nil {
				return res, err
			}
			res.Tokens = all
		}
	}
	if o.Settle {
		var newest time.Time
		for _, t := range res.Tokens {
			if t.IssuedAt.After(newest) {
				newest = t.IssuedAt
			}
		}
		if wait := newest.Add(ClientReread + time.Second).Sub(o.Now()); wait > 0 {
			select {
			case <-ctx.Done():
				return res, ctx.Err()
			case <-time.After(wait):
			}
		}
	}
	res.Took = o.Now().Sub(start)
	return res, nil
}

// Render writes the tokens as a table: pod, the key that signed each (keys[Key], by file
// name), issue and expiry times, file; then their count.
func (r *RefreshResult) Render(w io.Writer, keys []string) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "POD\tSIGNED BY\tISSUED\tEXPIRES\tFILE")
	for _, t := range r.Tokens {
		by := "an unknown key"
		if t.Key >= 0 && t.Key < len(keys) {
			by = filepath.Base(keys[t.Key])
		}
		pod := t.Pod
		if pod == "" {
			pod = "uid " + t.PodUID
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", pod, by, stamp(t.IssuedAt), stamp(t.Expiry), t.Path)
	}
	tw.Flush()
	fmt.Fprintf(w, "%d token(s) on this node\n", len(r.Tokens))
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}
