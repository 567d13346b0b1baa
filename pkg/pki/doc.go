// Package pki models the certificates of a kubeadm node as data: the spec list (which CA,
// which files, which components use them), loading each item from disk under a root, and
// strict PEM and key parsing. It never prints; callers render what it returns.
package pki
