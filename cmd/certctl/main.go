// Command certctl keeps the certificates of a kubeadm cluster alive. See cmd/cli.
package main

import (
	"os"

	"github.com/certctl/certctl/cmd/cli"
)

func main() { os.Exit(cli.Main()) }
