// Command apiwatch polls an HTTPS health endpoint (the apiserver's /livez) every -interval
// until SIGINT/SIGTERM, then prints every outage (first failed request to first good one) and
// the total, as "outage <seconds>" lines plus one "total <seconds>" line. The lab's downtime
// measurements (hack/lab/measure.sh) read it.
//
//	apiwatch -url https://127.0.0.1:6443/livez -cacert /etc/kubernetes/pki/ca.crt
package main

import (
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	url := flag.String("url", "https://127.0.0.1:6443/livez", "endpoint to poll")
	cacert := flag.String("cacert", "/etc/kubernetes/pki/ca.crt", "CA bundle that verifies it")
	interval := flag.Duration("interval", 50*time.Millisecond, "poll interval")
	flag.Parse()
	pem, err := os.ReadFile(*cacert)
	if err != nil {
		fmt.Fprintf(os.Stderr, "apiwatch: read %s: %v\n", *cacert, err)
		os.Exit(1)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		fmt.Fprintf(os.Stderr, "apiwatch: %s holds no certificate\n", *cacert)
		os.Exit(1)
	}
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true,
	}}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	var outages []time.Duration
	var downSince time.Time
	tick := time.NewTicker(*interval)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			if !downSince.IsZero() {
				outages = append(outages, time.Since(downSince))
				fmt.Println("still-down-at-exit")
			}
			var total time.Duration
			for _, o := range outages {
				fmt.Printf("outage %.2f\n", o.Seconds())
				total += o
			}
			fmt.Printf("total %.2f\n", total.Seconds())
			return
		case <-tick.C:
		}
		ok := false
		if resp, err := client.Get(*url); err == nil {
			ok = resp.StatusCode == http.StatusOK
			resp.Body.Close()
		}
		switch {
		case !ok && downSince.IsZero():
			downSince = time.Now()
		case ok && !downSince.IsZero():
			outages = append(outages, time.Since(downSince))
			downSince = time.Time{}
		}
	}
}
