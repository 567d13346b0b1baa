package cli

import (
	"bytes"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/certctl/certctl/pkg/inspect"
	"github.com/certctl/certctl/pkg/noderesult"
	"github.com/certctl/certctl/pkg/pki"
	"github.com/certctl/certctl/pkg/sandbox"
)

func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := Execute(args, Streams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut})
	return code, out.String(), errOut.String()
}

func sandboxTree(t *testing.T, o sandbox.Options) string {
	t.Helper()
	o.Dir = t.TempDir()
	o.KeyAlgorithm = pki.AlgECDSAP256
	if _, err := sandbox.Create(o); err != nil {
		t.Fatal(err)
	}
	return o.Dir
}

func TestInspectExitCodes(t *testing.T) {
	healthy := sandboxTree(t, sandbox.Options{})
	expiring := sandboxTree(t, sandbox.Options{LeafValidity: 10 * 24 * time.Hour})
	broken := sandboxTree(t, sandbox.Options{Faults: sandbox.AllFaults})
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{"healthy", []string{"--root", healthy, "inspect"}, ExitOK, "No findings.", ""},
		{"warnings only", []string{"--root", expiring, "inspect"}, ExitWarning, "[expiring-soon]", ""},
		{"a shorter warning window makes it healthy", []string{"--root", expiring, "inspect", "--warn", "5d"}, ExitOK, "No findings.", ""},
		{"critical", []string{"--root", broken, "inspect"}, ExitCritical, "[expired]", ""},
		{"case B through --check-san", []string{"--root", healthy, "inspect", "--check-san", "10.9.8.7,api.example.com"}, ExitCritical, "does not cover IP address 10.9.8.7", ""},
		{"json", []string{"--root", healthy, "inspect", "-o", "json"}, ExitOK, `"certificates": [`, ""},
		{"yaml", []string{"--root", healthy, "inspect", "-o", "yaml"}, ExitOK, "certificates:", ""},
		// As cluster status's Jobs run it: one record line, the exit code as without it.
		{"record", []string{"--root", broken, "--record", "inspect"}, ExitCritical, noderesult.RecordVersion + " inspect {", ""},
		{"wide shows SANs", []string{"--root", healthy, "inspect", "-o", "wide"}, ExitOK, "kubernetes.default.svc.cluster.local", ""},
		{"unknown format", []string{"--root", healthy, "inspect", "-o", "xml"}, ExitError, "", `unknown output format "xml"`},
		{"bad --warn", []string{"--root", healthy, "inspect", "--warn", "soon"}, ExitError, "", `"--warn" flag: invalid duration "soon"`},
		{"bad --check-san", []string{"--root", healthy, "inspect", "--check-san", "10.2.1.1390"}, ExitError, "", `"10.2.1.1390" is not a valid IP address`},
		{"bad --check-san name", []string{"--root", healthy, "inspect", "--check-san", "bad_name!"}, ExitError, "", "neither an IP address nor a valid DNS name"},
		{"bad --node-ip", []string{"--root", healthy, "inspect", "--node-ip", "node1"}, ExitError, "", `invalid argument "node1" for "--node-ip" flag`},
		{"unknown flag", []string{"inspect", "--nope"}, ExitError, "", "unknown flag: --nope"},
		{"empty root: everything absent, healthy", []string{"--root", t.TempDir(), "inspect"}, ExitOK, "absent", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := run(t, tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, out, errOut)
			}
			if !strings.Contains(out, tc.stdout) || !strings.Contains(errOut, tc.stderr) {
				t.Fatalf("stdout/stderr do not contain %q / %q\nstdout:\n%s\nstderr:\n%s", tc.stdout, tc.stderr, out, errOut)
			}
			if slices.Contains(tc.args, "--record") {
				var rep inspect.Report
				if err := noderesult.ReadRecord(out, noderesult.KindInspect, &rep); err != nil || len(rep.Certificates) == 0 || rep.Worst() != inspect.SevCritical || strings.Count(out, "\n") != 1 {
					t.Fatalf("record: %d certificates, worst %v, %v\n%s", len(rep.Certificates), rep.Worst(), err, out)
				}
			}
		})
	}
}

func TestSandboxCreate(t *testing.T) {
	dir := t.TempDir()
	code, out, errOut := run(t, "sandbox", "create", dir, "--faults", "apiserver-expired", "--key-algorithm", "ecdsa-p256")
	if code != ExitOK || !strings.Contains(out, "faults: apiserver-expired") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	code, out, _ = run(t, "--root", dir, "inspect", "-o", "json")
	if code != ExitCritical || !strings.Contains(out, `"code": "expired"`) {
		t.Fatalf("inspect after sandbox: exit %d\n%s", code, out)
	}
	for _, tc := range []struct {
		args   []string
		stderr string
	}{
		{[]string{"sandbox", "create", dir}, "already holds a PKI"},
		{[]string{"sandbox", "create", t.TempDir(), "--faults", "bogus"}, `unknown fault "bogus"`},
		{[]string{"sandbox", "create", t.TempDir(), "--node-ip", "x"}, `invalid argument "x" for "--node-ip" flag`},
		{[]string{"sandbox", "create", t.TempDir(), "--key-algorithm", "dsa"}, `unknown key algorithm "dsa"`},
	} {
		code, _, errOut := run(t, tc.args...)
		if code != ExitError || !strings.Contains(errOut, tc.stderr) {
			t.Errorf("%v: exit %d stderr %q, want 3 and %q", tc.args, code, errOut, tc.stderr)
		}
	}
}

func sandboxOpts() sandbox.Options { return sandbox.Options{} }

// TestSandboxRelativeDir: a sandbox made under a relative directory is whole (the kubelet's
// symlinks resolve), so the demo tree has exactly the planted faults.
func TestSandboxRelativeDir(t *testing.T) {
	wd, _ := os.Getwd()
	t.Cleanup(func() { os.Chdir(wd) })
	if err := os.Chdir(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := run(t, "sandbox", "create", "node", "--faults", "none", "--key-algorithm", "ecdsa-p256"); code != ExitOK {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	code, out, _ := run(t, "--root", "node", "inspect")
	if code != ExitOK || !strings.Contains(out, "No findings.") {
		t.Fatalf("relative sandbox: exit %d\n%s", code, out)
	}
}

// TestRenewRestartRefusesFirst: renew --restart on a node whose static pods no kubelet runs (a
// sandbox tree) refuses before anything is renewed; a bad --stop-grace is refused the same way.
func TestRenewRestartRefusesFirst(t *testing.T) {
	root := sandboxTree(t, sandbox.Options{})
	crt := root + "/etc/kubernetes/pki/apiserver.crt"
	before, err := os.ReadFile(crt)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args   []string
		stderr string
	}{
		{[]string{"--root", root, "renew", "apiserver", "--yes", "--restart"}, "nothing was renewed"},
		{[]string{"--root", root, "renew", "apiserver", "--yes", "--restart", "--stop-grace=-1s"}, "--stop-grace -1s: want a duration >= 0"},
	} {
		code, _, errOut := run(t, tc.args...)
		if code != ExitError || !strings.Contains(errOut, tc.stderr) {
			t.Errorf("%v: exit %d, stderr %q; want 3 and %q", tc.args, code, errOut, tc.stderr)
		}
		if after, _ := os.ReadFile(crt); !bytes.Equal(after, before) {
			t.Fatalf("%v changed %s", tc.args, crt)
		}
	}
	// Without --restart (and on a dry run) the same tree renews: the refusal is --restart's.
	if code, _, errOut := run(t, "--root", root, "renew", "apiserver", "--dry-run", "--restart"); code != ExitOK {
		t.Fatalf("renew --dry-run --restart: exit %d: %s", code, errOut)
	}
}

// TestBackupListRestore: a renewal's backup is listed and restored through the CLI, and the
// restore says where the files it replaced went.
func TestBackupListRestore(t *testing.T) {
	root := sandboxTree(t, sandbox.Options{})
	if code, out, _ := run(t, "--root", root, "backup", "list"); code != ExitOK || !strings.Contains(out, "no backups under") {
		t.Fatalf("backup list on a new tree: exit %d\n%s", code, out)
	}
	crt := root + "/etc/kubernetes/pki/apiserver.crt"
	before, err := os.ReadFile(crt)
	if err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := run(t, "--root", root, "renew", "apiserver", "--yes"); code != ExitOK {
		t.Fatalf("renew: exit %d: %s", code, errOut)
	}
	code, out, _ := run(t, "--root", root, "backup", "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != ExitOK || len(lines) != 2 || !strings.HasPrefix(lines[0], "ID") || !strings.Contains(lines[1], "certctl") {
		t.Fatalf("backup list after a renewal: exit %d\n%s", code, out)
	}
	id := strings.Fields(lines[1])[0]
	code, out, errOut := run(t, "--root", root, "restore", id)
	if code != ExitOK || !strings.Contains(out, "restored backup "+id) || !strings.Contains(out, "apiserver.crt") || !strings.Contains(out, "the previous files are in backup ") {
		t.Fatalf("restore %s: exit %d\n%s%s", id, code, out, errOut)
	}
	if after, _ := os.ReadFile(crt); !bytes.Equal(after, before) {
		t.Errorf("restore %s did not put apiserver.crt back", id)
	}
}

func TestMonitoringOutputs(t *testing.T) {
	for _, tc := range []struct {
		args         []string
		code         int
		stdout, errs string
	}{
		{[]string{"monitoring", "rules"}, ExitOK, "groups:", ""},
		{[]string{"monitoring", "rules", "-o", "prometheusrule", "--label", "release=kps", "--namespace", "mon"}, ExitOK, "release: kps", ""},
		{[]string{"monitoring", "rules", "-o", "prometheusrule", "--label", "release"}, ExitError, "", `"--label" flag`},
		{[]string{"monitoring", "rules", "-o", "xml"}, ExitError, "", `unknown output format "xml" (want rules or prometheusrule)`},
		{[]string{"monitoring", "dashboard", "-o", "configmap", "--namespace", "grafana"}, ExitOK, "namespace: grafana", ""},
		{[]string{"monitoring", "dashboard", "-o", "provider", "--dir", "/d"}, ExitOK, "/d", ""},
		{[]string{"monitoring", "dashboard", "-o", "xml"}, ExitError, "", `unknown output format "xml" (want json, provider or configmap)`},
	} {
		code, out, errOut := run(t, tc.args...)
		if code != tc.code || !strings.Contains(out, tc.stdout) || !strings.Contains(errOut, tc.errs) {
			t.Errorf("%v: exit %d, stdout %.200q, stderr %q", tc.args, code, out, errOut)
		}
	}
}
