package multinode

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/certctl/certctl/internal/multilab"
)

// inClusterImage is testdata/incluster's image: client-go's in-cluster config polling the API.
const inClusterImage = "localhost/certctl-e2e-incluster:dev"

// startInClusterClient builds testdata/incluster into an image (hack/lab/mkimage), imports it
// into node n's containerd and runs it there as a pod of the default service account, until
// the test ends. It returns the pod once its container runs.
func startInClusterClient(t *testing.T, cs kubernetes.Interface, n multilab.Node) *corev1.Pod {
	t.Helper()
	ctx := context.Background()
	dir := filepath.Join(multilab.Dir, "e2e-images")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin, tar := filepath.Join(dir, "incluster"), filepath.Join(dir, "incluster.tar")
	for _, args := range [][]string{
		{"go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "./testdata/incluster"},
		{"go", "build", "-o", filepath.Join(dir, "mkimage"), "../../hack/lab/mkimage"},
		{filepath.Join(dir, "mkimage"), "-o", tar, "-tag", inClusterImage, "-file", bin + "=/incluster", "-entrypoint", "/incluster"},
	} {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	mustRun(t, multilab.Command(ctx, n, "ctr", "-n", "k8s.io", "images", "import", "--no-unpack=false", tar))
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "certctl-incluster-", Namespace: "default"},
		Spec: corev1.PodSpec{
			NodeName:                      n.Name,
			TerminationGracePeriodSeconds: ptr.To(int64(0)),
			Tolerations:                   []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
			Containers:                    []corev1.Container{{Name: "client", Image: inClusterImage, ImagePullPolicy: corev1.PullNever}},
		},
	}
	p, err := cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cs.CoreV1().Pods("default").Delete(context.Background(), p.Name, metav1.DeleteOptions{}) })
	var last *corev1.Pod
	err = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		got, err := cs.CoreV1().Pods("default").Get(ctx, p.Name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		last = got
		return got.Status.Phase == corev1.PodRunning && len(got.Status.ContainerStatuses) == 1 && got.Status.ContainerStatuses[0].Ready, nil
	})
	if err != nil {
		t.Fatalf("the in-cluster client pod %s on %s is not running: %+v", p.Name, n.Name, last.Status)
	}
	return last
}

// clientLog is what the in-cluster client printed: its requests, in order.
type clientLog struct {
	ok, fail int
	errs     []string // the first failures, each with its time
	windows  []window // first failure to the next success
	lastOK   time.Time
}

// readClientLog reads the in-cluster client's log (through its node's kubelet).
func readClientLog(t *testing.T, cs kubernetes.Interface, pod *corev1.Pod) clientLog {
	t.Helper()
	data, err := cs.CoreV1().Pods(pod.Namespace).GetLogs(pod.Name, &corev1.PodLogOptions{}).DoRaw(context.Background())
	if err != nil {
		t.Fatalf("the in-cluster client's log: %v", err)
	}
	var l clientLog
	var down *window
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		ts, rest, _ := strings.Cut(line, " ")
		ms, err := strconv.ParseInt(ts, 10, 64)
		if err != nil {
			t.Fatalf("the in-cluster client printed %q", line)
		}
		at := time.UnixMilli(ms)
		if rest == "ok" {
			l.ok++
			l.lastOK = at
			if down != nil {
				down.End = at
				l.windows = append(l.windows, *down)
				down = nil
			}
			continue
		}
		l.fail++
		if len(l.errs) < 20 {
			l.errs = append(l.errs, at.Format("15:04:05.000")+" "+strings.TrimPrefix(rest, "fail "))
		}
		if down == nil {
			down = &window{Start: at}
		}
	}
	if down != nil {
		down.End = time.Now()
		l.windows = append(l.windows, *down)
	}
	return l
}
