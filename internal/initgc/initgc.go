// Package initgc turns the garbage collector off while the program's packages initialize and
// gives it back in main (Restore). certctl links client-go, cfssl (and zlint), the etcd and CRI
// clients: their package inits allocate about 5 MB, which made the collector run during
// start-up for ~7 ms of a 75 ms `certctl inspect` (GODEBUG=inittrace=1; bench/run.sh). Imported
// first by main, it initializes before them: Go initializes the packages whose imports are
// ready in the order of their import paths, and this one needs only runtime/debug.
package initgc

import "runtime/debug"

// percent is the GOGC the program started with (the GOGC environment variable, default 100).
var percent = debug.SetGCPercent(-1)

// Restore gives the collector back its setting; main calls it first.
func Restore() { debug.SetGCPercent(percent) }
