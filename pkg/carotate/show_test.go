package carotate_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certctl/certctl/pkg/carotate"
	"github.com/certctl/certctl/pkg/noderesult"
)

// TestShow: on a tree written by the real kubeadm, what the node holds of each CA, as cluster
// ca-rotate reads it back from a Job's record: the certificates ca.crt, etcd/ca.crt and
// front-proxy-ca.crt hold, sa.pub's key; a CA the node lacks (no etcd CA: external etcd) named
// with the path looked at, not an error.
func TestShow(t *testing.T) {
	l := node(t)
	files := map[string]string{"ca": "ca.crt", "etcd-ca": "etcd/ca.crt", "front-proxy-ca": "front-proxy-ca.crt"}
	all, err := carotate.ExpandAll([]string{"all"})
	if err != nil {
		t.Fatal(err)
	}
	shown, err := carotate.Show(l, append(all, carotate.SA))
	if err != nil {
		t.Fatal(err)
	}
	// Through the record, as the orchestrator gets it.
	var rec bytes.Buffer
	if err := noderesult.WriteRecord(&rec, noderesult.KindCAShow, shown); err != nil {
		t.Fatal(err)
	}
	var got carotate.Shown
	if err := noderesult.ReadRecord("a line for people\n"+rec.String(), noderesult.KindCAShow, &got); err != nil {
		t.Fatal(err)
	}
	for ca, f := range files {
		c, err := got.Cert(ca)
		if want := certs(t, filepath.Join(l.PKIDir, f))[0]; err != nil || c == nil || !c.Equal(want) {
			t.Errorf("%s: got %v, %v; want %s's certificate", ca, c, err, f)
		}
	}
	sa, err := got.SAKey()
	if want := publicKey(t, filepath.Join(l.PKIDir, "sa.pub")); err != nil || sa == nil || carotate.PublicKeySum(sa) != carotate.PublicKeySum(want) {
		t.Errorf("sa: got %v, %v; want sa.pub's key", sa, err)
	}
	if len(got.Missing) != 0 {
		t.Errorf("missing: %v", got.Missing)
	}

	if err := os.RemoveAll(filepath.Join(l.PKIDir, "etcd")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(l.PKIDir, "sa.pub")); err != nil {
		t.Fatal(err)
	}
	shown, err = carotate.Show(l, []string{"etcd-ca", "ca", carotate.SA})
	if err != nil {
		t.Fatal(err)
	}
	if c, err := shown.Cert("etcd-ca"); c != nil || err != nil || !strings.HasSuffix(shown.Missing["etcd-ca"], "etcd/ca.crt") {
		t.Errorf("without etcd/: etcd-ca %v, %v, missing %v", c, err, shown.Missing)
	}
	if k, err := shown.SAKey(); k != nil || err != nil || !strings.HasSuffix(shown.Missing[carotate.SA], "sa.pub") {
		t.Errorf("without sa.pub: %v, %v, missing %v", k, err, shown.Missing)
	}
	if c, err := shown.Cert("ca"); c == nil || err != nil {
		t.Errorf("ca without etcd/: %v, %v", c, err)
	}
	// What does not decode is an error naming the CA, not a nil certificate.
	shown.CAs["ca"] = []byte("not DER")
	if _, err := shown.Cert("ca"); err == nil || !strings.Contains(err.Error(), "ca") {
		t.Errorf("bad DER: %v", err)
	}
}
