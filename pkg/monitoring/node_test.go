package monitoring_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	authorizationv1 "k8s.io/api/authorization/v1"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/inspect"
	"github.com/certctl/certctl/pkg/monitoring"
)

// TestInspectNode is `certctl inspect` on a tree made by the real kubeadm: the textfile for
// node_exporter (written whole, parsing as Prometheus' text format, one series per
// certificate), the API's answer on the kubelet client's rights turned into a finding, and the
// errors of --api and --textfile-dir named, nothing written then.
func TestInspectNode(t *testing.T) {
	if testing.Short() {
		t.Skip("runs kubeadm")
	}
	tr := testenv.KubeadmTree(t, testenv.TreeOptions{})
	deny := func(context.Context, string, []string, authorizationv1.ResourceAttributes) (bool, error) {
		return false, nil
	}
	allow := func(context.Context, string, []string, authorizationv1.ResourceAttributes) (bool, error) {
		return true, nil
	}
	broken := func(context.Context, string, []string, authorizationv1.ResourceAttributes) (bool, error) {
		return false, errors.New("connection refused")
	}
	for _, tc := range []struct {
		name      string
		review    inspect.AccessReviewer
		textfile  string // "" none, "dir" a temp dir, "missing" a dir that does not exist
		forbidden bool
		err       string
	}{
		{name: "files only"},
		{name: "textfile", textfile: "dir"},
		{name: "the API denies the kubelet client", review: deny, forbidden: true},
		{name: "the API allows it", review: allow},
		{name: "the API unreachable", review: broken, textfile: "dir", err: "--api: connection refused"},
		{name: "no textfile dir", textfile: "missing", err: "--textfile-dir"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := monitoring.NodeOptions{Layout: tr.Layout, Review: tc.review}
			switch tc.textfile {
			case "dir":
				o.Textfile = t.TempDir()
			case "missing":
				o.Textfile = filepath.Join(t.TempDir(), "nope")
			}
			rep, _, err := monitoring.InspectNode(context.Background(), o)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %v, want an error saying %q", err, tc.err)
				}
				if o.Textfile != "" {
					if entries, _ := os.ReadDir(o.Textfile); len(entries) != 0 {
						t.Errorf("a failed run left %d file(s) in the textfile dir", len(entries))
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Certificates) < 10 {
				t.Fatalf("%d certificates in a kubeadm tree's report", len(rep.Certificates))
			}
			var codes []string
			for _, c := range rep.Certificates {
				for _, f := range c.Findings {
					codes = append(codes, f.Code)
				}
			}
			if got := slices.Contains(codes, inspect.CodeKubeletAPIForbidden); got != tc.forbidden {
				t.Errorf("kubelet-api-forbidden reported %v, want %v (codes %v)", got, tc.forbidden, codes)
			}
			if o.Textfile == "" {
				return
			}
			f, err := os.Open(filepath.Join(o.Textfile, "certctl.prom"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			p := expfmt.NewTextParser(model.LegacyValidation)
			families, err := p.TextToMetricFamilies(f)
			if err != nil {
				t.Fatalf("certctl.prom is not Prometheus' text format: %v", err)
			}
			if len(families) == 0 {
				t.Fatal("certctl.prom has no metric")
			}
			if entries, _ := os.ReadDir(o.Textfile); len(entries) != 1 {
				t.Errorf("the textfile dir holds %d files, want certctl.prom alone (no temp file left)", len(entries))
			}
		})
	}
}
