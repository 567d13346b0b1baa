package pki

import (
	"fmt"
	"net"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	netutils "k8s.io/utils/net"
)

// ParseSANs validates --san style values (certctl renew, inspect --check-san, cluster renew,
// kubelet-serving issue --dns): IPs or DNS names, repeatable and comma-separated.
// The rules are Kubernetes' own (k8s.io/apimachinery/pkg/util/validation): an IP as the API
// server accepts it, or an RFC 1123 subdomain, optionally with a leading "*." wildcard label.
// Values are returned normalised (IPs in canonical form, names lower-case), without duplicates.
func ParseSANs(values []string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, v := range values {
		for _, s := range strings.Split(v, ",") {
			s = strings.TrimSpace(s)
			if s == "" {
				return nil, fmt.Errorf("empty value in %q: give one IP or DNS name per --san, or separate them with single commas", v)
			}
			var err error
			if s, err = parseSAN(s); err != nil {
				return nil, err
			}
			if !seen[s] {
				seen[s] = true
				out = append(out, s)
			}
		}
	}
	return out, nil
}

func parseSAN(s string) (string, error) {
	if looksLikeIP(s) {
		// Strict (no 0-prefixed IPv4 octets, no IPv4-mapped IPv6), but not canonical-only:
		// an operator may type 2001:DB8:0:0::1; it is written as 2001:db8::1.
		if errs := validation.IsValidIPForLegacyField(field.NewPath("san"), s, true, nil); len(errs) > 0 {
			return "", fmt.Errorf("%q is not a valid IP address: %s", s, errs[0].Detail)
		}
		return netutils.ParseIPSloppy(s).String(), nil
	}
	name := strings.ToLower(s)
	check := validation.IsDNS1123Subdomain
	if strings.HasPrefix(name, "*.") {
		check = validation.IsWildcardDNS1123Subdomain
	}
	errs := check(name)
	for _, label := range strings.Split(strings.TrimPrefix(name, "*."), ".") {
		if len(errs) == 0 {
			errs = validation.IsDNS1123Label(label) // a subdomain's labels are at most 63 characters
		}
	}
	if len(errs) > 0 {
		return "", fmt.Errorf("%q is neither an IP address nor a valid DNS name: %s", s, strings.Join(errs, "; "))
	}
	return name, nil
}

// looksLikeIP: digits and dots only (so 10.2.1.1390 is a mistyped IP, not a DNS name), or a
// colon (IPv6).
func looksLikeIP(s string) bool {
	return strings.Contains(s, ":") || strings.Trim(s, "0123456789.") == ""
}

// ParseIPs reads IP addresses given as flag values, repeatable and comma-separated (inspect
// --node-ip, kubelet-serving issue --ip).
func ParseIPs(values []string) ([]net.IP, error) {
	var out []net.IP
	for _, v := range values {
		for _, s := range strings.Split(v, ",") {
			ip := net.ParseIP(strings.TrimSpace(s))
			if ip == nil {
				return nil, fmt.Errorf("%q is not an IP address", s)
			}
			out = append(out, ip)
		}
	}
	return out, nil
}
