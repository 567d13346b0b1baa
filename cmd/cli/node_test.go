package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certctl/certctl/pkg/inspect"
	"github.com/certctl/certctl/pkg/noderequest"
	"github.com/certctl/certctl/pkg/noderesult"
	"github.com/certctl/certctl/pkg/sandbox"
)

// TestNodeRun: what a node Job runs, `certctl --root /host node run --request JSON`, on sandbox
// trees: the request's command runs there with the global flags given, its record and result
// go where the request says, its exit code is the command's; a request of another version, or
// one that makes no command, is refused before anything runs.
func TestNodeRun(t *testing.T) {
	broken := sandboxTree(t, sandbox.Options{Faults: sandbox.AllFaults})
	healthy := sandboxTree(t, sandbox.Options{})
	enc := func(r noderequest.Request) string {
		s, err := noderequest.Encode(r)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}

	// inspect, as cluster status runs it: the report as a record, the exit code inspect's.
	code, out, errOut := run(t, "--root", broken, "node", "run", "--request", enc(noderequest.Request{Op: noderequest.Inspect, Record: true}))
	var rep inspect.Report
	if err := noderesult.ReadRecord(out, noderesult.KindInspect, &rep); code != ExitCritical || err != nil || rep.Worst() != inspect.SevCritical {
		t.Fatalf("inspect: exit %d, %v\n%s%s", code, err, out, errOut)
	}

	// kubeconfig set-server, as cluster endpoint runs it: the typed result where asked.
	res := filepath.Join(t.TempDir(), "termination-log")
	req := noderequest.Request{Op: noderequest.SetServer, Server: "https://10.9.9.9:6443", Result: true}
	code, out, errOut = run(t, "--root", healthy, "--result-file", res, "node", "run", "--request", enc(req))
	data, err := os.ReadFile(res)
	r, perr := noderesult.Parse(string(data))
	// The sandbox's kubelet.conf names the node's own apiserver (ControlPlaneKubeletLocalMode):
	// admin.conf moves, the kubelet is not restarted.
	if code != ExitOK || err != nil || perr != nil || r.Command != "kubeconfig set-server" || r.KubeletRestarted || !strings.Contains(out, "admin.conf: moved") {
		t.Errorf("set-server: exit %d, result %+v (%v, %v)\n%s%s", code, r, err, perr, out, errOut)
	}

	for _, tc := range []struct{ name, request, want string }{
		{"another version", `{"version":"certctl.io/node-request/v9","op":"inspect"}`, `version "certctl.io/node-request/v9"; this certctl reads "` + noderequest.Version + `"`},
		{"no command", `{"version":"` + noderequest.Version + `","op":"format disks"}`, "unknown operation"},
		{"not JSON", `inspect`, "not JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := run(t, "--root", healthy, "node", "run", "--request", tc.request)
			if code != ExitError || !strings.Contains(errOut, tc.want) || out != "" {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d saying %q", code, out, errOut, ExitError, tc.want)
			}
		})
	}
}
