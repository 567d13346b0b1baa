package cli

import (
	"fmt"
	"net"
	"regexp"
	"strings"
)

// dnsName is RFC 1123 hostnames, with an optional leading wildcard label.
var dnsName = regexp.MustCompile(`^(\*\.)?([a-z0-9]([-a-z0-9]*[a-z0-9])?)(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)

// ParseSANs validates --san style values: IPs or DNS names, repeatable and comma-separated.
// Values are returned normalised (IPs in canonical form, names lower-case), without duplicates.
func ParseSANs(values []string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, v := range values {
		for _, s := range strings.Split(v, ",") {
			s = strings.TrimSpace(s)
			if s == "" {
				return nil, fmt.Errorf("empty value in %q", v)
			}
			if ip := net.ParseIP(s); ip != nil {
				s = ip.String()
			} else {
				s = strings.ToLower(s)
				if len(s) > 253 || !dnsName.MatchString(s) {
					return nil, fmt.Errorf("%q is neither an IP address nor a valid DNS name", s)
				}
				if looksLikeIP(s) {
					return nil, fmt.Errorf("%q is not a valid IP address", s)
				}
			}
			if !seen[s] {
				seen[s] = true
				out = append(out, s)
			}
		}
	}
	return out, nil
}

// looksLikeIP catches typos such as 10.2.1.1390 that would otherwise pass as DNS names.
func looksLikeIP(s string) bool {
	return regexp.MustCompile(`^[0-9.]+$`).MatchString(s)
}
