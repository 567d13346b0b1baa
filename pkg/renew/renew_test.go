package renew_test

import (
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/certctl/certctl/pkg/backup"
	"github.com/certctl/certctl/pkg/fsutil"
	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/renew"
	"github.com/certctl/certctl/pkg/sandbox"
)

func cert(t *testing.T, p string) *x509.Certificate {
	t.Helper()
	cs, err := pki.ParseCertificates(p, mustRead(t, p))
	if err != nil {
		t.Fatal(err)
	}
	return cs[0]
}

func TestRenewAllKeepsEverythingAndAddsSAN(t *testing.T) {
	l := newTree(t)
	old := pki.Load(l, pki.Default())
	now := time.Now()
	// SANs the apiserver certificate lacks (the sandbox's has 10.2.1.139 already): the VIP
	// of case B and a load balancer name.
	newIP, newDNS := net.ParseIP("10.2.0.100"), "lb.example.com"
	hasNew := func(c *x509.Certificate) (ip, dns bool) {
		return slices.ContainsFunc(c.IPAddresses, newIP.Equal), slices.Contains(c.DNSNames, newDNS)
	}
	for _, n := range renew.All {
		if ip, dns := hasNew(old.Get(n).Cert()); ip || dns {
			t.Fatalf("%s has %s or %s before the renewal: the test would prove nothing", n, newIP, newDNS)
		}
	}
	p, err := renew.NewPlan(l, renew.Options{Days: 3650, SANs: []string{newIP.String(), newDNS}, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	res, err := renew.Apply(p, renew.ApplyOptions{Command: "test", LockTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Changed) != len(renew.All) {
		t.Fatalf("changed %d, want %d", len(res.Changed), len(renew.All))
	}
	if got := res.Components(); !slices.Equal(got, []string{"apiserver", "controller-manager", "etcd", "scheduler"}) {
		t.Fatalf("components %v", got)
	}
	if err := checkPairs(l); err != nil {
		t.Fatal(err)
	}
	inv := pki.Load(l, pki.Default())
	for _, n := range renew.All {
		o, c := old.Get(n).Cert(), inv.Get(n).Cert()
		if string(o.RawSubject) != string(c.RawSubject) || o.KeyUsage != c.KeyUsage || !slices.Equal(o.ExtKeyUsage, c.ExtKeyUsage) {
			t.Errorf("%s: subject or usages changed", n)
		}
		for _, d := range o.DNSNames {
			if !slices.Contains(c.DNSNames, d) {
				t.Errorf("%s lost DNS SAN %s", n, d)
			}
		}
		for _, ip := range o.IPAddresses {
			if !slices.ContainsFunc(c.IPAddresses, ip.Equal) {
				t.Errorf("%s lost IP SAN %s", n, ip)
			}
		}
		// --san goes to the apiserver certificate only; every old SAN is kept (above).
		want := n == "apiserver"
		if ip, dns := hasNew(c); ip != want || dns != want {
			t.Errorf("%s: has %s=%v %s=%v, want %v", n, newIP, ip, newDNS, dns, want)
		}
		if want && (len(c.IPAddresses) != len(o.IPAddresses)+1 || len(c.DNSNames) != len(o.DNSNames)+1) {
			t.Errorf("%s: SANs %v %v, want the old %v %v plus %s and %s", n, c.IPAddresses, c.DNSNames, o.IPAddresses, o.DNSNames, newIP, newDNS)
		}
		if pki.VerifyKeyPair(c.PublicKey, old.Get(n).Key) == nil {
			t.Errorf("%s: key was not rotated", n)
		}
		if d := c.NotAfter.Sub(now); d < 3649*24*time.Hour && !c.NotAfter.Equal(inv.Get(inv.Get(n).Spec.CAName).Cert().NotAfter) {
			t.Errorf("%s: NotAfter %s", n, c.NotAfter)
		}
		if nb := now.Sub(c.NotBefore); nb < 4*time.Minute || nb > 6*time.Minute {
			t.Errorf("%s: NotBefore %s is not ~5 minutes back", n, c.NotBefore)
		}
	}
	for _, f := range []string{"apiserver.key", "etcd/peer.key"} {
		if st, _ := os.Stat(filepath.Join(l.PKIDir, f)); st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v", f, st.Mode().Perm())
		}
	}
	// The backup holds the old files and restores them.
	list, _ := backup.List(l)
	if len(list) != 1 || list[0].ID != res.BackupID {
		t.Fatalf("backups %v", list)
	}
	if _, err := backup.Restore(fsutil.OS{}, l, res.BackupID); err != nil {
		t.Fatal(err)
	}
	if !cert(t, filepath.Join(l.PKIDir, "apiserver.crt")).Equal(old.Get("apiserver").Cert()) {
		t.Fatal("restore did not bring the old apiserver.crt back")
	}
	if err := checkPairs(l); err != nil {
		t.Fatal(err)
	}
}

func TestCappedAtCA(t *testing.T) {
	l := newTree(t)
	p, err := renew.NewPlan(l, renew.Options{Days: 36500, Names: []string{"etcd-peer"}})
	if err != nil {
		t.Fatal(err)
	}
	r := p.Rows[0]
	ca := cert(t, filepath.Join(l.PKIDir, "etcd/ca.crt"))
	if !r.Capped || !r.NewExpiry.Equal(ca.NotAfter) || !strings.Contains(r.Note, "capped at the etcd-ca expiry") {
		t.Fatalf("row %+v, CA expires %s", r, ca.NotAfter)
	}
	var sb strings.Builder
	p.Render(&sb)
	if !strings.Contains(sb.String(), "capped at the etcd-ca expiry") {
		t.Fatalf("plan does not say it is capped:\n%s", sb.String())
	}
	if _, err := renew.Apply(p, renew.ApplyOptions{LockTimeout: time.Second}); err != nil {
		t.Fatal(err)
	}
	if got := cert(t, filepath.Join(l.PKIDir, "etcd/peer.crt")); !got.NotAfter.Equal(ca.NotAfter) {
		t.Fatalf("NotAfter %s, CA %s", got.NotAfter, ca.NotAfter)
	}
}

func TestReuseKeepsKeyFilesAndAlgorithmChange(t *testing.T) {
	l := newTree(t)
	keyBefore := mustRead(t, filepath.Join(l.PKIDir, "apiserver.key"))
	p, err := renew.NewPlan(l, renew.Options{Days: 30, KeyMode: renew.KeyReuse})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := renew.Apply(p, renew.ApplyOptions{LockTimeout: time.Second}); err != nil {
		t.Fatal(err)
	}
	if string(mustRead(t, filepath.Join(l.PKIDir, "apiserver.key"))) != string(keyBefore) {
		t.Fatal("--key reuse rewrote the key")
	}
	if err := checkPairs(l); err != nil {
		t.Fatal(err)
	}
	p, err = renew.NewPlan(l, renew.Options{Days: 30, Names: []string{"front-proxy-client", "scheduler.conf"}, KeyAlgorithm: pki.AlgRSA2048})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := renew.Apply(p, renew.ApplyOptions{LockTimeout: time.Second}); err != nil {
		t.Fatal(err)
	}
	inv := pki.Load(l, pki.Default())
	for _, n := range []string{"front-proxy-client", "scheduler.conf"} {
		if a := pki.KeyAlgorithm(inv.Get(n).Cert().PublicKey); a != pki.AlgRSA2048 {
			t.Errorf("%s key is %s", n, a)
		}
	}
	if err := checkPairs(l); err != nil {
		t.Fatal(err)
	}
}

// TestIfExpiringWithinNoOp: nothing within the window writes nothing at all (no backup, no
// state directory); an expired apiserver is the only one renewed.
func TestIfExpiringWithin(t *testing.T) {
	l := newTree(t)
	before := treeHash(t, l.Root)
	p, err := renew.NewPlan(l, renew.Options{Days: 365, IfExpiringWithin: 30 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if !p.Empty() {
		t.Fatalf("plan not empty: %+v", p.Renewing())
	}
	res, err := renew.Apply(p, renew.ApplyOptions{})
	if err != nil || len(res.Changed) != 0 || res.BackupID != "" {
		t.Fatalf("res %+v err %v", res, err)
	}
	if d := diffHash(before, treeHash(t, l.Root)); len(d) > 0 {
		t.Fatal(d)
	}
	for _, d := range []string{l.StateDir(), l.BackupRoot()} {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Fatalf("%s was created by a no-op", d)
		}
	}
	code, out, _ := runCLI(l, "renew", "all", "--if-expiring-within", "30d", "--yes")
	if code != 0 || !strings.Contains(out, "nothing expires within 30d") {
		t.Fatalf("exit %d out %q", code, out)
	}

	root := t.TempDir()
	l2, err := sandbox.Create(sandbox.Options{Dir: root, KeyAlgorithm: pki.AlgECDSAP256, Faults: []sandbox.Fault{sandbox.FaultAPIServerExpired}})
	if err != nil {
		t.Fatal(err)
	}
	p, err = renew.NewPlan(l2, renew.Options{Days: 365, IfExpiringWithin: 30 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if r := p.Renewing(); len(r) != 1 || r[0].Name != "apiserver" {
		t.Fatalf("renewing %+v, want only apiserver", r)
	}
	if _, err := renew.Apply(p, renew.ApplyOptions{LockTimeout: time.Second}); err != nil {
		t.Fatal(err)
	}
	if c := cert(t, filepath.Join(l2.PKIDir, "apiserver.crt")); c.NotAfter.Before(time.Now().Add(364 * 24 * time.Hour)) {
		t.Fatalf("apiserver still expires %s", c.NotAfter)
	}
}

func TestCSROnlyForExternalCA(t *testing.T) {
	l := newTree(t)
	os.Remove(filepath.Join(l.PKIDir, "ca.key"))
	before := treeHash(t, l.Root)
	if _, err := renew.NewPlan(l, renew.Options{Days: 365}); err == nil || !strings.Contains(err.Error(), "--csr-only") {
		t.Fatalf("err %v", err)
	}
	p, err := renew.NewPlan(l, renew.Options{Days: 365, CSROnly: true, SANs: []string{"10.2.1.139"}})
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "csr")
	res, err := renew.Apply(p, renew.ApplyOptions{CSRDir: out})
	if err != nil {
		t.Fatal(err)
	}
	if d := diffHash(before, treeHash(t, l.Root)); len(d) > 0 {
		t.Fatalf("--csr-only changed the tree: %v", d)
	}
	if len(res.Changed) != len(renew.All) {
		t.Fatalf("%d CSRs", len(res.Changed))
	}
	old := cert(t, filepath.Join(l.PKIDir, "apiserver.crt"))
	csrPEM := mustRead(t, filepath.Join(out, "apiserver.csr"))
	key, err := pki.ParsePrivateKey("k", mustRead(t, filepath.Join(out, "apiserver.key")))
	if err != nil {
		t.Fatal(err)
	}
	csr, err := parseCSR(csrPEM)
	if err != nil {
		t.Fatal(err)
	}
	if string(csr.RawSubject) != string(old.RawSubject) || !slices.ContainsFunc(csr.IPAddresses, net.ParseIP("10.2.1.139").Equal) || len(csr.DNSNames) != len(old.DNSNames) {
		t.Fatalf("CSR subject/SANs differ: %v %v", csr.Subject, csr.IPAddresses)
	}
	if err := pki.VerifyKeyPair(csr.PublicKey, key); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(filepath.Join(out, "apiserver.key")); st.Mode().Perm() != 0o600 {
		t.Fatal("key not 0600")
	}
}

func TestKubeletConfNote(t *testing.T) {
	l := newTree(t)
	p, err := renew.NewPlan(l, renew.Options{Days: 365})
	if err != nil {
		t.Fatal(err)
	}
	last := p.Rows[len(p.Rows)-1]
	if last.Name != "kubelet.conf" || last.Action != renew.ActionSkip || !strings.Contains(last.Note, "kubelet-client-current.pem") {
		t.Fatalf("row %+v", last)
	}
	if _, err := renew.NewPlan(l, renew.Options{Days: 365, Names: []string{"kubelet.conf"}}); err == nil || !strings.Contains(err.Error(), "rotates itself") {
		t.Fatalf("err %v", err)
	}
}

// TestRecoverWithoutJournalWritesNothing: the hook every command runs is free.
func TestRecoverWithoutJournalWritesNothing(t *testing.T) {
	l := newTree(t)
	before := treeHash(t, l.Root)
	var sb strings.Builder
	if err := renew.Recover(l, &sb); err != nil || sb.Len() != 0 {
		t.Fatalf("%v %q", err, sb.String())
	}
	if d := diffHash(before, treeHash(t, l.Root)); len(d) > 0 {
		t.Fatal(d)
	}
	if _, err := os.Stat(l.StateDir()); !os.IsNotExist(err) {
		t.Fatal("state dir created")
	}
}

// TestRestoreCLI: `certctl restore ID` after a renewal brings every old file back, and keeps
// the renewed ones in a new backup.
func TestRestoreCLI(t *testing.T) {
	l := newTree(t)
	before := treeHash(t, l.Root)
	if code, _, stderr := runCLI(l, "renew", "all", "--yes"); code != 0 {
		t.Fatalf("renew: %s", stderr)
	}
	renewed := mustRead(t, filepath.Join(l.PKIDir, "apiserver.crt"))
	list, err := backup.List(l)
	if err != nil || len(list) != 1 {
		t.Fatalf("backups %v %v", list, err)
	}
	code, out, stderr := runCLI(l, "restore", list[0].ID)
	if code != 0 || !strings.Contains(out, "restored backup "+list[0].ID) {
		t.Fatalf("restore: exit %d %s %s", code, out, stderr)
	}
	after := treeHash(t, l.Root)
	for p, h := range before {
		if after[p] != h {
			t.Errorf("%s not restored", p)
		}
	}
	list, _ = backup.List(l)
	if len(list) != 2 || !strings.Contains(list[1].Command, "state before restoring") {
		t.Fatalf("no pre-restore backup: %+v", list)
	}
	m, err := backup.Load(l, list[1].ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range m.Files {
		if f.Path == "/etc/kubernetes/pki/apiserver.crt" && f.SHA256 != backup.Sum(renewed) {
			t.Error("the pre-restore backup does not hold the renewed apiserver.crt")
		}
	}
	if err := checkPairs(l); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := runCLI(l, "restore", "20990101T000000Z-000000"); code != 3 || !strings.Contains(stderr, "no backup") {
		t.Fatalf("unknown id: exit %d %s", code, stderr)
	}
}

// TestDamagedJournal: a journal certctl cannot act on is a warning for other commands (so
// restore still works) and stops a renewal.
func TestDamagedJournal(t *testing.T) {
	l := newTree(t)
	os.MkdirAll(l.StateDir(), 0o700)
	mustWrite(t, filepath.Join(l.StateDir(), renew.JournalName), []byte("{not json"))
	code, _, stderr := runCLI(l, "backup", "list")
	if code != 0 || !strings.Contains(stderr, "warning: renewal journal") || !strings.Contains(stderr, "is damaged") {
		t.Fatalf("backup list: exit %d stderr %q", code, stderr)
	}
	before := treeHash(t, l.Root)
	code, _, stderr = runCLI(l, "renew", "all", "--yes")
	if code != 3 || !strings.Contains(stderr, "error: renewal journal") {
		t.Fatalf("renew: exit %d stderr %q", code, stderr)
	}
	if d := diffHash(before, treeHash(t, l.Root)); len(d) > 0 {
		t.Fatal(d)
	}
}

// TestSANNotDroppedByWindow: --san with --if-expiring-within still renews the apiserver when
// it lacks the SAN, and only then.
func TestSANNotDroppedByWindow(t *testing.T) {
	l := newTree(t)
	p, err := renew.NewPlan(l, renew.Options{Days: 365, SANs: []string{"10.2.0.100"}, IfExpiringWithin: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if r := p.Renewing(); len(r) != 1 || r[0].Name != "apiserver" || len(r[0].SANsAdded) != 1 {
		t.Fatalf("renewing %+v, want apiserver for its new SAN", r)
	}
	// 10.2.1.139 is already there (the sandbox's LB IP): nothing to do.
	p, err = renew.NewPlan(l, renew.Options{Days: 365, SANs: []string{"10.2.1.139"}, IfExpiringWithin: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if !p.Empty() {
		t.Fatalf("renewing %+v, want nothing", p.Renewing())
	}
}
