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
		{"bad --warn", []string{"--root", healthy, "inspect", "--warn", "soon"}, ExitError, "", `--warn: invalid duration "soon"`},
		{"bad --check-san", []string{"--root", healthy, "inspect", "--check-san", "10.2.1.1390"}, ExitError, "", `"10.2.1.1390" is not a valid IP address`},
		{"bad --check-san name", []string{"--root", healthy, "inspect", "--check-san", "bad_name!"}, ExitError, "", "neither an IP address nor a valid DNS name"},
		{"bad --node-ip", []string{"--root", healthy, "inspect", "--node-ip", "node1"}, ExitError, "", `--node-ip: "node1" is not an IP address`},
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
		{[]string{"sandbox", "create", t.TempDir(), "--node-ip", "x"}, `--node-ip: "x" is not an IP address`},
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
