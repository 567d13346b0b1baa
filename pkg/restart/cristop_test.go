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
		name, config, instance, flags, want string
	}{
		{"kubelet config", "containerRuntimeEndpoint: unix:///run/lab/cri.sock\n", "", "", "/run/lab/cri.sock"},
		{"kubeadm-flags.env (kubeadm <= 1.35)", "kind: KubeletConfiguration\n", "", `KUBELET_KUBEADM_ARGS="--container-runtime-endpoint=unix:///run/lab/cri.sock --pod-infra-container-image=x"` + "\n", "/run/lab/cri.sock"},
		// kubeadm 1.36+ (NodeLocalCRISocket): the socket is in instance-config.yaml, and
		// kubeadm-flags.env holds only --hostname-override; a config.yaml taken from the
		// cluster-wide ConfigMap names none.
		{"instance-config.yaml (kubeadm >= 1.36)", "kind: KubeletConfiguration\n", `containerRuntimeEndpoint: "unix:///run/lab/cri.sock"` + "\n", `KUBELET_KUBEADM_ARGS="--hostname-override=cp1"` + "\n", "/run/lab/cri.sock"},
		{"config.yaml wins over instance-config.yaml", "containerRuntimeEndpoint: unix:///run/lab/cri.sock\n", `containerRuntimeEndpoint: "unix:///run/none.sock"` + "\n", "", "/run/lab/cri.sock"},
		{"config names a socket that is not there", "containerRuntimeEndpoint: unix:///run/none.sock\n", "", "", ""},
		{"nothing", "", "", "", ""},
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
			if tc.instance != "" {
				if err := os.WriteFile(filepath.Join(l.KubeletDir, "instance-config.yaml"), []byte(tc.instance), 0o644); err != nil {
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
