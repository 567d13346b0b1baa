//go:build failpoints

package failpoint_test

import (
	"context"
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/failpoint"
	"github.com/certctl/certctl/pkg/pki"
)

// TestBeforeStart, in a build with the failpoints tag, on a tree of the newest kubeadm: the
// line naming the component fires once (the apiserver's key no longer matches its certificate;
// break-file leaves front-proxy-ca.crt with no certificate, its mode kept; set-flag changes that
// one flag of the manifest about to go back, its mode kept) and is removed; the other lines
// stay; a line with an unknown action, set-flag where no manifest goes back or on a flag the
// manifest does not carry is an error.
func TestBeforeStart(t *testing.T) {
	if !failpoint.Enabled {
		t.Fatal("built without the failpoints tag")
	}
	tr := testenv.KubeadmTree(t, testenv.TreeOptions{Node: true})
	l := tr.Layout
	crt, key := filepath.Join(l.PKIDir, "apiserver.crt"), filepath.Join(l.PKIDir, "apiserver.key")
	if f, err := failpoint.BeforeStart(l, pki.CompAPIServer, ""); f != nil || err != nil {
		t.Fatalf("no failpoint file: %v %v", f, err)
	}
	if err := os.MkdirAll(l.StateDir(), 0o700); err != nil {
		t.Fatal(err)
	}
	lines := "before-start etcd break-key /etc/kubernetes/pki/etcd/server.key\n" +
		"before-start apiserver break-key /etc/kubernetes/pki/apiserver.key\n" +
		"before-start controller-manager break-file /etc/kubernetes/pki/front-proxy-ca.crt\n" +
		"before-start scheduler explode\n" +
		"before-start apiserver set-flag authorization-mode certctl-failpoint\n" +
		"before-start apiserver set-flag authorization-mode certctl-failpoint\n" +
		"before-start apiserver set-flag no-such-flag x\n"
	if err := os.WriteFile(failpoint.Path(l), []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	// The apiserver's manifest as a restart holds it aside, about to go back.
	staged := filepath.Join(t.TempDir(), "kube-apiserver.yaml")
	orig, err := os.ReadFile(filepath.Join(l.ManifestsDir, "kube-apiserver.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(staged, orig, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		component string
		manifest  string
		fires     bool
		wantErr   bool
	}{
		{pki.CompAPIServer, staged, true, false}, // break-key
		{pki.CompControllerManager, "", true, false},
		{pki.CompControllerManager, "", false, false}, // fired once, gone
		{pki.CompScheduler, "", true, true},
		{pki.CompAPIServer, staged, true, false}, // set-flag
		{pki.CompAPIServer, "", true, true},      // set-flag in a reload: no manifest
		{pki.CompAPIServer, staged, true, true},  // a flag the manifest does not carry
		{pki.CompAPIServer, staged, false, false},
	}
	for i, tc := range tests {
		f, err := failpoint.BeforeStart(l, tc.component, tc.manifest)
		if (f != nil) != tc.fires || (err != nil) != tc.wantErr {
			t.Errorf("%d: BeforeStart(%s) = %+v, %v; want fires %v, error %v", i, tc.component, f, err, tc.fires, tc.wantErr)
		}
	}
	if _, err := tls.LoadX509KeyPair(crt, key); err == nil {
		t.Errorf("%s still matches %s after break-key", key, crt)
	}
	fp := filepath.Join(l.PKIDir, "front-proxy-ca.crt")
	if data, err := os.ReadFile(fp); err != nil || strings.Contains(string(data), "-----BEGIN") {
		t.Errorf("%s after break-file: %v %q", fp, err, data)
	}
	if st, err := os.Stat(fp); err != nil {
		t.Error(err)
	} else if st.Mode().Perm() != 0o644 {
		t.Errorf("%s after break-file: mode %v, want 0644 kept", fp, st.Mode().Perm())
	}
	if _, err := tls.LoadX509KeyPair(filepath.Join(l.PKIDir, "etcd", "server.crt"), filepath.Join(l.PKIDir, "etcd", "server.key")); err != nil {
		t.Errorf("etcd's pair, whose line did not fire: %v", err)
	}
	edited, err := os.ReadFile(staged)
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Replace(string(orig), "--authorization-mode=Node,RBAC", "--authorization-mode=certctl-failpoint", 1)
	if want == string(orig) || string(edited) != want {
		t.Errorf("%s after set-flag:\n%s\nwant only --authorization-mode changed:\n%s", staged, edited, want)
	}
	if st, err := os.Stat(staged); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("%s after set-flag: %v %v, want mode 0600 kept", staged, st.Mode(), err)
	}
	left, err := os.ReadFile(failpoint.Path(l))
	if err != nil {
		t.Fatal(err)
	}
	if want := "before-start etcd break-key /etc/kubernetes/pki/etcd/server.key\n"; string(left) != want {
		t.Errorf("left in the file: %q, want %q", left, want)
	}
}

// TestBeforeRestart, in a build with the failpoints tag: hold-until keeps the restart from
// going on until its file exists (then the line is gone, fired once), ends with the context,
// and an unknown action or a missing path is an error.
// TestBeforeRestart covers the hold points: before-restart (the kubelet) and before-check (etcd).
func TestBeforeRestart(t *testing.T) {
	points := map[string]func(context.Context, pki.Layout) (*failpoint.Fired, error){
		"before-restart kubelet": func(ctx context.Context, l pki.Layout) (*failpoint.Fired, error) {
			return failpoint.BeforeRestart(ctx, l, "kubelet")
		},
		"before-check etcd": func(ctx context.Context, l pki.Layout) (*failpoint.Fired, error) {
			return failpoint.BeforeCheck(ctx, l, "etcd")
		},
	}
	tests := []struct {
		name    string
		point   string // what the code reaches
		line    string
		release bool // the held file is made while it holds
		cancel  bool // the context ends while it holds
		wantErr bool
	}{
		{name: "held until the file exists", point: "before-restart kubelet", line: "before-restart kubelet hold-until /etc/kubernetes/.certctl/release", release: true},
		{name: "held until the context ends", point: "before-restart kubelet", line: "before-restart kubelet hold-until /etc/kubernetes/.certctl/release", cancel: true, wantErr: true},
		{name: "another component", point: "before-restart kubelet", line: "before-restart apiserver hold-until /etc/kubernetes/.certctl/release"},
		{name: "unknown action", point: "before-restart kubelet", line: "before-restart kubelet explode", wantErr: true},
		{name: "no path", point: "before-restart kubelet", line: "before-restart kubelet hold-until", wantErr: true},
		{name: "etcd check held until the file exists", point: "before-check etcd", line: "before-check etcd hold-until /etc/kubernetes/.certctl/release", release: true},
		{name: "etcd check: a restart's line does not fire", point: "before-check etcd", line: "before-restart etcd hold-until /etc/kubernetes/.certctl/release"},
		{name: "etcd check: unknown action", point: "before-check etcd", line: "before-check etcd break-key /x", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := pki.NewLayout(pki.LayoutOptions{Root: t.TempDir()}) // a node's root, nothing else needed
			if err := os.MkdirAll(l.StateDir(), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(failpoint.Path(l), []byte(tc.line+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			type ret struct {
				f   *failpoint.Fired
				err error
			}
			done := make(chan ret, 1)
			go func() {
				f, err := points[tc.point](ctx, l)
				done <- ret{f, err}
			}()
			if tc.release || tc.cancel {
				// Holding: its line is gone (fired) and it has not returned.
				if err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
					data, err := os.ReadFile(failpoint.Path(l))
					return err == nil && !strings.Contains(string(data), tc.point), nil
				}); err != nil {
					t.Fatalf("the line did not fire: %v", err)
				}
				select {
				case r := <-done:
					t.Fatalf("returned before its file exists: %+v", r)
				default:
				}
				if tc.release {
					if err := os.WriteFile(filepath.Join(l.StateDir(), "release"), nil, 0o600); err != nil {
						t.Fatal(err)
					}
				} else {
					cancel()
				}
			}
			var r ret
			select {
			case r = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("still holding 10 s after its file was made or its context ended")
			}
			fires := strings.HasPrefix(tc.line, tc.point+" ")
			if (r.f != nil) != fires || (r.err != nil) != tc.wantErr {
				t.Errorf("%s = %+v, %v; want fired %v, error %v", tc.point, r.f, r.err, fires, tc.wantErr)
			}
		})
	}
}
