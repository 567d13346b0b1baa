package restart

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/certctl/certctl/pkg/pki"
)

func TestFindCRIEndpoint(t *testing.T) {
	tests := []struct {
		name, config, flags, want string
	}{
		{"kubelet config", "containerRuntimeEndpoint: unix:///run/lab/cri.sock\n", "", "/run/lab/cri.sock"},
		{"kubeadm-flags.env", "kind: KubeletConfiguration\n", `KUBELET_KUBEADM_ARGS="--container-runtime-endpoint=unix:///run/lab/cri.sock --pod-infra-container-image=x"` + "\n", "/run/lab/cri.sock"},
		{"config names a socket that is not there", "containerRuntimeEndpoint: unix:///run/none.sock\n", "", ""},
		{"nothing", "", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root, err := os.MkdirTemp("", "cri")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(root) })
			l := pki.NewLayout(pki.LayoutOptions{Root: root})
			if err := os.MkdirAll(filepath.Join(root, "run", "lab"), 0o755); err != nil {
				t.Fatal(err)
			}
			ln, err := net.Listen("unix", filepath.Join(root, "run", "lab", "cri.sock"))
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			if err := os.MkdirAll(l.KubeletDir, 0o755); err != nil {
				t.Fatal(err)
			}
			if tc.config != "" {
				if err := os.WriteFile(filepath.Join(l.KubeletDir, "config.yaml"), []byte(tc.config), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if tc.flags != "" {
				if err := os.WriteFile(filepath.Join(l.KubeletDir, "kubeadm-flags.env"), []byte(tc.flags), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want := tc.want
			if want != "" {
				want = filepath.Join(root, want)
			}
			if got := FindCRIEndpoint(l); got != want {
				t.Errorf("got %q, want %q", got, want)
			}
		})
	}
}
