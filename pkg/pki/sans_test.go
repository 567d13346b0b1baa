package pki

import (
	"net"
	"strings"
	"testing"
)

func TestParseSANs(t *testing.T) {
	tests := []struct {
		in      []string
		want    string
		wantErr string
	}{
		{[]string{"10.2.1.139"}, "10.2.1.139", ""},
		{[]string{"10.2.1.139,10.2.0.100", "api.Example.com"}, "10.2.1.139,10.2.0.100,api.example.com", ""},
		{[]string{"10.2.1.139", "10.2.1.139"}, "10.2.1.139", ""},
		{[]string{"::1"}, "::1", ""},
		{[]string{"*.example.com"}, "*.example.com", ""},
		{[]string{"10.2.1.1390"}, "", "not a valid IP address"},
		{[]string{"a,,b"}, "", "empty value"},
		{[]string{"-bad.example.com"}, "", "neither an IP address nor a valid DNS name"},
		{[]string{"under_score"}, "", "neither"},
		{[]string{"http://x"}, "", "not a valid IP address"},
		{[]string{"api.example.com."}, "", "neither"},
		{[]string{"*.*.example.com"}, "", "neither"},
		{[]string{"a*.example.com"}, "", "neither"},
		{[]string{strings.Repeat("a", 64) + ".example.com"}, "", "neither"},
		{[]string{"10.2.1"}, "", "not a valid IP address"},
		{[]string{"2001:db8::zz"}, "", "not a valid IP address"},
		{[]string{"2001:DB8:0:0::1"}, "2001:db8::1", ""},
		{[]string{"*.Apps.Example.com"}, "*.apps.example.com", ""},
	}
	for _, tc := range tests {
		got, err := ParseSANs(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseSANs(%v) err %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || strings.Join(got, ",") != tc.want {
			t.Errorf("ParseSANs(%v) = %v, %v; want %s", tc.in, got, err, tc.want)
		}
	}
}

func TestParseIPs(t *testing.T) {
	for _, tc := range []struct {
		in      []string
		want    []net.IP
		wantErr bool
	}{
		{in: []string{"10.2.1.198"}, want: []net.IP{net.ParseIP("10.2.1.198")}},
		{in: []string{"10.2.1.198, fd00::5", "10.2.1.199"}, want: []net.IP{net.ParseIP("10.2.1.198"), net.ParseIP("fd00::5"), net.ParseIP("10.2.1.199")}},
		{in: nil},
		{in: []string{"worker-1"}, wantErr: true},
		{in: []string{"10.2.1.198,"}, wantErr: true},
	} {
		got, err := ParseIPs(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("ParseIPs(%q): err %v, want error %v", tc.in, err, tc.wantErr)
			continue
		}
		if len(got) != len(tc.want) {
			t.Errorf("ParseIPs(%q) = %v, want %v", tc.in, got, tc.want)
			continue
		}
		for i := range got {
			if !got[i].Equal(tc.want[i]) {
				t.Errorf("ParseIPs(%q) = %v, want %v", tc.in, got, tc.want)
			}
		}
	}
}
