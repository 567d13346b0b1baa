//go:build deps

package certctl

import (
	_ "github.com/cloudflare/cfssl/signer/local"
	_ "github.com/spf13/cobra"
	_ "gopkg.in/yaml.v3"
	_ "k8s.io/client-go/tools/clientcmd"
	_ "k8s.io/client-go/kubernetes"
	_ "k8s.io/client-go/util/keyutil"
)
