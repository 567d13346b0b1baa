package kubeletserving_test

import (
	"context"
	"fmt"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/certctl/certctl/internal/testenv"
	"github.com/certctl/certctl/pkg/kubeletserving"
	corev1 "k8s.io/api/core/v1"
)

// BenchmarkStatus1000 runs `status` over 1000 simulated kubelets: real TLS listeners on
// distinct loopback addresses (127.1.x.y), Node objects in a real apiserver. Beside it, in
// the same run, a sequential `openssl s_client` loop over a sample of the same endpoints,
// extrapolated to 1000. Target (issue 5): < 2 s, and >= 20x faster than the openssl loop.
//
//	go test -run '^$' -bench Status1000 -benchtime 3x ./pkg/kubeletserving
func BenchmarkStatus1000(b *testing.B) {
	const n, sample = 1000, 100
	c := newCluster(b)
	port := testenv.FreePort(b, "127.1.0.1")
	ips := make([]string, n)
	for i := range ips {
		ips[i] = fmt.Sprintf("127.1.%d.%d", i/250, i%250+1)
		name := fmt.Sprintf("node-%04d", i)
		chain, key := caSignedServing(b, c.ca, name, []string{ips[i]}, name)
		if i%10 == 9 { // every tenth serves the kubelet's self-signed certificate
			chain, key = kubeletSelfSigned(b, name)
		}
		fakeKubelet(b, fmt.Sprintf("%s:%d", ips[i], port), chain, key)
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i := range ips {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer func() { <-sem; wg.Done() }()
			name := fmt.Sprintf("node-%04d", i)
			c.addNode(b, name, addr(corev1.NodeInternalIP, ips[i]), addr(corev1.NodeHostName, name))
		}(i)
	}
	wg.Wait()
	roots := rootsOf(c)
	ctx := context.Background()

	// The baseline: openssl s_client, one endpoint after the other.
	var opensslPer time.Duration
	if _, err := exec.LookPath("openssl"); err == nil {
		start := time.Now()
		for _, ip := range ips[:sample] {
			cmd := exec.Command("openssl", "s_client", "-connect", fmt.Sprintf("%s:%d", ip, port), "-brief")
			cmd.Stdin = nil
			_ = cmd.Run()
		}
		opensslPer = time.Since(start) / sample
	}

	b.ResetTimer()
	var st *kubeletserving.Status
	for i := 0; i < b.N; i++ {
		var err error
		st, err = kubeletserving.GetStatus(ctx, c.admin, kubeletserving.StatusOptions{Port: port, Roots: roots, Concurrency: 128, Timeout: 5 * time.Second})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	per := b.Elapsed() / time.Duration(b.N)
	fails := 0
	for _, ns := range st.Nodes {
		if ns.MetricsServerFails {
			fails++
		}
	}
	if len(st.Nodes) != n || fails != n/10 {
		b.Fatalf("status saw %d nodes, %d failing; want %d and %d", len(st.Nodes), fails, n, n/10)
	}
	b.ReportMetric(per.Seconds(), "s/status-1000")
	if opensslPer > 0 {
		seq := opensslPer * n
		b.ReportMetric(seq.Seconds(), "s/openssl-seq-1000")
		b.ReportMetric(float64(seq)/float64(per), "x-faster")
		b.Logf("status over %d kubelets: %s; sequential openssl s_client: %s per endpoint (%d sampled), %s for %d: %.0fx", n, per.Round(time.Millisecond), opensslPer.Round(time.Microsecond), sample, seq.Round(time.Millisecond), n, float64(seq)/float64(per))
	}
}
