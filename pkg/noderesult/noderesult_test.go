package noderesult_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/certctl/certctl/pkg/noderesult"
)

func TestRoundTrip(t *testing.T) {
	p := filepath.Join(t.TempDir(), "termination-log")
	want := noderesult.Result{Command: "ca rotate", Components: []string{"apiserver", "kubelet"}, KubeletRestarted: true}
	if err := noderesult.Write(p, want); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	got, err := noderesult.Parse(string(data))
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != noderesult.Version || got.Command != want.Command || !got.KubeletRestarted || !got.Touches("apiserver") || got.Touches("etcd") {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if err := noderesult.Write("", want); err != nil {
		t.Errorf("an empty path writes nothing: %v", err)
	}
}

func TestParseRefuses(t *testing.T) {
	tests := []struct{ name, msg, want string }{
		{"empty", "", "left no result record"},
		{"not a record", "kubelet restarted and healthy", "not a certctl result record"},
		{"other version", `{"version":"certctl.io/node-result/v9","kubeletRestarted":true}`, `version "certctl.io/node-result/v9"`},
		{"no version", `{"kubeletRestarted":true}`, `version ""`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := noderesult.Parse(tc.msg)
			if err == nil || r != nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%+v, %v; want an error containing %q", r, err, tc.want)
			}
			if tc.msg == "" && !errors.Is(err, noderesult.ErrNone) {
				t.Errorf("empty: %v, want ErrNone", err)
			}
		})
	}
}

func TestKubeletOnly(t *testing.T) {
	for _, tc := range []struct {
		restarted bool
		want      []string
	}{{false, nil}, {true, []string{"kubelet"}}} {
		r := noderesult.KubeletOnly("ca tokens", tc.restarted)
		if r.Command != "ca tokens" || r.KubeletRestarted != tc.restarted || !slices.Equal(r.Components, tc.want) || r.Touches("kubelet") != tc.restarted {
			t.Errorf("KubeletOnly(%v) = %+v", tc.restarted, r)
		}
	}
}
