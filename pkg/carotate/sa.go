package carotate

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"

	"k8s.io/client-go/util/keyutil"

	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/satoken"
)

// SA is the service-account signing key pair (sa.key, sa.pub): not a CA, but rotated with the
// same three phases, files and rollback:
//
//   - trust: a new pair in <pki>/rotation/sa/ (new.key, new.pub), bundle.pub = old + new
//     public keys; kube-apiserver --service-account-key-file reads the bundle, so tokens of
//     either key verify (and /openid/v1/jwks publishes both). The old key still signs.
//   - issue: sa.key/sa.pub become the new pair (the old kept as old.key/old.pub): the
//     apiserver (--service-account-signing-key-file) and the controller-manager
//     (--service-account-private-key-file) sign with the new key.
//   - drop: --service-account-key-file back to sa.pub (the new key alone); refused while a
//     projected token on this node is still signed by the old key (satoken).
const SA = "sa"

// Rotation file names of SA (the CAs' .crt names hold public keys here).
const (
	NewPubName    = "new.pub"
	OldPubName    = "old.pub"
	BundlePubName = "bundle.pub"
)

// SecretNames are the file names a new CA (or key pair) has in a directory of new CAs
// (--new-ca-dir, the Secret of certctl cluster ca-rotate): CA.crt and CA.key; sa.pub and
// sa.key for the service-account key pair.
func SecretNames(ca string) (pub, key string) {
	if ca == SA {
		return "sa.pub", "sa.key"
	}
	return ca + ".crt", ca + ".key"
}

// saPair is a service-account key pair: the public key (always) and the private key (when on
// the node).
type saPair struct {
	pub    crypto.PublicKey
	pubPEM []byte
	key    crypto.Signer
	keyPEM []byte
}

func (s *saPair) sum() string { return PublicKeySum(s.pub) }

// PublicKeySum is the SHA-256 of a public key's PKIX DER, in hex: what the rotation state
// records for the service-account keys.
func PublicKeySum(pub crypto.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return ""
	}
	s := sha256.Sum256(der)
	return hex.EncodeToString(s[:])
}

func (s *saPair) describe() string {
	return fmt.Sprintf("(%s, sha256 %s)", pki.KeyAlgorithm(s.pub), s.sum()[:16])
}

// parseSAPair parses one public key (PEM) and, when keyPEM is not nil, the private key that
// must match it, naming the files in errors.
func parseSAPair(pubName string, pubPEM []byte, keyName string, keyPEM []byte) (*saPair, error) {
	pub, err := pki.ParsePublicKey(pubName, pubPEM)
	if err != nil {
		return nil, fmt.Errorf("%w (restore it from a backup: certctl backup list)", err)
	}
	p := &saPair{pub: pub}
	if p.pubPEM, err = pki.EncodePublicKey(p.pub); err != nil {
		return nil, fmt.Errorf("%s: %w", pubName, err)
	}
	if keyPEM != nil {
		k, err := pki.ParsePrivateKey(keyName, keyPEM)
		if err != nil {
			return nil, err
		}
		if err := pki.VerifyKeyPair(p.pub, k); err != nil {
			return nil, fmt.Errorf("%s does not belong to %s: %w", keyName, pubName, err)
		}
		p.key, p.keyPEM = k, keyPEM
	}
	return p, nil
}

// readSAPair reads a key pair from disk; the private key is optional (absent: nil).
func readSAPair(pubPath, keyPath string) (*saPair, error) {
	pubPEM, err := os.ReadFile(pubPath)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", pubPath, err)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if errors.Is(err, fs.ErrNotExist) {
		keyPEM = nil
	} else if err != nil {
		return nil, fmt.Errorf("read %s: %w", keyPath, err)
	}
	return parseSAPair(pubPath, pubPEM, keyPath, keyPEM)
}

// CurrentSA is the service-account public key this node verifies and signs tokens with
// (pki/sa.pub) and its path; fs.ErrNotExist (wrapped) when the node has none (a worker).
func CurrentSA(l pki.Layout) (crypto.PublicKey, string, error) {
	p, err := PathsOf(l, SA)
	if err != nil {
		return nil, "", err
	}
	data, err := os.ReadFile(p.CACert)
	if err != nil {
		return nil, p.CACert, fmt.Errorf("read %s: %w", p.CACert, err)
	}
	s, err := parseSAPair(p.CACert, data, "", nil)
	if err != nil {
		return nil, p.CACert, err
	}
	return s.pub, p.CACert, nil
}

func saTrust(o Options, d caDef, p Paths, res *Result, st *State) (*Result, error) {
	if _, err := os.Stat(p.CACert); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("sa: no service-account key on this node (%s does not exist): only control-plane nodes hold it", p.CACert)
	}
	// fresh: a new rotation, the completed one's new key is the key now.
	leftovers, st, fresh := afterCompleted(p, st, res)
	if st != nil {
		if o.NewCA != nil {
			given, err := parseSAPair(o.NewCA.CertPath, o.NewCA.CertPEM, "", nil)
			if err != nil {
				return nil, err
			}
			if given.sum() != st.NewCA {
				return nil, fmt.Errorf("sa: the rotation under %s is already at phase %s with another new key than %s; roll it back first (certctl ca rotate sa --rollback)", p.Dir, st.Phase, o.NewCA.CertPath)
			}
		}
		res.AlreadyDone = true
		res.Notes = append(res.Notes, fmt.Sprintf("phase trust already done (the rotation is at phase %s): nothing to do", st.Phase))
		return res, nil
	}
	old, err := readSAPair(p.CACert, p.CAKey)
	if err != nil {
		return nil, err
	}
	nw, created, err := newSAPair(o, p, old, fresh)
	if err != nil {
		return nil, err
	}
	if nw.sum() == old.sum() {
		return nil, fmt.Errorf("sa: the new key is the old one (%s); give the new key's files", p.CACert)
	}
	if old.key != nil && nw.key == nil {
		return nil, fmt.Errorf("sa: this node holds the signing key %s, so phase issue will sign with the new key: give its private key too (--new-ca-key, the new.key of the node that generated it)", p.CAKey)
	}
	bundle := append(slices.Clone(old.pubPEM), nw.pubPEM...)
	edits := leftovers
	if nw.key != nil {
		edits = append(edits, fileEdit{path: p.NewKey, data: nw.keyPEM, mode: 0o600, what: created + " new service-account signing key"})
	}
	edits = append(edits,
		fileEdit{path: p.NewCert, data: nw.pubPEM, mode: 0o644, what: created + " new service-account public key " + nw.describe()},
		fileEdit{path: p.OldCert, data: old.pubPEM, mode: 0o644, what: "copy of the old public key " + old.describe()},
		fileEdit{path: p.Bundle, data: bundle, mode: 0o644, what: "bundle: old + new public key (tokens of either verify)"},
	)
	ver, notes, err := verifiers(o.Layout, d, o.Layout.NodePath(p.CACert), o.Layout.NodePath(p.Bundle), o.DeferManifests, func([]byte) []byte { return nil })
	if err != nil {
		return nil, err
	}
	edits = append(edits, ver...)
	res.Notes = append(res.Notes, notes...)
	st = &State{CA: SA, Phase: PhaseTrust, OldCA: old.sum(), NewCA: nw.sum()}
	return res, apply(o, p, res, st, edits)
}

// newSAPair finds or makes the new key pair; created says which. fresh: the rotation
// directory holds a completed rotation, whose new.pub is no new key.
func newSAPair(o Options, p Paths, old *saPair, fresh bool) (*saPair, string, error) {
	if o.NewCA != nil {
		n, err := parseSAPair(o.NewCA.CertPath, o.NewCA.CertPEM, o.NewCA.KeyPath, o.NewCA.KeyPEM)
		if o.NewCA.KeyPath != "" && o.NewCA.KeyPEM == nil && err == nil {
			err = fmt.Errorf("%s: empty key file", o.NewCA.KeyPath)
		}
		return n, "install", err
	}
	if _, err := os.Stat(p.NewCert); err == nil && !fresh {
		n, err := readSAPair(p.NewCert, p.NewKey)
		return n, "keep", err
	}
	if !o.Generate {
		return nil, "", fmt.Errorf("sa: no new key: on the first control-plane node pass --generate; on the others pass --new-ca-cert/--new-ca-key with the first node's %s and %s", p.NewCert, p.NewKey)
	}
	if old.key == nil {
		return nil, "", fmt.Errorf("sa: --generate needs the signing key %s on this node", p.CAKey)
	}
	alg := pki.KeyAlgorithm(old.pub)
	if !slices.Contains(pki.KeyAlgorithms, alg) {
		return nil, "", fmt.Errorf("sa: the old key is %s, which certctl cannot generate", alg)
	}
	key, err := pki.GenerateKey(alg)
	if err != nil {
		return nil, "", err
	}
	keyPEM, err := keyutil.MarshalPrivateKeyToPEM(key)
	if err != nil {
		return nil, "", err
	}
	pubPEM, err := pki.EncodePublicKey(key.Public())
	if err != nil {
		return nil, "", err
	}
	return &saPair{pub: key.Public(), pubPEM: pubPEM, key: key, keyPEM: keyPEM}, "generate", nil
}

func saIssue(o Options, p Paths, res *Result, st *State) (*Result, error) {
	if st == nil {
		return nil, fmt.Errorf("sa: phase trust has not run on this node (no %s): run certctl ca rotate sa --phase trust first", p.State)
	}
	if phaseIndex(st.Phase) >= phaseIndex(PhaseIssue) {
		res.AlreadyDone = true
		res.Notes = append(res.Notes, fmt.Sprintf("phase issue already done (the rotation is at phase %s): nothing to do", st.Phase))
		return res, nil
	}
	old, err := readSAPair(p.CACert, p.CAKey)
	if err != nil {
		return nil, err
	}
	if old.sum() != st.OldCA {
		return nil, fmt.Errorf("sa: %s is not the key phase trust recorded as the old one (%s): it was changed by hand; restore it, or roll the rotation back (certctl ca rotate sa --rollback)", p.CACert, p.State)
	}
	nw, err := readSAPair(p.NewCert, p.NewKey)
	if err != nil {
		return nil, err
	}
	if nw.sum() != st.NewCA {
		return nil, fmt.Errorf("sa: %s is not the new key phase trust installed (%s); restore it, or roll the rotation back (certctl ca rotate sa --rollback)", p.NewCert, p.State)
	}
	if old.key != nil && nw.key == nil {
		return nil, fmt.Errorf("sa: the new signing key %s is missing, and this node signs with %s: copy new.key from the node that generated it into %s and run again", p.NewKey, p.CAKey, p.Dir)
	}
	edits := []fileEdit{{path: p.CACert, data: nw.pubPEM, mode: modeOr(p.CACert, 0o644), what: "the new public key (the old one is kept as " + p.OldCert + ")"}}
	if old.key != nil {
		edits = append([]fileEdit{
			{path: p.CAKey, data: nw.keyPEM, mode: 0o600, component: pki.CompAPIServer,
				what: "the new signing key (the old one is kept as " + p.OldKey + "): kube-apiserver --service-account-signing-key-file and kube-controller-manager --service-account-private-key-file sign with it"},
			{path: p.OldKey, data: old.keyPEM, mode: 0o600, what: "copy of the old signing key"},
		}, edits...)
		res.restart(pki.CompAPIServer, pki.CompControllerManager)
	}
	res.Notes = append(res.Notes, "the kubelets keep the pods' projected tokens of the old key until they refresh them (80% of their lifetime, at most 24 h): once every apiserver signs with the new key, certctl ca tokens --refresh on each node has them re-requested now (the kubelet restarts, no container does)")
	st.Phase = PhaseIssue
	return res, apply(o, p, res, st, edits)
}

// OldTokensError: phase drop of sa refused because tokens signed by the old key are still on
// the node.
type OldTokensError struct {
	Tokens []satoken.Token
	// NewKey: the tokens are the new key's, and the rollback of phase trust was refused.
	NewKey bool
}

func (e *OldTokensError) Error() string {
	var names []string
	for _, t := range e.Tokens {
		names = append(names, t.Name())
	}
	if len(names) > 5 {
		names = append(names[:5], fmt.Sprintf("and %d more", len(names)-5))
	}
	if e.NewKey {
		return fmt.Sprintf("sa: %d projected service-account token(s) on this node are signed by the new key, and no apiserver would accept them after the rollback of phase trust: %s. Have the kubelet re-request them with the old key first: certctl ca tokens --refresh (on every node, once every apiserver signs with the old key again), then roll back again", len(e.Tokens), strings.Join(names, "; "))
	}
	return fmt.Sprintf("sa: %d projected service-account token(s) on this node are still signed by the old key, and no apiserver would accept them after drop: %s. The kubelet refreshes a token at 80%% of its lifetime (at most after 24 h); to have it re-request them now run certctl ca tokens --refresh (it restarts the kubelet, no container restarts), then drop again", len(e.Tokens), strings.Join(names, "; "))
}

func saDrop(o Options, d caDef, p Paths, res *Result, st *State) (*Result, error) {
	switch {
	case st == nil:
		return nil, fmt.Errorf("sa: no rotation on this node (no %s): phases trust and issue come first", p.State)
	case st.Phase == PhaseDrop:
		res.AlreadyDone = true
		res.Notes = append(res.Notes, "phase drop already done: nothing to do")
		return res, nil
	case st.Phase != PhaseIssue:
		return nil, fmt.Errorf("sa: the rotation is at phase %s: run certctl ca rotate sa --phase issue first", st.Phase)
	}
	oldPEM, err := os.ReadFile(p.OldCert)
	if err != nil {
		return nil, fmt.Errorf("sa: read the old public key: %w", err)
	}
	old, err := parseSAPair(p.OldCert, oldPEM, "", nil)
	if err != nil {
		return nil, err
	}
	cur, err := readSAPair(p.CACert, p.CAKey)
	if err != nil {
		return nil, err
	}
	if cur.sum() != st.NewCA {
		return nil, fmt.Errorf("sa: %s is not the new key of this rotation (%s); restore it or roll back (certctl ca rotate sa --rollback)", p.CACert, p.State)
	}
	tokens, err := satoken.Survey(o.Layout, old.pub, cur.pub)
	if err != nil {
		return nil, err
	}
	if stale := slices.DeleteFunc(tokens, func(t satoken.Token) bool { return t.Key != 0 }); len(stale) > 0 && !o.IgnoreTokens {
		return nil, &OldTokensError{Tokens: stale}
	}
	edits, notes, err := verifiers(o.Layout, d, o.Layout.NodePath(p.Bundle), o.Layout.NodePath(p.CACert), o.DeferManifests, func([]byte) []byte { return nil })
	if err != nil {
		return nil, err
	}
	res.Notes = append(res.Notes, notes...)
	res.Notes = append(res.Notes, fmt.Sprintf("the old key stays in %s (old.key, old.pub) until you remove it; the rollback of this phase does not need it", p.Dir))
	st.Phase = PhaseDrop
	return res, apply(o, p, res, st, edits)
}

// newKeyTokens refuses the rollback of phase trust of SA while a pod's projected token on the
// node is signed by the new key (issued between an issue and its rollback): after it no
// apiserver would accept them.
func newKeyTokens(l pki.Layout) error {
	p, err := PathsOf(l, SA)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(p.NewCert)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", p.NewCert, err)
	}
	nw, err := parseSAPair(p.NewCert, data, "", nil)
	if err != nil {
		return err
	}
	tokens, err := satoken.Survey(l, nw.pub)
	if err != nil {
		return err
	}
	if signed := slices.DeleteFunc(tokens, func(t satoken.Token) bool { return t.Key != 0 }); len(signed) > 0 {
		return &OldTokensError{Tokens: signed, NewKey: true}
	}
	return nil
}

// TokenKey is a public key pods' tokens may be signed by, and the file it came from.
type TokenKey struct {
	Path string
	Key  crypto.PublicKey
}

// TokenKeys are the keys `certctl ca tokens` checks the node's tokens against, the one they
// must be signed by first: files, when given (on this machine, not under the node's root: a
// Job mounts them); otherwise the node's sa.pub and, during a rotation, the rotation's other
// key (old.pub or new.pub). A worker has no sa.pub: its error says to give the file.
func TokenKeys(l pki.Layout, files []string) ([]TokenKey, error) {
	var out []TokenKey
	for _, p := range files {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", p, err)
		}
		k, err := pki.ParsePublicKey(p, data)
		if err != nil {
			return nil, err
		}
		out = append(out, TokenKey{p, k})
	}
	if len(out) > 0 {
		return out, nil
	}
	cur, path, err := CurrentSA(l)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no service-account public key on this node (%s): on a worker give the one the apiservers sign with, --key FILE", path)
	}
	if err != nil {
		return nil, err
	}
	out = append(out, TokenKey{path, cur})
	p, err := PathsOf(l, SA)
	if err != nil {
		return nil, err
	}
	for _, other := range []string{p.OldCert, p.NewCert} {
		data, err := os.ReadFile(other)
		if err != nil {
			continue // no rotation under way, or not this side of it
		}
		k, err := pki.ParsePublicKey(other, data)
		if err != nil {
			return nil, err
		}
		if PublicKeySum(k) != PublicKeySum(cur) {
			out = append(out, TokenKey{other, k})
		}
	}
	return out, nil
}
