package noderenew

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/renew"
	"github.com/certctl/certctl/pkg/restart"
	"github.com/certctl/certctl/pkg/sandbox"
)

// TestRefusedFirst: what goes with a renewal (the Lease, the restart) is checked before anything
// is renewed, and a refusal leaves the certificate as it was; without them the same renewal
// goes through.
func TestRefusedFirst(t *testing.T) {
	dir := t.TempDir()
	if _, err := sandbox.Create(sandbox.Options{Dir: dir, KeyAlgorithm: pki.AlgECDSAP256}); err != nil {
		t.Fatal(err)
	}
	l := pki.NewLayout(pki.LayoutOptions{Root: dir})
	crt := filepath.Join(l.PKIDir, "apiserver.crt")
	before, err := os.ReadFile(crt)
	if err != nil {
		t.Fatal(err)
	}
	base := renew.RunOptions{Options: renew.Options{Names: []string{"apiserver"}, Days: 30}}
	// No process at all: no kubelet runs this tree's static pods.
	noKubelet := &restart.Request{Layout: l, Proc: t.TempDir()}
	tests := []struct {
		name string
		o    Options
		err  string // "" : renews
	}{
		{"bad lease", Options{RunOptions: base, Lease: "no-slash"}, "no-slash"},
		{"negative lease wait", Options{RunOptions: base, Lease: "kube-system/certctl", LeaseWait: -1}, "--lease-wait"},
		{"restart without a kubelet", Options{RunOptions: base, Restart: noKubelet}, "nothing was renewed"},
		{"restart on a dry run", Options{RunOptions: renew.RunOptions{Options: base.Options, DryRun: true}, Restart: noKubelet}, ""},
		{"plain", Options{RunOptions: base}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := Run(context.Background(), l, tc.o)
			after, _ := os.ReadFile(crt)
			switch {
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("error %v, want one containing %q", err, tc.err)
			case tc.err != "" && !bytes.Equal(after, before):
				t.Fatalf("refused (%v) but %s changed", err, crt)
			case tc.err == "" && err != nil:
				t.Fatalf("Run: %v", err)
			case tc.err == "" && tc.o.DryRun && !bytes.Equal(after, before):
				t.Fatalf("dry run changed %s", crt)
			case tc.err == "" && !tc.o.DryRun && (res.Applied == nil || bytes.Equal(after, before)):
				t.Fatalf("not renewed: %+v", res)
			}
		})
	}
}
