// Command clusterbench measures, on the multi-node lab (hack/lab/multi.sh up), issue 12's
// targets side by side:
//
//   - certctl cluster status on every node (target: under 10 s on the 4-node lab);
//
//   - certctl cluster renew all --days 3650 on the three control-plane nodes, against one
//     node's own `certctl renew all --days 3650 --restart --yes` run on the node plus one Job's
//     start-up (target: the rollout at most 3x that), with the requests that failed through the
//     load balancer during the rollout (target: 0).
//
//     go run ./bench/clusterbench -rounds 3      (as root, multi-node lab up)
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"sync/atomic"
	"time"

	"github.com/certctl/certctl/internal/multilab"
)

func main() {
	rounds := flag.Int("rounds", 1, "runs of each measurement")
	gap := flag.Duration("gap", 0, "pause between rounds (10m avoids the kubelet's restart back-off)")
	certctl := flag.String("certctl", "bin/certctl", "certctl binary (built from this checkout)")
	stopGrace := flag.Duration("stop-grace", 3*time.Second, "cluster renew --stop-grace (0: each node's defaults, the apiserver killed at once)")
	flag.Parse()
	bin, err := multilab.BenchStart(*certctl)
	if err != nil {
		fail(err)
	}
	nodes, err := multilab.Nodes()
	if err != nil {
		fail(err)
	}
	var cps []multilab.Node
	for _, n := range nodes {
		if n.ControlPlane() {
			cps = append(cps, n)
		}
	}
	kc := multilab.AdminKubeconfig()
	img := "--image=" + multilab.Image

	var status, oneJob, local, rollout []time.Duration
	var failed, total int64
	for r := 0; r < *rounds; r++ {
		if r > 0 {
			time.Sleep(*gap)
		}
		d := timed(bin, "cluster", "status", "--kubeconfig", kc, img, "-o", "json")
		status = append(status, d)
		oneJob = append(oneJob, timed(bin, "cluster", "status", "--kubeconfig", kc, img, "-o", "json", "--node", cps[0].Name))
		start := time.Now()
		res, err := multilab.Run(multilab.Command(context.Background(), cps[0], bin, "renew", "all", "--days", "3650", "--restart", "--yes"))
		if err != nil || res.Code != 0 {
			fail(fmt.Errorf("renew on %s: %v %s", cps[0].Name, err, res))
		}
		local = append(local, time.Since(start))
		stop, f, t := pollLB()
		rollout = append(rollout, timed(bin, "cluster", "renew", "all", "--days", "3650", "--kubeconfig", kc, img, "--stop-grace="+stopGrace.String()))
		stop()
		failed += f.Load()
		total += t.Load()
		fmt.Printf("round %d: status %s, one status job %s, renew on one node %s, cluster renew (%d nodes) %s, through the balancer %d/%d failed\n",
			r+1, status[r].Round(10*time.Millisecond), oneJob[r].Round(10*time.Millisecond), local[r].Round(10*time.Millisecond),
			len(cps), rollout[r].Round(10*time.Millisecond), f.Load(), t.Load())
	}
	ms, mj, ml, mr := median(status), median(oneJob), median(local), median(rollout)
	budget := time.Duration(len(cps)) * (ml + mj)
	fmt.Printf("\nmedians: cluster status %s on %d nodes (target < 10 s: %s)\n", ms.Round(10*time.Millisecond), len(nodes), verdict(ms < 10*time.Second))
	fmt.Printf("cluster renew all %s; %d x (one node's renew all --restart %s + one job's start-up %s) = %s: ratio %.2f (target <= 1.0 of that budget, i.e. <= 3x with %d nodes: %s)\n",
		mr.Round(10*time.Millisecond), len(cps), ml.Round(10*time.Millisecond), mj.Round(10*time.Millisecond), budget.Round(10*time.Millisecond),
		float64(mr)/float64(budget), len(cps), verdict(mr <= budget))
	fmt.Printf("requests through the balancer during the rollouts: %d of %d failed (target 0: %s)\n", failed, total, verdict(failed == 0))
}

func timed(bin string, args ...string) time.Duration {
	start := time.Now()
	r, err := multilab.Run(exec.Command(bin, args...))
	if err != nil || (r.Code != 0 && r.Code != 1 && r.Code != 2) {
		fail(fmt.Errorf("certctl %v: %v %s", args, err, r))
	}
	return time.Since(start)
}

// pollLB asks the balancer's /readyz every 50 ms (chain verified against the cluster CA) until
// stopped or 15 minutes have passed.
func pollLB() (stop func(), failed, total *atomic.Int64) {
	failed, total = new(atomic.Int64), new(atomic.Int64)
	data, err := os.ReadFile(multilab.CACert())
	if err != nil {
		fail(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(data)
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, TLSClientConfig: &tls.Config{
		InsecureSkipVerify: true, // chain checked below; case B's certificates may lack the address
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			cert, err := x509.ParseCertificate(raw[0])
			if err != nil {
				return err
			}
			_, err = cert.Verify(x509.VerifyOptions{Roots: roots})
			return err
		},
	}}}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for ctx.Err() == nil {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+multilab.LBAddr+"/readyz", nil)
			resp, err := c.Do(req)
			if ctx.Err() != nil {
				return
			}
			total.Add(1)
			if err != nil {
				failed.Add(1)
				fmt.Printf("  %s through the balancer: %v\n", time.Now().Format("15:04:05.000"), err)
			} else {
				if resp.StatusCode != http.StatusOK {
					failed.Add(1)
					fmt.Printf("  %s through the balancer: %s\n", time.Now().Format("15:04:05.000"), resp.Status)
				}
				resp.Body.Close()
			}
			select {
			case <-ctx.Done():
			case <-t.C:
			}
		}
	}()
	return func() { cancel(); <-done }, failed, total
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "clusterbench:", err)
	os.Exit(1)
}
