// Package txn changes a set of files on a node as one crash-safe transaction under the node
// lock: a journal names every file and the SHA-256 of its new content, new contents are
// staged beside their targets, and only once all are durable are they renamed into place.
// Recover, which every certctl command runs first, rolls an interrupted transaction back
// (nothing replaced yet) or forward (the journal reached "commit"). renew, restore (and so
// restart's rollback) and kubelet-serving enable all write through it, so a kill at any
// instant leaves every certificate with its matching key.
package txn
