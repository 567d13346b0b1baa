package live_test

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/live"
	"github.com/certctl/certctl/pkg/sandbox"
)

// TestProbeEndpoint: `certctl probe` as one call: the CA is the node's (a --ca node path
// resolves under the root, ".." included), the endpoint a real TLS listener on loopback.
func TestProbeEndpoint(t *testing.T) {
	l := testenv.SandboxNode(t, sandbox.FaultAPIServerNoLBSAN)
	addr := serve(t, "127.0.0.1:0", filepath.Join(l.PKIDir, "apiserver.crt"), filepath.Join(l.PKIDir, "apiserver.key"))
	tests := []struct {
		name, ca, serverName string
		ok                   bool
		text                 string
	}{
		{"default CA, node IP", "", "10.2.1.151", true, "OK: " + addr + " serves a certificate that verifies against ca.crt for 10.2.1.151"},
		{"--ca as a node path with ..", "../../etc/kubernetes/pki/ca.crt", "kubernetes", true, "verifies against ca.crt"},
		{"case B", "", "10.2.1.139", false, "fix: certctl renew apiserver --san 10.2.1.139"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := live.ProbeEndpoint(context.Background(), l, live.ProbeOptions{Addr: addr, CAFile: tc.ca, ServerName: tc.serverName, Timeout: 3 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			if rep.OK != tc.ok || rep.CAFile != filepath.Join(l.PKIDir, "ca.crt") {
				t.Fatalf("OK %v CA %s, want %v %s (%s)", rep.OK, rep.CAFile, tc.ok, filepath.Join(l.PKIDir, "ca.crt"), rep.Problem)
			}
			var text, js bytes.Buffer
			if err := rep.Render(&text, "text"); err != nil || !strings.Contains(text.String(), tc.text) {
				t.Fatalf("text %v:\n%s\nwant %q", err, text.String(), tc.text)
			}
			var back struct {
				OK     bool   `json:"ok"`
				Addr   string `json:"addr"`
				CAFile string `json:"caFile"`
			}
			if err := rep.Render(&js, "json"); err != nil || json.Unmarshal(js.Bytes(), &back) != nil || back.OK != tc.ok || back.Addr != addr || back.CAFile != rep.CAFile {
				t.Fatalf("json %v: %s", err, js.String())
			}
		})
	}
	if _, err := live.ProbeEndpoint(context.Background(), l, live.ProbeOptions{Addr: addr, CAFile: "/nope/ca.crt"}); err == nil || !strings.Contains(err.Error(), filepath.Join(l.Root, "nope/ca.crt")) || !strings.Contains(err.Error(), "give --ca") {
		t.Fatalf("missing CA: %v", err)
	}
}
