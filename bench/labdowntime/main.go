// Command labdowntime measures, on the lab (hack/lab/up.sh), how long the API is unavailable
// (a 50 ms poller on https://127.0.0.1:6443/livez: first failed request to first good one)
// during:
//
//   - certctl renew all --restart --yes (what an operator runs: since the apiserver reloads
//     its serving and client certificates, only the controller-manager and scheduler restart,
//     and 0 s is the expected figure);
//   - certctl restart apiserver (the apiserver's own restart, what a CA rotation or an operator
//     asking for it costs);
//   - the field runbook: move all four manifests out of /etc/kubernetes/manifests, sleep 20 s,
//     move them back;
//
// and the apiserver's own cold start: the lab manifest's kube-apiserver command started as a
// second process on port 6444, process start to its first good /livez. It prints each run and
// the medians with the issues' targets (renew <= cold start + 1 s, <= 0.3x the runbook).
//
//	go run ./bench/labdowntime -rounds 3 -certctl bin/certctl     (as root, lab up)
package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/certctl/certctl/internal/labns"
	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/manifest"
)

const (
	manifests = "/etc/kubernetes/manifests"
	caFile    = "/etc/kubernetes/pki/ca.crt"
	labHome   = "/var/lib/certctl-lab/home"
)

var components = []string{"etcd.yaml", "kube-apiserver.yaml", "kube-controller-manager.yaml", "kube-scheduler.yaml"}

func main() {
	rounds := flag.Int("rounds", 3, "runs of each way")
	certctl := flag.String("certctl", "bin/certctl", "certctl binary")
	sleep := flag.Duration("runbook-sleep", 20*time.Second, "the runbook's sleep")
	flag.Parse()
	if !labns.Up() {
		fail(fmt.Errorf("the lab is not up (no netns %s): run hack/lab/up.sh", labns.Name))
	}
	if !labns.Inside() {
		fail(labns.Reexec())
	}
	bin, err := filepath.Abs(*certctl)
	if err != nil {
		fail(err)
	}
	client, err := newClient()
	if err != nil {
		fail(err)
	}
	var cold, cert, forced, runbook []float64
	for i := 1; i <= *rounds; i++ {
		if err := waitAllHealthy(client, 3*time.Minute); err != nil {
			fail(err)
		}
		c, err := coldStart(client)
		if err != nil {
			fail(fmt.Errorf("cold start: %w", err))
		}
		cold = append(cold, c.Seconds())
		fmt.Printf("round %d: apiserver cold start %.2fs\n", i, c.Seconds())

		d, err := measure(client, func() error {
			cmd := exec.Command(bin, "renew", "all", "--restart", "--yes")
			cmd.Env = append(os.Environ(), "HOME="+labHome)
			out, err := cmd.CombinedOutput()
			if err != nil {
				return fmt.Errorf("certctl renew all --restart: %v\n%s", err, out)
			}
			return nil
		})
		if err != nil {
			fail(err)
		}
		cert = append(cert, d.Seconds())
		fmt.Printf("round %d: certctl renew all --restart: API down %.2fs\n", i, d.Seconds())

		if err := waitAllHealthy(client, 3*time.Minute); err != nil {
			fail(err)
		}
		d, err = measure(client, func() error {
			cmd := exec.Command(bin, "restart", "apiserver")
			cmd.Env = append(os.Environ(), "HOME="+labHome)
			if out, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("certctl restart apiserver: %v\n%s", err, out)
			}
			return nil
		})
		if err != nil {
			fail(err)
		}
		forced = append(forced, d.Seconds())
		fmt.Printf("round %d: certctl restart apiserver: API down %.2fs\n", i, d.Seconds())

		if err := waitAllHealthy(client, 3*time.Minute); err != nil {
			fail(err)
		}
		d, err = measure(client, func() error { return runRunbook(*sleep) })
		if err != nil {
			fail(err)
		}
		runbook = append(runbook, d.Seconds())
		fmt.Printf("round %d: runbook (all manifests out, sleep %s, back): API down %.2fs\n", i, *sleep, d.Seconds())
	}
	mc, mf, mr, mcold := median(cert), median(forced), median(runbook), median(cold)
	fmt.Printf("\nmedian of %d: certctl renew all --restart %.2fs, certctl restart apiserver %.2fs, runbook %.2fs, apiserver cold start %.2fs\n", *rounds, mc, mf, mr, mcold)
	fmt.Printf("renew / runbook = %.2fx (target <= 0.30x)\n", mc/mr)
	fmt.Printf("renew - cold start = %.2fs (target <= 1.00s)\n", mc-mcold)
	fmt.Printf("restart apiserver - cold start = %.2fs\n", mf-mcold)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "labdowntime:", err)
	os.Exit(1)
}

func newClient() (*http.Client, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", caFile, err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return &http.Client{Timeout: time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true}}, nil
}

func ok(client *http.Client, url string) bool {
	resp, err := client.Get(url)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// insecureOK is for the controller-manager's and scheduler's self-signed healthz endpoints.
var insecure = &http.Client{Timeout: time.Second, Transport: &http.Transport{
	TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true}}

func waitAllHealthy(client *http.Client, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if ok(client, "https://127.0.0.1:6443/livez") && ok(insecure, "https://127.0.0.1:10257/healthz") &&
			ok(insecure, "https://127.0.0.1:10259/healthz") {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the lab's control plane is not healthy after %s", timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// measure runs do while polling /livez every 50 ms and returns the total time it failed;
// it keeps polling after do returns until /livez is good again.
func measure(client *http.Client, do func() error) (time.Duration, error) {
	var (
		mu        sync.Mutex
		down      time.Duration
		downSince time.Time
		stop      = make(chan struct{})
		done      = make(chan struct{})
	)
	go func() {
		defer close(done)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			good := ok(client, "https://127.0.0.1:6443/livez")
			mu.Lock()
			switch {
			case !good && downSince.IsZero():
				downSince = time.Now()
			case good && !downSince.IsZero():
				down += time.Since(downSince)
				downSince = time.Time{}
			}
			up := downSince.IsZero()
			mu.Unlock()
			select {
			case <-stop:
				if up {
					return
				}
			default:
			}
			<-t.C
		}
	}()
	err := do()
	close(stop)
	select {
	case <-done:
	case <-time.After(3 * time.Minute):
		return 0, errors.New("the apiserver did not come back within 3m")
	}
	mu.Lock()
	defer mu.Unlock()
	return down, err
}

func runRunbook(sleep time.Duration) error {
	tmp, err := os.MkdirTemp("/etc/kubernetes", ".runbook-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	for _, c := range components {
		if err := os.Rename(filepath.Join(manifests, c), filepath.Join(tmp, c)); err != nil {
			return err
		}
	}
	time.Sleep(sleep) // the runbook's fixed sleep is what is being measured
	for _, c := range components {
		if err := os.Rename(filepath.Join(tmp, c), filepath.Join(manifests, c)); err != nil {
			return err
		}
	}
	return nil
}

// coldStart starts the manifest's kube-apiserver command as a second apiserver on :6444 and
// returns the time from process start to its first good /livez.
func coldStart(client *http.Client) (time.Duration, error) {
	pod, err := manifest.Load(filepath.Join(manifests, "kube-apiserver.yaml"))
	if err != nil {
		return 0, err
	}
	c := pod.Spec.Containers[0]
	args := append(append([]string{}, c.Command...), c.Args...)
	if len(args) == 0 {
		return 0, errors.New("kube-apiserver.yaml has no command")
	}
	bin := filepath.Join(testenv.BinDir(), "kube-apiserver")
	if v := os.Getenv("KUBE_APISERVER"); v != "" {
		bin = v
	}
	var flags []string
	for _, a := range args[1:] {
		if !strings.HasPrefix(a, "--secure-port=") {
			flags = append(flags, a)
		}
	}
	flags = append(flags, "--secure-port=6444")
	cmd := exec.Command(bin, flags...)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	deadline := start.Add(2 * time.Minute)
	for !ok(client, "https://127.0.0.1:6444/livez") {
		if time.Now().After(deadline) {
			return 0, errors.New("the second apiserver did not become live within 2m")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Since(start), nil
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
