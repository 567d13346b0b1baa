// Command sleeper stands in for a node's long-running process (a kubelet, a kube-apiserver)
// in tests that look at the process table: copied under the binary's name, it takes any
// arguments and sleeps until it is killed.
package main

import (
	"os/signal"
	"syscall"
	"time"
)

func main() {
	// Like an apiserver draining, it ignores SIGTERM: only SIGKILL ends it.
	signal.Ignore(syscall.SIGTERM)
	for {
		time.Sleep(time.Hour)
	}
}
