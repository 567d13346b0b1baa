// Command incluster is a pod's API client as most are: client-go's in-cluster config (the
// service account's ca.crt read once, at start: kubernetes#119483), asking GET /version
// through the kubernetes Service every 100 ms on one long-lived transport. It prints one line
// per request: "<unix ms> ok" or "<unix ms> fail <error>". The lab's CA rotation test runs it
// on a worker from before phase trust to after phase drop.
package main

import (
	"fmt"
	"os"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

func main() {
	cfg, err := rest.InClusterConfig()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cfg.Timeout = 3 * time.Second
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for {
		_, err := cs.Discovery().ServerVersion()
		now := time.Now().UnixMilli()
		if err != nil {
			fmt.Printf("%d fail %v\n", now, err)
		} else {
			fmt.Printf("%d ok\n", now)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
