package kubeconfig

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"
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

// Where is where a command on a node finds its API client.
type Where struct {
	// Flag is --kubeconfig, resolved under the node's root: when set, the only file tried.
	Flag string
	// Admin and User are the node's admin.conf and the user's kubeconfig (~/.kube/config).
	Admin, User string
}

// AdminPath is the kubeconfig an admin-only edit (kubeadm-config) uses: Flag, else Admin.
func (w Where) AdminPath() string {
	if w.Flag != "" {
		return w.Flag
	}
	return w.Admin
}

// Config is the client kubectl on a control-plane node would use: Flag, else Admin, else
// User; in a pod with none of them (the in-cluster approver), its service account.
func (w Where) Config() (*rest.Config, error) {
	if w.Flag != "" {
		return RESTConfig([]string{w.Flag}, false)
	}
	return RESTConfig([]string{w.Admin, w.User}, true)
}

// PodConfig is the client of a command a CronJob runs (renew --lease, --events-node): the
// pod's service account first unless Flag is set, else Config; each request bounded to 10s.
func (w Where) PodConfig() (*rest.Config, error) {
	var rc *rest.Config
	if w.Flag == "" {
		rc, _ = rest.InClusterConfig()
	}
	if rc == nil {
		var err error
		if rc, err = w.Config(); err != nil {
			return nil, err
		}
	}
	rc.Timeout = 10 * time.Second
	return rc, nil
}

// AdminConfig is Flag, else Admin when the node has it; nil and no error when neither (a
// worker: its own credentials serve instead).
func (w Where) AdminConfig() (*rest.Config, error) {
	if w.Flag != "" {
		return RESTConfig([]string{w.Flag}, false)
	}
	rc, err := RESTConfig([]string{w.Admin}, false)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	return rc, err
}

// AdminClient is a client of AdminConfig; nil and no error when the node has no admin
// kubeconfig.
func (w Where) AdminClient() (kubernetes.Interface, error) {
	rc, err := w.AdminConfig()
	if err != nil || rc == nil {
		return nil, err
	}
	return kubernetes.NewForConfig(rc)
}
