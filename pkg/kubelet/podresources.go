package kubelet

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	podresourcesv1 "k8s.io/kubelet/pkg/apis/podresources/v1"
)

// PodRef names a pod.
type PodRef struct{ Namespace, Name string }

func (p PodRef) String() string { return p.Namespace + "/" + p.Name }

// The environment variables through which a node Job tells certctl its own pod (the downward
// API: metadata.namespace and metadata.name).
const (
	EnvPodNamespace = "CERTCTL_POD_NAMESPACE"
	EnvPodName      = "CERTCTL_POD_NAME"
)

// SelfFromEnv is the pod certctl runs in, as a node Job tells it (EnvPodNamespace, EnvPodName);
// nil when certctl does not run in one (on the node itself).
func SelfFromEnv() *PodRef {
	ns, name := os.Getenv(EnvPodNamespace), os.Getenv(EnvPodName)
	if ns == "" || name == "" {
		return nil
	}
	return &PodRef{Namespace: ns, Name: name}
}

// InPod is o with Self and PodResources set, when certctl runs in a node Job (SelfFromEnv)
// and o names neither: the kubelet under kubeletDir must list the Job's pod again.
func (o WaitOptions) InPod(kubeletDir string) WaitOptions {
	if o.Self == nil && o.PodResources == "" {
		if self := SelfFromEnv(); self != nil {
			o.Self, o.PodResources = self, PodResourcesSocket(kubeletDir)
		}
	}
	return o
}

// PodResourcesSocket is the kubelet's pod-resources API socket under its root directory
// (kubeletDir, /var/lib/kubelet as certctl sees it).
func PodResourcesSocket(kubeletDir string) string {
	return filepath.Join(kubeletDir, "pod-resources", "kubelet.sock")
}

// NotSyncingError: the restarted kubelet serves (healthz, its serving certificate), but does
// not list the pod certctl runs in among its active pods: its sync loop has not taken the
// node's pods back. The kubelet starts that loop only once its runtime-dependent modules
// (cAdvisor, the container manager) have started, and waits for them with an exponential
// back-off (0.1 s doubling to 5 s); until then it neither starts, stops nor reports a pod.
type NotSyncingError struct {
	Pod    PodRef
	Socket string
}

func (e *NotSyncingError) Error() string {
	return fmt.Sprintf("the kubelet serves, but has not taken its pods back yet: its pod-resources API (%s) does not list this pod (%s)", e.Socket, e.Pod)
}

// syncing says whether the kubelet behind socket lists pod among its active pods (a nil
// error). A kubelet without the API (no socket, or the service not implemented) is not
// asked: nil too.
func syncing(ctx context.Context, socket string, pod PodRef) error {
	if _, err := os.Stat(socket); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("pod-resources API %s: %w", socket, err)
	}
	defer conn.Close()
	// Bounded like healthz: a kubelet that accepted but does not answer is asked again.
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	resp, err := podresourcesv1.NewPodResourcesListerClient(conn).List(ctx, &podresourcesv1.ListPodResourcesRequest{})
	if status.Code(err) == codes.Unimplemented {
		return nil
	}
	if err != nil {
		return fmt.Errorf("pod-resources API %s: %w", socket, err)
	}
	for _, p := range resp.GetPodResources() {
		if p.GetNamespace() == pod.Namespace && p.GetName() == pod.Name {
			return nil
		}
	}
	return &NotSyncingError{Pod: pod, Socket: socket}
}
