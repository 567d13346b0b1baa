package renew_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/certctl/certctl/cmd/cli"
	"github.com/certctl/certctl/pkg/fsutil"
	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/renew"
	"github.com/certctl/certctl/pkg/sandbox"
)

// runCLI runs certctl in-process with --root l.Root and returns the exit code and stderr.
func runCLI(l pki.Layout, args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := cli.Execute(append([]string{"--root", l.Root}, args...), cli.Streams{In: &bytes.Buffer{}, Out: &out, ErrOut: &errOut})
	return code, out.String(), errOut.String()
}

// applyWith plans `renew all` and applies it through w.
func applyWith(l pki.Layout, w fsutil.Writer) error {
	p, err := renew.NewPlan(l, renew.Options{Days: 365})
	if err != nil {
		return err
	}
	_, err = renew.Apply(p, renew.ApplyOptions{Writer: w, Command: "test", LockTimeout: time.Second})
	return err
}

func pkiPath(l pki.Layout, name string) string { return filepath.Join(l.PKIDir, name) }

func TestBadInputChangesNothing(t *testing.T) {
	type tc struct {
		name   string
		mutate func(t *testing.T, l pki.Layout) // the bad state, made before hashing
		args   []string                         // certctl arguments (after --root)
		apply  func(l pki.Layout) error         // instead of args: call the package
		want   []string                         // every one must be in the error text
	}
	replace := func(file string, data func(t *testing.T, l pki.Layout) []byte) func(*testing.T, pki.Layout) {
		return func(t *testing.T, l pki.Layout) { mustWrite(t, pkiPath(l, file), data(t, l)) }
	}
	lit := func(s string) func(*testing.T, pki.Layout) []byte {
		return func(*testing.T, pki.Layout) []byte { return []byte(s) }
	}
	fileOf := func(name string) func(*testing.T, pki.Layout) []byte {
		return func(t *testing.T, l pki.Layout) []byte { return mustRead(t, pkiPath(l, name)) }
	}
	all := []string{"renew", "all", "--yes"}
	// The operations of a `renew all` through the writer, recorded once on a copy; failAt
	// injects err at the nth operation matching a pattern (1-based; negative from the end).
	ops := recordOps(t)
	failAt := func(kind, pattern string, nth int, err error) func(pki.Layout) error {
		var idx []int
		for i, op := range ops {
			if strings.HasPrefix(op, kind+" ") && strings.Contains(op, pattern) {
				idx = append(idx, i+1)
			}
		}
		if nth < 0 {
			nth = len(idx) + 1 + nth
		}
		if nth < 1 || nth > len(idx) {
			t.Fatalf("no operation %d matching %q in %v", nth, pattern, ops)
		}
		n := idx[nth-1]
		return func(l pki.Layout) error {
			return applyWith(l, &fsutil.FailingWriter{Writer: fsutil.OS{}, FailAt: n, Err: err})
		}
	}
	cases := []tc{
		{name: "days zero", args: []string{"renew", "--days", "0", "--yes"}, want: []string{"--days 0", "at least 1 day"}},
		{name: "days negative", args: []string{"renew", "--days", "-30", "--yes"}, want: []string{"--days -30", "at least 1 day"}},
		{name: "days absurd", args: []string{"renew", "--days", "36501", "--yes"}, want: []string{"--days 36501", "100 years"}},
		{name: "days huge", args: []string{"renew", "--days", "999999999", "--yes"}, want: []string{"--days 999999999"}},
		{name: "days not a number", args: []string{"renew", "--days", "ten", "--yes"}, want: []string{"invalid argument", "--days"}},
		{name: "san bad IP", args: []string{"renew", "--san", "10.2.1.1390", "--yes"}, want: []string{"--san", "10.2.1.1390", "not a valid IP"}},
		{name: "san bad name", args: []string{"renew", "--san", "bad_name!", "--yes"}, want: []string{"--san", "bad_name!"}},
		{name: "san empty in list", args: []string{"renew", "--san", "10.2.1.139,,lb.example", "--yes"}, want: []string{"--san", "empty value"}},
		{name: "san leading hyphen", args: []string{"renew", "apiserver", "--san", "-lb.example", "--yes"}, want: []string{"--san", "-lb.example"}},
		{name: "san on kubeconfig only", args: []string{"renew", "admin.conf", "--san", "10.2.1.139", "--yes"}, want: []string{"--san applies to serving certificates"}},
		{name: "unknown name", args: []string{"renew", "apiservr", "--yes"}, want: []string{`unknown certificate "apiservr"`}},
		{name: "CA named", args: []string{"renew", "ca", "--yes"}, want: []string{"ca is a CA"}},
		{name: "key pair named", args: []string{"renew", "sa", "--yes"}, want: []string{"sa is a key pair"}},
		{name: "kubelet cert named", args: []string{"renew", "kubelet-client", "--yes"}, want: []string{"kubelet-client belongs to the kubelet"}},
		{name: "all with names", args: []string{"renew", "all", "apiserver", "--yes"}, want: []string{`"all" cannot be combined`}},
		{name: "bad key mode", args: []string{"renew", "--key", "keep", "--yes"}, want: []string{`--key "keep"`, "rotate or reuse"}},
		{name: "reuse with algorithm", args: []string{"renew", "--key", "reuse", "--key-algorithm", "rsa-2048", "--yes"}, want: []string{"cannot be combined with --key reuse"}},
		{name: "bad key algorithm", args: []string{"renew", "--key-algorithm", "dsa-1024", "--yes"}, want: []string{`--key-algorithm "dsa-1024"`}},
		{name: "bad expiring window", args: []string{"renew", "--if-expiring-within", "30x", "--yes"}, want: []string{"--if-expiring-within", "invalid duration"}},
		{name: "no terminal no yes", args: []string{"renew", "all"}, want: []string{"not a terminal", "--yes"}},
		{name: "malformed PEM cert", mutate: replace("apiserver.crt", lit("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")), args: all,
			want: []string{"apiserver.crt"}},
		{name: "empty cert", mutate: replace("apiserver.crt", lit("")), args: all, want: []string{"apiserver.crt", "empty"}},
		{name: "garbage cert", mutate: replace("front-proxy-client.crt", lit("hello\n")), args: all, want: []string{"front-proxy-client.crt", "no PEM certificate"}},
		{name: "truncated key", mutate: replace("apiserver.key", func(t *testing.T, l pki.Layout) []byte {
			b := mustRead(t, pkiPath(l, "apiserver.key"))
			return b[:len(b)/2]
		}), args: all, want: []string{"apiserver.key"}},
		{name: "wrong key type: public key in key file", mutate: func(t *testing.T, l pki.Layout) {
			mustWrite(t, pkiPath(l, "apiserver-kubelet-client.key"), mustRead(t, pkiPath(l, "sa.pub")))
		}, args: all, want: []string{"apiserver-kubelet-client.key"}},
		{name: "wrong key type: certificate in key file", mutate: replace("etcd/peer.key", fileOf("etcd/peer.crt")), args: all, want: []string{"etcd/peer.key"}},
		{name: "leaf key mismatch", mutate: replace("etcd/server.key", fileOf("etcd/peer.key")), args: all,
			want: []string{"etcd-server", "etcd/server.key does not match certificate", "etcd/server.crt"}},
		{name: "leaf key mismatch named", mutate: replace("apiserver.key", fileOf("apiserver-etcd-client.key")), args: []string{"renew", "apiserver", "--san", "10.2.0.100", "--yes"},
			want: []string{"apiserver.key does not match certificate"}},
		{name: "CA key mismatch", mutate: replace("ca.key", fileOf("front-proxy-ca.key")), args: all,
			want: []string{"CA ca", "ca.key does not match CA certificate", "ca.crt"}},
		{name: "etcd CA key mismatch", mutate: replace("etcd/ca.key", fileOf("ca.key")), args: all,
			want: []string{"CA etcd-ca", "etcd/ca.key does not match"}},
		{name: "missing CA key (external CA)", mutate: func(t *testing.T, l pki.Layout) { os.Remove(pkiPath(l, "ca.key")) }, args: all,
			want: []string{"ca.key is not on this node", "external", "--csr-only"}},
		{name: "malformed CA key", mutate: replace("front-proxy-ca.key", lit("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n")), args: all,
			want: []string{"front-proxy-ca.key"}},
		{name: "missing leaf key", mutate: func(t *testing.T, l pki.Layout) { os.Remove(pkiPath(l, "front-proxy-client.key")) }, args: all,
			want: []string{"front-proxy-client.key is missing"}},
		{name: "missing leaf cert", mutate: func(t *testing.T, l pki.Layout) { os.Remove(pkiPath(l, "apiserver-kubelet-client.crt")) }, args: all,
			want: []string{"apiserver-kubelet-client.crt is missing"}},
		{name: "unreadable cert (a directory)", mutate: func(t *testing.T, l pki.Layout) {
			os.Remove(pkiPath(l, "etcd/healthcheck-client.crt"))
			os.Mkdir(pkiPath(l, "etcd/healthcheck-client.crt"), 0o700)
		}, args: all, want: []string{"etcd/healthcheck-client.crt", "is a directory"}},
		{name: "missing PKI dir", args: []string{"--pki-dir", "/nonexistent/pki", "renew", "all", "--yes"}, want: []string{"PKI directory", "/nonexistent/pki"}},
		{name: "kubeconfig does not parse", mutate: func(t *testing.T, l pki.Layout) {
			mustWrite(t, filepath.Join(l.KubeconfigDir, "admin.conf"), []byte("{{{ this is not yaml"))
		}, args: all, want: []string{"admin.conf", "not a valid kubeconfig"}},
		{name: "kubeconfig undefined context", mutate: func(t *testing.T, l pki.Layout) {
			p := filepath.Join(l.KubeconfigDir, "scheduler.conf")
			mustWrite(t, p, []byte(strings.Replace(string(mustRead(t, p)), "current-context: ", "current-context: nope", 1)))
		}, args: all, want: []string{"scheduler.conf", "is not defined"}},
		{name: "kubeconfig bad client cert data", mutate: func(t *testing.T, l pki.Layout) {
			p := filepath.Join(l.KubeconfigDir, "controller-manager.conf")
			s := string(mustRead(t, p))
			i := strings.Index(s, "client-certificate-data: ")
			j := strings.Index(s[i:], "\n")
			mustWrite(t, p, []byte(s[:i]+"client-certificate-data: aGVsbG8K"+s[i+j:]))
		}, args: all, want: []string{"controller-manager.conf"}},
		{name: "write error on journal", apply: failAt("write", renew.JournalName, 1, syscall.EIO), want: []string{"renew-journal.json", "input/output error", "nothing was changed"}},
		{name: "write error in backup", apply: failAt("writenew", "", 1, syscall.EIO), want: []string{"create backup", "input/output error", "nothing was changed"}},
		{name: "write error on backup manifest", apply: failAt("write", "manifest.json", 1, syscall.EIO), want: []string{"create backup", "manifest.json", "nothing was changed"}},
		{name: "disk full on the first staged file", apply: failAt("writenew", renew.StagedSuffix, 1, syscall.ENOSPC), want: []string{StagedSuffixName(), "no space left on device", "nothing was changed"}},
		{name: "disk full on the last staged file", apply: failAt("writenew", renew.StagedSuffix, -1, syscall.ENOSPC), want: []string{StagedSuffixName(), "no space left on device", "nothing was changed"}},
		{name: "fsync error on a directory", apply: failAt("syncdir", "", -4, syscall.EIO), want: []string{"fsync directory", "input/output error", "nothing was changed"}},
		{name: "write error on journal commit", apply: failAt("write", renew.JournalName, 2, syscall.EIO), want: []string{"input/output error", "nothing was changed"}},
		{name: "rename error on the first rename", apply: failAt("rename", "", 1, syscall.EIO), want: []string{"rename", "input/output error", "old files were restored", "nothing was changed"}},
		{name: "rename error in the middle", apply: failAt("rename", "", 9, syscall.EROFS), want: []string{"rename", "read-only file system", "old files were restored", "nothing was changed"}},
		{name: "files changed since the plan", apply: func(l pki.Layout) error {
			p, err := renew.NewPlan(l, renew.Options{Days: 365})
			if err != nil {
				return err
			}
			// another renewal got there first
			f := pkiPath(l, "etcd/peer.crt")
			os.WriteFile(f, append(mustRead(t, f), '\n'), 0o644)
			_, err = renew.Apply(p, renew.ApplyOptions{Command: "test", LockTimeout: time.Second})
			os.WriteFile(f, bytes.TrimSuffix(mustRead(t, f), []byte("\n")), 0o644)
			return err
		}, want: []string{"etcd/peer.crt changed since the plan"}},
		{name: "CA expired", mutate: func(t *testing.T, l pki.Layout) {
			os.RemoveAll(l.Root)
			os.MkdirAll(l.Root, 0o755)
			if _, err := sandbox.Create(sandbox.Options{Dir: l.Root, KeyAlgorithm: pki.AlgECDSAP256, Now: time.Now().Add(-3651 * 24 * time.Hour)}); err != nil {
				t.Fatal(err)
			}
		}, args: all, want: []string{"expired", "renew the CA before its leaves"}},
	}
	if len(cases) < 30 {
		t.Fatalf("only %d cases", len(cases))
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := newTree(t)
			if c.mutate != nil {
				c.mutate(t, l)
			}
			before := treeHash(t, l.Root)
			var msg string
			if c.apply != nil {
				err := c.apply(l)
				if err == nil {
					t.Fatal("no error")
				}
				msg = err.Error()
			} else {
				code, _, stderr := runCLI(l, c.args...)
				if code != cli.ExitError {
					t.Fatalf("exit %d, want %d; stderr %s", code, cli.ExitError, stderr)
				}
				msg = stderr
			}
			for _, w := range c.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
			if d := diffHash(before, treeHash(t, l.Root)); len(d) > 0 {
				t.Errorf("files changed:\n%s", strings.Join(d, "\n"))
			}
		})
	}
}

func StagedSuffixName() string { return renew.StagedSuffix }

// recordOps runs `renew all` on a copy and returns its writer operations.
func recordOps(t *testing.T) []string {
	l := newTree(t)
	w := &fsutil.OpLog{Writer: fsutil.OS{}}
	if err := applyWith(l, w); err != nil {
		t.Fatal(err)
	}
	return w.Ops
}

// TestFullDiskTmpfs runs certctl on a tree copied into a tmpfs too small for the backup and
// the new files: the renewal must fail with ENOSPC and change nothing.
func TestFullDiskTmpfs(t *testing.T) {
	src := template(t)
	// Size: what the tree occupies plus a little, so the first writes fit and later ones fail.
	var files int
	filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err == nil {
			files++
		}
		return nil
	})
	for _, extraPages := range []int{2, 12, 24} {
		t.Run("extra pages "+itoa(extraPages), func(t *testing.T) {
			mnt := t.TempDir()
			size := (files + extraPages) * 4096
			if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+itoa(size), "tmpfs", mnt).CombinedOutput(); err != nil {
				t.Skipf("cannot mount a tmpfs here (%v: %s); the injected ENOSPC cases of TestBadInputChangesNothing cover a full disk", err, out)
			}
			t.Cleanup(func() { exec.Command("umount", mnt).Run() })
			l := copyTree(t, src, mnt)
			before := treeHash(t, l.Root)
			code, _, stderr := runCLI(l, "renew", "all", "--yes")
			if code != cli.ExitError || !strings.Contains(stderr, "no space left on device") {
				t.Fatalf("exit %d stderr %q, want ENOSPC", code, stderr)
			}
			if d := diffHash(before, treeHash(t, l.Root)); len(d) > 0 {
				t.Errorf("files changed:\n%s", strings.Join(d, "\n"))
			}
			if err := checkPairs(l); err != nil {
				t.Error(err)
			}
		})
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
