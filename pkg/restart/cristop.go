package restart

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"k8s.io/apimachinery/pkg/util/wait"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/certctl/certctl/pkg/pki"
)

// DefaultCRIEndpoints are the sockets tried, in order, when the kubelet's configuration names
// none: containerd's, then CRI-O's.
var DefaultCRIEndpoints = []string{"/run/containerd/containerd.sock", "/var/run/crio/crio.sock"}

// CRIStopper stops a component's container through the container runtime's CRI socket, as
// the kubelet itself does but with a short timeout (Grace) instead of the pod's 30 s grace
// period (shared/LAB.md: the apiserver drains for ~30 s otherwise). It is used once the manifest is
// out of the manifests dir, and then waits until the kubelet has torn the pod down (its
// sandbox is no longer ready): a manifest put back before the kubelet saw it leave is, to the
// kubelet, an unchanged pod whose container crashed, restarted only after a crash-loop
// back-off (observed in the lab: 17-19 s instead of 3-4 s for the controller-manager). It
// then removes that sandbox, so that the pod starts again without back-off.
type CRIStopper struct {
	Endpoint string        // unix socket path (a unix:// prefix is accepted)
	Grace    StopGrace     // StopContainer timeout per component (DefaultStopGrace)
	Timeout  time.Duration // bound of the whole stop, default 30s
}

// StopGrace is how long a component's old process may take to exit after SIGTERM before it
// is killed, by component; a component not in the map gets DefaultStopGrace's value.
type StopGrace map[string]time.Duration

// DefaultStopGrace: the apiserver is killed at once: after SIGTERM its /livez fails at
// once anyway while it drains for up to 30 s holding its port (shared/LAB.md), and each
// second here is a second more of API downtime (measured in the lab: 1 s of grace made
// 6.7 s of downtime, 0 s made 4.5-5 s). etcd gets a graceful stop (it transfers leadership
// in an HA cluster and exits by itself within a second or two); the controller-manager and the
// scheduler release their leader leases on SIGTERM.
var DefaultStopGrace = StopGrace{
	pki.CompEtcd: 10 * time.Second, pki.CompAPIServer: 0,
	pki.CompControllerManager: 2 * time.Second, pki.CompScheduler: 2 * time.Second,
}

// For returns the grace of component.
func (g StopGrace) For(component string) time.Duration {
	if d, ok := g[component]; ok {
		return d
	}
	return DefaultStopGrace[component]
}

// UniformStopGrace gives every component the same grace.
func UniformStopGrace(d time.Duration) StopGrace {
	g := StopGrace{}
	for c := range DefaultStopGrace {
		g[c] = d
	}
	return g
}

// Stop stops every running container of the component in kube-system.
func (s CRIStopper) Stop(ctx context.Context, component string) error {
	name, ok := binaries[component]
	if !ok {
		return fmt.Errorf("unknown component %q", component)
	}
	grace := s.Grace.For(component)
	if s.Timeout == 0 {
		s.Timeout = 30*time.Second + grace
	}
	ctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	client, conn, err := dialCRI(s.Endpoint)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctrs, err := runningContainers(ctx, client, name)
	if err != nil {
		return fmt.Errorf("list containers on %s: %w", s.Endpoint, err)
	}
	var ids []string
	sandboxes := map[string]bool{}
	for _, c := range ctrs {
		ids = append(ids, c.Id)
		sandboxes[c.PodSandboxId] = true
	}
	// A crash-looping component has no running container but still a ready sandbox: wait for
	// that one too, and remove it, so the pod starts again without back-off.
	pods, err := client.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{
		State:         &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY},
		LabelSelector: map[string]string{"io.kubernetes.pod.namespace": "kube-system"},
	}})
	if err != nil {
		return fmt.Errorf("list pod sandboxes on %s: %w", s.Endpoint, err)
	}
	for _, p := range pods.Items {
		if strings.HasPrefix(p.GetMetadata().GetName(), name+"-") {
			sandboxes[p.Id] = true
		}
	}
	if len(sandboxes) == 0 {
		return fmt.Errorf("no %s pod in kube-system on %s", name, s.Endpoint)
	}
	for _, id := range ids {
		_, err := client.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: int64((grace + time.Second - 1) / time.Second)})
		if err != nil {
			return fmt.Errorf("stop container %.13s (%s) on %s: %w", id, name, s.Endpoint, err)
		}
	}
	waitFor := func(what string, done func() bool) error {
		err := wait.PollUntilContextCancel(ctx, 50*time.Millisecond, true, func(context.Context) (bool, error) { return done(), nil })
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	}
	for _, id := range ids {
		err := waitFor(fmt.Sprintf("container %.13s (%s) still running after StopContainer", id, name), func() bool {
			st, err := client.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
			return err != nil || st.GetStatus().GetState() != runtimeapi.ContainerState_CONTAINER_RUNNING
		})
		if err != nil {
			return err
		}
	}
	for sb := range sandboxes {
		err := waitFor(fmt.Sprintf("the kubelet has not torn down the %s pod (sandbox %.13s still ready): is it running and watching the manifests dir?", name, sb), func() bool {
			st, err := client.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: sb})
			return err != nil || st.GetStatus().GetState() != runtimeapi.PodSandboxState_SANDBOX_READY
		})
		if err != nil {
			return err
		}
		// Remove the torn-down sandbox and its exited containers, as the kubelet's garbage
		// collector would later: while an exited container of the same static pod (same UID:
		// the manifest is unchanged) is there, the kubelet applies its crash-loop back-off to
		// the new one (10, 20, 40 s... for restarts less than 10 min apart).
		if _, err := client.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: sb}); err != nil {
			return fmt.Errorf("remove the stopped %s pod sandbox %.13s: %w", name, sb, err)
		}
	}
	return nil
}

// RunningContainerIDs lists the IDs of the component's running containers in kube-system.
func RunningContainerIDs(ctx context.Context, endpoint, component string) ([]string, error) {
	name, ok := binaries[component]
	if !ok {
		return nil, fmt.Errorf("unknown component %q", component)
	}
	client, conn, err := dialCRI(endpoint)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctrs, err := runningContainers(ctx, client, name)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, c := range ctrs {
		ids = append(ids, c.Id)
	}
	return ids, nil
}

func runningContainers(ctx context.Context, client runtimeapi.RuntimeServiceClient, name string) ([]*runtimeapi.Container, error) {
	return componentContainers(ctx, client, name, &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING})
}

// componentContainers lists the containers named name of the component's static pod in
// kube-system, in state (nil: any).
func componentContainers(ctx context.Context, client runtimeapi.RuntimeServiceClient, name string, state *runtimeapi.ContainerStateValue) ([]*runtimeapi.Container, error) {
	resp, err := client.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{
		State: state,
		LabelSelector: map[string]string{
			"io.kubernetes.container.name": name,
			"io.kubernetes.pod.namespace":  "kube-system",
		},
	}})
	if err != nil {
		return nil, err
	}
	var out []*runtimeapi.Container
	for _, c := range resp.Containers {
		// A static pod is named <component>-<node>: skip same-named containers of other pods.
		if pod := c.Labels["io.kubernetes.pod.name"]; pod != "" && !strings.HasPrefix(pod, name+"-") {
			continue
		}
		out = append(out, c)
	}
	return out, nil
}

func dialCRI(endpoint string) (runtimeapi.RuntimeServiceClient, *grpc.ClientConn, error) {
	path := strings.TrimPrefix(endpoint, "unix://")
	if st, err := os.Stat(path); err != nil {
		return nil, nil, fmt.Errorf("CRI socket %s: %w", path, err)
	} else if st.Mode()&os.ModeSocket == 0 {
		return nil, nil, fmt.Errorf("CRI socket %s is not a socket", path)
	}
	conn, err := grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, nil, fmt.Errorf("connect to CRI socket %s: %w", path, err)
	}
	return runtimeapi.NewRuntimeServiceClient(conn), conn, nil
}

// FindCRIEndpoint returns the container runtime socket named by the files of the node at
// layout: the containerRuntimeEndpoint of its config.yaml, else of instance-config.yaml
// (kubeadm 1.36+), else --container-runtime-endpoint in kubeadm-flags.env (kubeadm 1.35 and
// earlier), else the first default socket that exists; paths resolve under root.
// It returns "" when there is none. restart uses the running kubelet's own (FindNode), which
// also sees a socket given on its command line.
func FindCRIEndpoint(layout pki.Layout) string {
	resolve := func(ep string) string {
		p := strings.TrimPrefix(ep, "unix://")
		if !strings.HasPrefix(p, "/") {
			return ""
		}
		return filepath.Join(layout.Root, p)
	}
	var found []string
	if kc, err := pki.LoadKubeletConfig(filepath.Join(layout.KubeletDir, "config.yaml")); err == nil && kc.ContainerRuntimeEndpoint != "" {
		found = append(found, kc.ContainerRuntimeEndpoint)
	}
	if ep := kubeadmEndpoint(layout.KubeletDir); ep != "" {
		found = append(found, ep)
	}
	found = append(found, DefaultCRIEndpoints...)
	for _, ep := range found {
		if p := resolve(ep); p != "" {
			if st, err := os.Stat(p); err == nil && st.Mode()&os.ModeSocket != 0 {
				return p
			}
		}
	}
	return ""
}

// errNoStopper is what FallbackStopper returns when nothing could stop the container.
var errNoStopper = errors.New("no way to stop the container")

// FallbackStopper tries each stopper in turn until one succeeds.
type FallbackStopper []Stopper

// Stop tries the stoppers in order and returns all their errors if none succeeded.
func (f FallbackStopper) Stop(ctx context.Context, component string) error {
	var errs []error
	for _, s := range f {
		err := s.Stop(ctx, component)
		if err == nil {
			return nil
		}
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return errNoStopper
	}
	return errors.Join(errs...)
}

// Attempts asks the first of its stoppers that can tell (an ExitWatcher); none: nothing seen.
func (f FallbackStopper) Attempts(ctx context.Context, component string, since time.Time) (Attempts, error) {
	for _, s := range f {
		if ew, ok := s.(ExitWatcher); ok {
			return ew.Attempts(ctx, component, since)
		}
	}
	return Attempts{}, nil
}

// Attempts reads the component's containers (kube-system) that the runtime created after
// since, in the pod sandbox of the newest: the kubelet numbers a pod's container attempts (the
// io.kubernetes.container.restartCount annotation of each container it creates), so the
// oldest and newest numbers seen, and whether the newest has exited, tell how many attempts
// ended even after the kubelet's garbage collector removed exited containers (it keeps one per
// pod). An exit counts only while its sandbox is still ready: a container that crashed is
// restarted in its pod, while one the kubelet stopped with its pod (a manifest that left and
// came back before the kubelet saw it leave) exited with a sandbox torn down.
func (s CRIStopper) Attempts(ctx context.Context, component string, since time.Time) (Attempts, error) {
	name, ok := binaries[component]
	if !ok {
		return Attempts{}, fmt.Errorf("unknown component %q", component)
	}
	client, conn, err := dialCRI(s.Endpoint)
	if err != nil {
		return Attempts{}, err
	}
	defer conn.Close()
	ctrs, err := componentContainers(ctx, client, name, nil)
	if err != nil {
		return Attempts{}, fmt.Errorf("list containers on %s: %w", s.Endpoint, err)
	}
	a := attemptsOf(ctrs, since, func(sandbox string) bool {
		st, err := client.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: sandbox})
		return err == nil && st.GetStatus().GetState() == runtimeapi.PodSandboxState_SANDBOX_READY
	})
	if a.NewestExited {
		// The code only from a status that says the container finished: a status that cannot
		// be read (the container just removed) has none, not 0.
		if st, err := client.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: a.NewestID}); err == nil && st.GetStatus().GetFinishedAt() != 0 {
			code := st.GetStatus().GetExitCode()
			a.ExitCode = &code
		}
	}
	return a, nil
}

// attemptsOf: the attempts among ctrs created at or after since, in the sandbox of the newest
// (sandboxReady says whether a sandbox is still ready).
func attemptsOf(ctrs []*runtimeapi.Container, since time.Time, sandboxReady func(id string) bool) Attempts {
	type attempt struct {
		c *runtimeapi.Container
		n int
	}
	var all []attempt
	newest := -1
	for _, c := range ctrs {
		if c.CreatedAt < since.UnixNano() {
			continue
		}
		n, err := strconv.Atoi(c.Annotations["io.kubernetes.container.restartCount"])
		if err != nil {
			continue
		}
		if newest < 0 || c.CreatedAt > all[newest].c.CreatedAt {
			newest = len(all)
		}
		all = append(all, attempt{c, n})
	}
	if newest < 0 {
		return Attempts{}
	}
	nw := all[newest]
	a := Attempts{Seen: true, Sandbox: nw.c.PodSandboxId, NewestID: nw.c.Id, First: nw.n, Newest: nw.n}
	for _, at := range all {
		if at.c.PodSandboxId == a.Sandbox && at.n < a.First {
			a.First = at.n
		}
	}
	a.NewestExited = nw.c.State == runtimeapi.ContainerState_CONTAINER_EXITED && sandboxReady(a.Sandbox)
	return a
}
