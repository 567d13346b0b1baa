// Command pause is the lab's pod sandbox process (registry.k8s.io/pause): it holds the pod's
// namespaces, reaps orphans and exits on SIGINT or SIGTERM. The lab has no registry, so it
// builds its own pause image from this.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	// As the real pause (pause.c): -v prints its version and exits 0. kubeadm's upgrade
	// preflight runs a Job of the pause image with "-v" (CreateJob) and waits for it to complete.
	if len(os.Args) > 1 && strings.EqualFold(os.Args[1], "-v") {
		fmt.Println("pause.c certctl-lab")
		return
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			return
		}
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
