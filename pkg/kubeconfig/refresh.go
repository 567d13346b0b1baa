package kubeconfig

import (
	"bytes"
	"fmt"
	"maps"
	"slices"

	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Change is one entry Merge touched.
type Change struct {
	Kind   string // cluster, user, context
	Name   string
	Action string // updated, added
}

// Merge returns a copy of target in which every entry that belongs to admin's cluster (a
// cluster with the same server URL or the same CA data) carries admin's current credentials:
// the cluster's server and CA data, and the client certificate and key of every user that a
// context pairs with such a cluster. Other clusters, users and contexts, and the current
// context, are kept. When target has no entry of this cluster, admin's cluster, user and
// context are added (under admin's names); an empty target becomes a copy of admin.
func Merge(target, admin *clientcmdapi.Config) (*clientcmdapi.Config, []Change, error) {
	src, err := CurrentCredentials("admin.conf", admin)
	if err != nil {
		return nil, nil, err
	}
	if !src.Embedded() {
		return nil, nil, fmt.Errorf("admin.conf: user %q has no embedded client certificate to copy", src.UserName)
	}
	srcCluster := admin.Clusters[src.ClusterName]
	if target == nil || (len(target.Clusters) == 0 && len(target.AuthInfos) == 0 && len(target.Contexts) == 0) {
		out := admin.DeepCopy()
		return out, []Change{{"cluster", src.ClusterName, "added"}, {"user", src.UserName, "added"}, {"context", src.Context, "added"}}, nil
	}
	out := target.DeepCopy()
	var changes []Change
	ours := map[string]bool{}
	for _, name := range slices.Sorted(maps.Keys(out.Clusters)) {
		c := out.Clusters[name]
		if c.Server != srcCluster.Server && !(len(c.CertificateAuthorityData) > 0 && bytes.Equal(c.CertificateAuthorityData, srcCluster.CertificateAuthorityData)) {
			continue
		}
		ours[name] = true
		if c.Server != srcCluster.Server || !bytes.Equal(c.CertificateAuthorityData, srcCluster.CertificateAuthorityData) || c.CertificateAuthority != "" {
			c.Server = srcCluster.Server
			c.CertificateAuthorityData = append([]byte(nil), srcCluster.CertificateAuthorityData...)
			c.CertificateAuthority = ""
			changes = append(changes, Change{"cluster", name, "updated"})
		}
	}
	users := map[string]bool{}
	for _, name := range slices.Sorted(maps.Keys(out.Contexts)) {
		if ctx := out.Contexts[name]; ctx != nil && ours[ctx.Cluster] {
			users[ctx.AuthInfo] = true
		}
	}
	for _, name := range slices.Sorted(maps.Keys(out.AuthInfos)) {
		u := out.AuthInfos[name]
		if !users[name] || u == nil {
			continue
		}
		if len(u.ClientCertificateData) == 0 && u.ClientCertificate == "" {
			continue // a token or exec user: not certctl's to change
		}
		if !bytes.Equal(u.ClientCertificateData, src.CertData) || !bytes.Equal(u.ClientKeyData, src.KeyData) {
			u.ClientCertificateData = append([]byte(nil), src.CertData...)
			u.ClientKeyData = append([]byte(nil), src.KeyData...)
			u.ClientCertificate, u.ClientKey = "", ""
			changes = append(changes, Change{"user", name, "updated"})
		}
	}
	if len(ours) == 0 {
		for kind, name := range map[string]string{"cluster": src.ClusterName, "user": src.UserName, "context": src.Context} {
			var exists bool
			switch kind {
			case "cluster":
				_, exists = out.Clusters[name]
			case "user":
				_, exists = out.AuthInfos[name]
			case "context":
				_, exists = out.Contexts[name]
			}
			if exists {
				return nil, nil, fmt.Errorf("the target has a %s named %q that belongs to another cluster: rename it, or give --to another file", kind, name)
			}
		}
		// A context that names a cluster or user the target lacks would be bound to the one
		// added under that name: its old credentials sent to the admin's server, or the
		// admin's credentials to its server (found by fuzzing, FuzzMerge).
		for _, cname := range slices.Sorted(maps.Keys(out.Contexts)) {
			ctx := out.Contexts[cname]
			if ctx == nil {
				continue
			}
			if ctx.Cluster == src.ClusterName || ctx.AuthInfo == src.UserName {
				return nil, nil, fmt.Errorf("the target's context %q names cluster %q and user %q, which admin.conf's would take the place of (the target does not define them): fix or remove that context, or give --to another file", cname, ctx.Cluster, ctx.AuthInfo)
			}
		}
		out.Clusters[src.ClusterName] = srcCluster.DeepCopy()
		out.AuthInfos[src.UserName] = admin.AuthInfos[src.UserName].DeepCopy()
		out.Contexts[src.Context] = admin.Contexts[src.Context].DeepCopy()
		changes = append(changes, Change{"cluster", src.ClusterName, "added"}, Change{"user", src.UserName, "added"}, Change{"context", src.Context, "added"})
		if out.CurrentContext == "" {
			out.CurrentContext = src.Context
		}
	}
	return out, changes, nil
}
