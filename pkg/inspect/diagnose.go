package inspect

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/certctl/certctl/pkg/pki"
)

// Options tune the diagnosis.
type Options struct {
	Now  time.Time     // defaults to time.Now()
	Warn time.Duration // expiring-soon window; defaults to 30 days
	// CheckSANs are addresses or names the apiserver certificate must cover (a load
	// balancer, a VIP): case B.
	CheckSANs []string
	// NodeIPs must be covered by the kubelet serving certificate (case A). Empty: taken from
	// the node's files (kubeadm-flags.env --node-ip, the apiserver's advertise address).
	NodeIPs []net.IP
}

// DefaultWarn is the default expiring-soon window.
const DefaultWarn = 30 * 24 * time.Hour

// Diagnose builds the report for inv.
func Diagnose(inv *pki.Inventory, o Options) *Report {
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if o.Warn == 0 {
		o.Warn = DefaultWarn
	}
	if len(o.NodeIPs) == 0 {
		o.NodeIPs = NodeIPs(inv.Layout)
	}
	r := &Report{GeneratedAt: o.Now.UTC().Truncate(time.Second), Root: inv.Layout.Root, ControlPlane: inv.ControlPlane,
		Role: string(inv.Role), RoleReason: inv.RoleReason}
	d := diagnoser{inv: inv, o: o}
	for _, it := range inv.Items {
		c := d.item(it)
		c.settle()
		r.Certificates = append(r.Certificates, c)
	}
	return r
}

type diagnoser struct {
	inv *pki.Inventory
	o   Options
}

func (d *diagnoser) item(it *pki.Item) Certificate {
	s := it.Spec
	c := Certificate{Name: s.Name, Kind: string(s.Kind), Path: it.Path, CA: s.CAName, DNSNames: []string{}, IPAddresses: []string{}, Findings: []Finding{}}
	base := filepath.Base(it.Path)
	if s.Loc == pki.LocUser {
		base = it.Path
	}
	switch {
	case it.Absent:
		c.Status = StatusAbsent
		return c
	case it.Missing:
		c.add(Finding{SevCritical, CodeMissing, fmt.Sprintf("%s is missing", it.Path), missingRemedy(s)})
		return c
	case it.CertErr != nil:
		c.add(Finding{SevCritical, CodeMalformed, it.CertErr.Error(), "restore the file from a backup ('certctl backup list', 'certctl restore ID') or re-create it with kubeadm"})
		return c
	}
	if s.Kind == pki.KindKeyPair {
		c.KeyAlgorithm = pki.KeyAlgorithm(it.PublicKey)
		if !it.Written.IsZero() {
			w := it.Written.UTC()
			c.KeyWritten = &w
		}
		d.keyChecks(&c, it, it.PublicKey, base)
		return c
	}
	cert := it.Cert()
	if cert == nil { // a kubeconfig authenticating with a token
		return c
	}
	fill(&c, cert)
	if s.Kind == pki.KindKubeletServing {
		// kubelet.crt is signed by a throw-away CA the kubelet made itself; a serving
		// certificate obtained through serverTLSBootstrap is signed by the cluster CA.
		c.CA = ""
		if ca, _ := d.caCert("ca"); ca != nil && verifySignedBy(cert, ca) == nil {
			c.CA = "ca"
		}
	}
	d.validity(&c, cert, base)
	d.keyChecks(&c, it, cert.PublicKey, base)
	d.chain(&c, it, cert, base)
	switch s.Kind {
	case pki.KindLeaf:
		if s.Name == "apiserver" {
			d.sans(&c, cert, base)
		}
	case pki.KindKubeletServing:
		d.kubeletServing(&c, cert, base)
	case pki.KindKubeconfig:
		d.kubeconfig(&c, it)
	}
	return c
}

func fill(c *Certificate, cert *x509.Certificate) {
	nb, na := cert.NotBefore.UTC(), cert.NotAfter.UTC()
	c.Subject = cert.Subject.String()
	c.CommonName, c.Organizations = cert.Subject.CommonName, cert.Subject.Organization
	c.Issuer = cert.Issuer.String()
	c.NotBefore, c.NotAfter = &nb, &na
	c.Serial = serialHex(cert.SerialNumber)
	c.DNSNames = append(c.DNSNames, cert.DNSNames...)
	for _, ip := range cert.IPAddresses {
		c.IPAddresses = append(c.IPAddresses, ip.String())
	}
	c.EmailAddresses = cert.EmailAddresses
	for _, u := range cert.URIs {
		c.URIs = append(c.URIs, u.String())
	}
	c.KeyAlgorithm = pki.KeyAlgorithm(cert.PublicKey)
}

func serialHex(n *big.Int) string {
	if n == nil {
		return ""
	}
	return fmt.Sprintf("%x", n)
}

func renewRemedy(s pki.Spec) string {
	switch s.Kind {
	case pki.KindCA:
		return caRotateRemedy(s.Name)
	case pki.KindKubeletServing:
		return "certctl kubelet-serving enable --approve"
	case pki.KindKubeletClient:
		return "the kubelet rotates this itself while it is valid; expired: certctl kubelet-client renew (on a worker: certctl kubelet-client renew --server HOST:6443 --token TOKEN --discovery-token-ca-cert-hash sha256:HASH, from kubeadm token create --print-join-command)"
	}
	if s.Loc == pki.LocUser {
		return "certctl kubeconfig refresh"
	}
	return "certctl renew " + s.Name
}

// RenewRemedy is the command that renews the certificate named name (an inventory name of
// pki.Default): what an expiry alert on it says to run.
func RenewRemedy(name string) string {
	for _, s := range pki.Default() {
		if s.Name == name {
			return renewRemedy(s)
		}
	}
	return "certctl renew " + name
}

func missingRemedy(s pki.Spec) string {
	switch s.Kind {
	case pki.KindCA, pki.KindKeyPair:
		return "restore it from a backup ('certctl backup list', 'certctl restore ID'); a new CA would invalidate every certificate it signed"
	case pki.KindKubeconfig:
		return "restore it from a backup, or re-create it: kubeadm init phase kubeconfig " + strings.TrimSuffix(s.Name, ".conf")
	case pki.KindKubeletServing:
		return "restart the kubelet (it writes a self-signed serving certificate), or certctl kubelet-serving enable --approve"
	case pki.KindKubeletClient:
		return "the kubelet cannot authenticate without it: certctl kubelet-client renew (on a worker: certctl kubelet-client renew --server HOST:6443 --token TOKEN --discovery-token-ca-cert-hash sha256:HASH, from kubeadm token create --print-join-command)"
	}
	return "restore it from a backup, or re-create it: kubeadm init phase certs " + s.Name
}

func (d *diagnoser) validity(c *Certificate, cert *x509.Certificate, base string) {
	now := d.o.Now
	switch {
	case now.Before(cert.NotBefore):
		c.add(Finding{SevCritical, CodeNotYetValid,
			fmt.Sprintf("%s is not valid until %s (%s from now): check the clock of the machine that signed it", base, cert.NotBefore.UTC().Format(time.RFC3339), Residual(cert.NotBefore.Sub(now))),
			"fix the clock, then " + renewRemedy(c.spec(d))})
	case !now.Before(cert.NotAfter):
		c.add(Finding{SevCritical, CodeExpired,
			fmt.Sprintf("%s expired on %s (%s ago)", base, cert.NotAfter.UTC().Format(time.RFC3339), Residual(now.Sub(cert.NotAfter))),
			renewRemedy(c.spec(d))})
	case cert.NotAfter.Sub(now) < d.o.Warn:
		c.add(Finding{SevWarning, CodeExpiringSoon,
			fmt.Sprintf("%s expires in %s, on %s", base, Residual(cert.NotAfter.Sub(now)), cert.NotAfter.UTC().Format(time.RFC3339)),
			renewRemedy(c.spec(d))})
	case c.Kind == string(pki.KindCA) && cert.NotAfter.Sub(now) < CARotationWindow:
		c.add(Finding{SevWarning, CodeCARotationDue,
			fmt.Sprintf("CA %s expires in %s, on %s: every certificate it signed stops verifying then, and a CA cannot be renewed in place", base, Residual(cert.NotAfter.Sub(now)), cert.NotAfter.UTC().Format(time.RFC3339)),
			caRotateRemedy(c.Name)})
	}
}

// caRotateRemedy is the remedy for a CA that expires (or expired): its rotation in phases.
func caRotateRemedy(name string) string {
	return "rotate it: certctl ca rotate " + name + " --phase trust --generate, then --phase issue, then --phase drop, on every node (see docs/ca-rotation.md)"
}

func (c *Certificate) spec(d *diagnoser) pki.Spec {
	for _, it := range d.inv.Items {
		if it.Spec.Name == c.Name {
			return it.Spec
		}
	}
	return pki.Spec{Name: c.Name}
}

func (d *diagnoser) keyChecks(c *Certificate, it *pki.Item, pub any, base string) {
	keyBase := filepath.Base(it.KeyPath)
	isCA := it.Spec.Kind == pki.KindCA
	switch {
	case it.KeyErr != nil:
		c.add(Finding{SevCritical, CodeKeyMalformed, it.KeyErr.Error(), "restore the key from a backup ('certctl restore ID')"})
	case it.KeyAbsent && isCA && !d.inv.ControlPlane:
		// A worker never has the CA key: kubeadm join copies only ca.crt.
	case it.KeyAbsent && isCA:
		c.add(Finding{SevInfo, CodeCAKeyAbsent,
			fmt.Sprintf("%s is not on this node: the CA is managed externally (or this is a secondary node); certificates it signs must be renewed with 'certctl renew --csr-only'", keyBase),
			"certctl renew --csr-only, then have the external CA sign the CSRs"})
	case it.KeyAbsent:
		c.add(Finding{SevCritical, CodeKeyMissing, fmt.Sprintf("%s has no private key (%s is missing)", base, it.KeyPath), "restore the key from a backup, or " + renewRemedy(it.Spec) + " --key rotate"})
	case it.Key != nil:
		if err := pki.VerifyKeyPair(pub, it.Key); err != nil {
			code, msg := CodeKeyMismatch, fmt.Sprintf("%s does not belong to %s: %v", keyBase, base, err)
			remedy := "restore the matching pair from a backup ('certctl restore ID'), or " + renewRemedy(it.Spec) + " --key rotate"
			if isCA {
				code = CodeCAKeyMismatch
				msg = fmt.Sprintf("CA certificate %s and CA key %s do not belong together: nothing can be signed until they do", base, keyBase)
				remedy = "restore the CA pair from a backup ('certctl backup list'); compare 'openssl x509 -noout -pubkey -in " + base + "' with 'openssl pkey -pubout -in " + keyBase + "'"
			}
			if it.Spec.Kind == pki.KindKeyPair {
				msg = fmt.Sprintf("sa.key and sa.pub do not belong together: service-account tokens will not verify")
			}
			c.add(Finding{SevCritical, code, msg, remedy})
		}
	}
}

func (d *diagnoser) caItem(name string) *pki.Item {
	if name == "" {
		return nil
	}
	it := d.inv.Get(name)
	if it == nil || it.Cert() == nil {
		return nil
	}
	return it
}

// caCert returns the certificate of the CA named name and the file it came from. On a
// worker the cluster CA is the one kubelet.conf trusts (the kubelet's client certificate must
// verify against what the kubelet itself uses), else pki/ca.crt.
func (d *diagnoser) caCert(name string) (*x509.Certificate, string) {
	if name == "ca" && !d.inv.ControlPlane {
		if kc := d.inv.Get("kubelet.conf"); kc != nil && len(kc.KubeconfigCA) > 0 {
			return kc.KubeconfigCA[0], "the CA in kubelet.conf"
		}
	}
	if it := d.caItem(name); it != nil {
		return it.Cert(), filepath.Base(it.Path)
	}
	if name != "ca" {
		return nil, ""
	}
	if kc := d.inv.Get("kubelet.conf"); kc != nil && len(kc.KubeconfigCA) > 0 {
		return kc.KubeconfigCA[0], "the CA in kubelet.conf"
	}
	return nil, ""
}

func (d *diagnoser) chain(c *Certificate, it *pki.Item, cert *x509.Certificate, base string) {
	if c.CA == "" || it.Spec.Kind == pki.KindCA {
		if it.Spec.Kind == pki.KindKubeletServing {
			c.add(Finding{SevWarning, CodeKubeletSelfSigned,
				fmt.Sprintf("%s is self-signed by the kubelet: clients that verify it (metrics-server, kubectl logs through a strict apiserver) fail unless they turn verification off with --kubelet-insecure-tls", base),
				"certctl kubelet-serving enable --approve"})
		}
		return
	}
	caCert, caName := d.caCert(c.CA)
	if caCert == nil {
		return // the CA's own row says what is wrong with it
	}
	if err := verifySignedBy(cert, caCert); err != nil {
		c.add(Finding{SevCritical, CodeNotSignedByCA,
			fmt.Sprintf("%s is not signed by %s (%s): %v", base, caName, caCert.Subject.CommonName, err),
			"it was issued by another CA (a different cluster, or a CA that was replaced): " + renewRemedy(it.Spec) + " --key rotate"})
		return
	}
	if cert.NotAfter.After(caCert.NotAfter) {
		c.add(Finding{SevWarning, CodeOutlivesCA,
			fmt.Sprintf("%s is valid until %s but its CA %s expires on %s: it stops verifying then", base, cert.NotAfter.UTC().Format(time.RFC3339), caName, caCert.NotAfter.UTC().Format(time.RFC3339)),
			"plan the CA rotation before " + caCert.NotAfter.UTC().Format("2006-01-02")})
	}
}

// verifySignedBy checks cert's issuer name and signature against ca.
func verifySignedBy(cert, ca *x509.Certificate) error {
	if !bytes.Equal(cert.RawIssuer, ca.RawSubject) {
		return fmt.Errorf("issuer %q is not the CA's subject %q", cert.Issuer.String(), ca.Subject.String())
	}
	if err := cert.CheckSignatureFrom(ca); err != nil {
		var ce x509.ConstraintViolationError
		if errors.As(err, &ce) {
			return fmt.Errorf("the CA certificate may not sign certificates: %w", err)
		}
		return fmt.Errorf("signature does not verify: %w", err)
	}
	return nil
}

// Covers reports whether cert's SANs cover host (an IP or a DNS name, wildcards honoured).
func Covers(cert *x509.Certificate, host string) bool {
	return cert.VerifyHostname(host) == nil
}

func (d *diagnoser) sans(c *Certificate, cert *x509.Certificate, base string) {
	for _, want := range d.o.CheckSANs {
		if Covers(cert, want) {
			continue
		}
		kind := "DNS name"
		if net.ParseIP(want) != nil {
			kind = "IP address"
		}
		c.add(Finding{SevCritical, CodeSANMissing,
			fmt.Sprintf("%s does not cover %s %s: clients that dial it (kubeadm join through a load balancer) fail TLS verification; it covers %s", base, kind, want, sanList(cert)),
			"certctl renew apiserver --san " + want})
	}
}

func sanList(cert *x509.Certificate) string {
	var out []string
	out = append(out, cert.DNSNames...)
	for _, ip := range cert.IPAddresses {
		out = append(out, ip.String())
	}
	if len(out) == 0 {
		return "nothing"
	}
	return strings.Join(out, ", ")
}

func (d *diagnoser) kubeletServing(c *Certificate, cert *x509.Certificate, base string) {
	if len(cert.IPAddresses) == 0 {
		c.add(Finding{SevCritical, CodeKubeletNoIPSANs,
			fmt.Sprintf("%s has no IP SANs (it covers %s): metrics-server fails with \"x509: cannot validate certificate for %s because it doesn't contain any IP SANs\"", base, sanList(cert), nodeIPText(d.o.NodeIPs)),
			"certctl kubelet-serving enable --approve (the kubelet then requests a certificate for " + nodeIPText(d.o.NodeIPs) + ")"})
		return
	}
	for _, ip := range d.o.NodeIPs {
		if !Covers(cert, ip.String()) {
			c.add(Finding{SevCritical, CodeKubeletIPMissing,
				fmt.Sprintf("%s does not cover the node IP %s (it covers %s)", base, ip, sanList(cert)),
				"certctl kubelet-serving enable --approve"})
		}
	}
}

func (d *diagnoser) kubeconfig(c *Certificate, it *pki.Item) {
	base := filepath.Base(it.Path)
	ca := d.caItem("ca")
	if ca != nil && len(it.KubeconfigCA) > 0 && !containsCert(it.KubeconfigCA, ca.Cert()) {
		c.add(Finding{SevCritical, CodeKubeconfigCAMismatch,
			fmt.Sprintf("%s trusts a different CA than %s: clients using it reject the apiserver", base, filepath.Base(ca.Path)),
			renewRemedy(it.Spec)})
	}
	if it.Spec.Loc != pki.LocUser {
		return
	}
	admin := d.inv.Get("admin.conf")
	if admin == nil || admin.Cert() == nil || it.Cert() == nil {
		return
	}
	sameCluster := ca != nil && containsCert(it.KubeconfigCA, ca.Cert())
	if sameCluster && !it.Cert().Equal(admin.Cert()) && it.Cert().NotAfter.Before(admin.Cert().NotAfter) {
		c.add(Finding{SevWarning, CodeKubeconfigStale,
			fmt.Sprintf("%s holds an older client certificate than admin.conf (expires %s, admin.conf's %s): kubectl keeps using the old one", it.Path, it.Cert().NotAfter.UTC().Format(time.RFC3339), admin.Cert().NotAfter.UTC().Format(time.RFC3339)),
			"certctl kubeconfig refresh"})
	}
}

func containsCert(list []*x509.Certificate, c *x509.Certificate) bool {
	for _, x := range list {
		if x.Equal(c) {
			return true
		}
	}
	return false
}

// Residual formats a duration the way kubeadm does: 364d, 23h, 59m.
func Residual(d time.Duration) string {
	if d < 0 {
		d = -d
	}
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	case d >= time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	case d >= time.Minute:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	}
	return fmt.Sprintf("%ds", int(d.Seconds()))
}

// nodeIPText names the node's IPs when known (--node-ip, kubeadm-flags.env), else says so.
func nodeIPText(ips []net.IP) string {
	if len(ips) == 0 {
		return "the node's IP (unknown here: give --node-ip)"
	}
	var out []string
	for _, ip := range ips {
		out = append(out, ip.String())
	}
	return strings.Join(out, ", ")
}
