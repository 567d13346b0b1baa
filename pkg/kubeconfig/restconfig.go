package kubeconfig

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// ErrNotFound is wrapped by RESTConfig's error when none of the kubeconfigs exists (a worker
// has no admin credentials).
var ErrNotFound = errors.New("no kubeconfig found")

// RESTConfig is the client configuration of the first of paths that exists (QPS 50, burst
// 100: a cluster command talks to many nodes); when none does and inCluster, the pod's own
// (a CronJob, the in-cluster approver). A file that does not parse is an error naming it.
func RESTConfig(paths []string, inCluster bool) (*rest.Config, error) {
	var tried []string
	for _, p := range paths {
		if _, err := os.Stat(p); err != nil {
			tried = append(tried, p)
			continue
		}
		rc, err := clientcmd.BuildConfigFromFlags("", p)
		if err != nil {
			return nil, fmt.Errorf("kubeconfig %s: %w (fix the file or give another with --kubeconfig)", p, err)
		}
		rc.QPS, rc.Burst = 50, 100
		return rc, nil
	}
	if inCluster {
		if rc, err := rest.InClusterConfig(); err == nil {
			return rc, nil
		}
	}
	return nil, fmt.Errorf("%w (tried %s): give --kubeconfig", ErrNotFound, strings.Join(tried, ", "))
}
