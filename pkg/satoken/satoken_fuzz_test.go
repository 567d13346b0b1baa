package satoken_test

// FuzzSigner: the token parser reads every projected token file of a node and every legacy
// token Secret of a cluster, any of which may hold anything; it never panics, and it names a
// key only when that key's signature verifies. `make fuzz` runs it; without -fuzz the seeds
// run as an ordinary test.

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/satoken"
)

func FuzzSigner(f *testing.F) {
	k1, err := pki.GenerateKey(pki.AlgECDSAP256)
	if err != nil {
		f.Fatal(err)
	}
	k2, err := pki.GenerateKey(pki.AlgRSA2048)
	if err != nil {
		f.Fatal(err)
	}
	now := time.Unix(1764750000, 0)
	good := token(f, k1, "default/a", now)
	for _, seed := range []string{good, token(f, k2, "kube-system/b", now), "", "eyJ", "a.b.c", good[:len(good)-4], strings.Replace(good, ".", "..", 1), "eyJhbGciOiJub25lIn0.e30."} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		i, _, err := satoken.Signer(tok, k1.Public(), k2.Public())
		switch {
		case i == -1 && err == nil:
			t.Fatalf("no key and no error for %q", tok)
		case i >= 0 && err != nil:
			t.Fatalf("key %d and error %v", i, err)
		case i > 1:
			t.Fatalf("key %d of 2", i)
		case errors.Is(err, satoken.ErrNotSigned) && i != -1:
			t.Fatalf("ErrNotSigned with key %d", i)
		}
	})
}
