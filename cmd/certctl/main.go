// Command certctl keeps the certificates of a kubeadm cluster alive. See cmd/cli.
package main

import (
	"os"

	"github.com/certctl/certctl/internal/initgc" // first: no collection while the other packages initialize

	"github.com/certctl/certctl/cmd/cli"
)

func main() {
	initgc.Restore()
	os.Exit(cli.Main())
}
