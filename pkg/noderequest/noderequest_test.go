package noderequest

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestArgs: each operation's command line, pinned (it is also the progress record's key of a
// cluster renew and part of a Job's identity: a rerun must find them again).
func TestArgs(t *testing.T) {
	rs := &Restart{StopGrace: Duration(3 * time.Second), LBDrain: Duration(3 * time.Second)}
	for _, tc := range []struct {
		name string
		r    Request
		want string // "" for an invalid request
	}{
		{"inspect", Request{Op: Inspect, Record: true}, "inspect"},
		{"renew on a cluster", Request{Op: Renew, Names: []string{"apiserver"}, SANs: []string{"10.2.1.139"}, SkipKubeadmConfig: true, Restart: rs},
			"renew apiserver --san 10.2.1.139 --skip-kubeadm-config --restart --yes --stop-grace 3s --lb-drain 3s"},
		{"renew plan", Request{Op: Renew, Names: []string{"all"}, Days: 365, IfExpiringWithin: "30d", DryRun: true, Restart: rs},
			"renew all --days 365 --if-expiring-within 30d --dry-run"},
		{"set-server", Request{Op: SetServer, Server: "https://10.2.1.139:6443", From: "https://10.2.1.151:6443", Result: true},
			"kubeconfig set-server https://10.2.1.139:6443 --from https://10.2.1.151:6443"},
		{"set-server plan", Request{Op: SetServer, Server: "https://lb:6443", DryRun: true}, "kubeconfig set-server https://lb:6443 --dry-run"},
		{"ca rotate trust", Request{Op: CARotate, Names: []string{"ca", "sa"}, Phase: "trust", NewCADir: "/rotation", Restart: rs},
			"ca rotate ca sa --phase trust --new-ca-dir /rotation --restart --stop-grace 3s --lb-drain 3s"},
		{"ca rotate rollback", Request{Op: CARotate, Names: []string{"ca"}, Phase: "issue", Rollback: true, Restart: &Restart{}}, "ca rotate ca --rollback --phase issue --restart"},
		{"ca rotate plan", Request{Op: CARotate, Names: []string{"ca"}, Phase: "trust", Generate: true, DryRun: true}, "ca rotate ca --phase trust --generate --dry-run"},
		{"ca show", Request{Op: CAShow, Names: []string{"etcd-ca", "front-proxy-ca"}, Record: true}, "ca show etcd-ca front-proxy-ca"},
		{"ca tokens", Request{Op: CATokens, File: "/rotation/sa.pub"}, "ca tokens --refresh --key /rotation/sa.pub"},
		{"kubelet-client install", Request{Op: KubeletClientInstall, File: "/rotation/kubelet-client.pem"}, "kubelet-client install /rotation/kubelet-client.pem"},
		{"kubelet-serving enable", Request{Op: KubeletServingEnable}, "kubelet-serving enable --new-certificate"},
		{"unknown op", Request{Op: "delete everything"}, ""},
		{"renew of nothing", Request{Op: Renew}, ""},
		{"ca rotate without a phase", Request{Op: CARotate, Names: []string{"ca"}}, ""},
		{"set-server without a server", Request{Op: SetServer}, ""},
		{"a dry run of what has none", Request{Op: CATokens, File: "/k", DryRun: true}, ""},
		{"a name that reads as a flag", Request{Op: Renew, Names: []string{"--root=/etc"}}, ""},
		{"a server that reads as a flag", Request{Op: SetServer, Server: "-h"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args, err := tc.r.Args()
			if tc.want == "" {
				if !errors.Is(err, ErrInvalid) {
					t.Errorf("got %q, %v; want ErrInvalid", args, err)
				}
				return
			}
			if got := strings.Join(args, " "); err != nil || got != tc.want {
				t.Errorf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// TestEncodeDecode: a request goes through the Job's arguments unchanged; another version, or
// what is not a request, is refused with a typed error naming both versions.
func TestEncodeDecode(t *testing.T) {
	r := Request{Op: Renew, Names: []string{"all"}, SANs: []string{"a.example"}, Restart: &Restart{StopGrace: Duration(2 * time.Second)}, Result: true}
	s, err := Encode(r)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(s)
	r.Version = Version
	if err != nil || !reflect.DeepEqual(*got, r) || !strings.Contains(s, `"stopGrace":"2s"`) {
		t.Fatalf("round trip: %+v, %v\n%s", got, err, s)
	}
	var ve *VersionError
	if _, err := Decode(strings.Replace(s, Version, "certctl.io/node-request/v2", 1)); !errors.As(err, &ve) || ve.Got != "certctl.io/node-request/v2" || !strings.Contains(err.Error(), Version) {
		t.Errorf("another version: %v", err)
	}
	for _, bad := range []string{"", "renew all", `{"version":"` + Version + `","op":"renew"}`, `{"version":"` + Version + `","op":"renew","names":["all"],"restart":{"stopGrace":"soon"}}`} {
		if _, err := Decode(bad); err == nil {
			t.Errorf("Decode(%q) accepted", bad)
		}
	}
	if _, err := Encode(Request{Op: "nothing"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("Encode of an invalid request: %v", err)
	}
}
