package carotate_test

// Fuzz targets for what `certctl ca show --record` reports to `cluster ca-rotate` through a
// node Job's log: the round trip Show -> record -> Shown with CAs of any subject and any log
// lines around (noderesult's FuzzReadRecord takes any log); and for a rotation's state.json. The seeds are the output for a kubeadm node's
// three CAs (generated here: subjects as kubeadm writes them). `make fuzz` runs them; without
// -fuzz the seeds and testdata/fuzz/FuzzX run as ordinary tests.

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/certctl/certctl/pkg/carotate"
	"github.com/certctl/certctl/pkg/noderesult"
	"github.com/certctl/certctl/pkg/pki"
)

// caFile is where each CA lives under the PKI directory.
var caFile = map[string]string{"ca": "ca.crt", "etcd-ca": "etcd/ca.crt", "front-proxy-ca": "front-proxy-ca.crt"}

// kubeadmCN is the subject kubeadm gives each CA.
var kubeadmCN = map[string]string{"ca": "kubernetes", "etcd-ca": "etcd-ca", "front-proxy-ca": "front-proxy-ca"}

func fuzzKey(f *testing.F) crypto.Signer {
	f.Helper()
	k, err := pki.GenerateKey(pki.AlgECDSAP256)
	if err != nil {
		f.Fatal(err)
	}
	return k
}

// writeCAs writes a CA per name of cas whose bit is set in present, with subject CN cn (the
// CA's kubeadm name when cn is empty), into a node tree under root, and returns them.
func writeCAs(t testing.TB, key crypto.Signer, root, cn string, present uint8) (pki.Layout, map[string]*x509.Certificate) {
	t.Helper()
	l := pki.NewLayout(pki.LayoutOptions{Root: root, Home: "/root"})
	want := map[string]*x509.Certificate{}
	for i, ca := range carotate.CAs {
		if present&(1<<i) == 0 {
			continue
		}
		name := cn
		if name == "" {
			name = kubeadmCN[ca]
		}
		c, err := pki.NewCA(key, &x509.Certificate{Subject: pkix.Name{CommonName: name, Organization: []string{ca}}},
			time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
		if err != nil {
			t.Skipf("no CA with subject %q: %v", name, err) // not UTF-8: no certificate has it
		}
		p := filepath.Join(l.PKIDir, caFile[ca])
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, pki.EncodeCertificates(c), 0o644); err != nil {
			t.Fatal(err)
		}
		want[ca] = c
	}
	return l, want
}

// logLines keeps the lines of s that a log may hold around certctl's output without being a
// record: any line but one that starts with the records' schema.
func logLines(s string) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(l, "certctl.io/node-record/") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

// FuzzShownRoundTrip: for CAs of any subject, on a node holding any subset of them, the record
// `ca show --record` writes, with any log lines before and after it, reads back equal: every CA
// on the node with its certificate, none that is not. (Its corpus holds the subject with a
// newline that once made the text format read a certificate back as another CA's.)
func FuzzShownRoundTrip(f *testing.F) {
	key := fuzzKey(f)
	f.Add("", uint8(0b111), "", "")
	f.Add("", uint8(0b101), "I1202 16:22:14.000000 1 certctl.go:1] recovered an interrupted renewal", "done")
	f.Add("kubernetes", uint8(0b001), "", "")
	f.Add("CN with, commas + \"quotes\"", uint8(0b110), "\n\n", "\n")
	f.Fuzz(func(t *testing.T, cn string, present uint8, before, after string) {
		l, want := writeCAs(t, key, t.TempDir(), cn, present&0b111)
		shown, err := carotate.Show(l, carotate.CAs)
		if err != nil {
			t.Fatalf("Show: %v", err)
		}
		var buf bytes.Buffer
		if err := noderesult.WriteRecord(&buf, noderesult.KindCAShow, shown); err != nil {
			t.Fatalf("WriteRecord: %v", err)
		}
		out := logLines(before) + "\n" + buf.String() + logLines(after)
		var got carotate.Shown
		if err := noderesult.ReadRecord(out, noderesult.KindCAShow, &got); err != nil {
			t.Fatalf("ReadRecord: %v\n%s", err, out)
		}
		for _, ca := range carotate.CAs {
			c, err := got.Cert(ca)
			switch {
			case err != nil:
				t.Fatalf("%s: %v", ca, err)
			case want[ca] == nil && (c != nil || got.Missing[ca] == ""):
				t.Fatalf("%s is not on the node but the record has it (%v) or does not name it missing:\n%s", ca, c, out)
			case want[ca] != nil && (c == nil || !c.Equal(want[ca])):
				t.Fatalf("%s did not read back:\n%s", ca, out)
			}
		}
	})
}

// FuzzLoadState: a rotation's state.json (any bytes) never panics LoadState; an error names
// the file; a state that loads is for the CA asked about, and what it holds, written back as
// JSON, loads again equal.
func FuzzLoadState(f *testing.F) {
	f.Add([]byte(`{
  "ca": "ca",
  "phase": "issue",
  "old_ca_sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
  "new_ca_sha256": "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752",
  "steps": [
    {"phase": "trust", "backup_id": "20261202T162214Z-1a2b3c", "time": "2026-12-02T16:22:14Z", "restart": ["apiserver", "controller-manager"]},
    {"phase": "issue", "backup_id": "20261202T163000Z-4d5e6f", "time": "2026-12-02T16:30:00.123456789+01:00",
     "links": [{"path": "/var/lib/kubelet/pki/kubelet-client-current.pem", "target": "/var/lib/kubelet/pki/kubelet-client-2026-12-02-16-22-14.pem"}],
     "created": ["/var/lib/kubelet/pki/kubelet-client-2026-12-02-16-30-00.pem"]}
  ]
}
`))
	f.Add([]byte(`{"ca": "etcd-ca", "phase": "trust"}`))
	f.Add([]byte(`{"ca": "ca", "phase": "unknown"}`))
	f.Add([]byte(`{"ca": "ca", "phase": "drop", "steps": null}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, data []byte) {
		l := pki.NewLayout(pki.LayoutOptions{Root: t.TempDir(), Home: "/root"})
		p, err := carotate.PathsOf(l, "ca")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(p.State), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p.State, data, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := carotate.LoadState(l, "ca")
		if err != nil {
			if !strings.Contains(err.Error(), p.State) {
				t.Fatalf("error %q does not name %s", err, p.State)
			}
			return
		}
		if s == nil || s.CA != "ca" {
			t.Fatalf("LoadState returned %+v for ca", s)
		}
		again, err := json.Marshal(s)
		if err != nil {
			t.Fatalf("a state that loaded does not marshal: %v", err)
		}
		if err := os.WriteFile(p.State, again, 0o600); err != nil {
			t.Fatal(err)
		}
		s2, err := carotate.LoadState(l, "ca")
		if err != nil {
			t.Fatalf("a state written back does not load: %v\n%s", err, again)
		}
		for i := range s.Steps {
			if !s.Steps[i].Time.Equal(s2.Steps[i].Time) {
				t.Fatalf("step %d's time changed in a round trip", i)
			}
			s.Steps[i].Time, s2.Steps[i].Time = time.Time{}, time.Time{}
		}
		if !reflect.DeepEqual(s, s2) {
			t.Fatalf("state changed in a round trip:\n%+v\n%+v", s, s2)
		}
	})
}
