// Command sleeper stands in for a node's long-running process (a kubelet, a kube-apiserver)
// in tests that look at the process table: copied under the binary's name, it takes any
// arguments and sleeps until it is killed (see CERTCTL_FAKE_EXIT_ON_TERM). With CERTCTL_FAKE_KUBELET_SERVE=1 it also answers
// as a kubelet does where certctl looks after restarting one: healthz on 127.0.0.1:10248 and a
// (self-signed) TLS serving endpoint on 127.0.0.1:10250. With CERTCTL_FAKE_FORK=1 it starts a
// copy of itself with the same command line, as a kubelet's fork looks until it execs.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	// Like an apiserver draining, it ignores SIGTERM: only SIGKILL ends it. With
	// CERTCTL_FAKE_EXIT_ON_TERM=1 it exits on SIGTERM, as a kubelet does.
	if os.Getenv("CERTCTL_FAKE_EXIT_ON_TERM") != "1" {
		signal.Ignore(syscall.SIGTERM)
	}
	if os.Getenv("CERTCTL_FAKE_FORK") == "1" {
		child := exec.Command("/proc/self/exe", os.Args[1:]...)
		child.Args[0] = os.Args[0]
		child.Env = append(os.Environ(), "CERTCTL_FAKE_FORK=0")
		child.Stdout, child.Stderr = os.Stdout, os.Stderr
		if err := child.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		// The pid is told once the child shows its command line (its exec done; see
		// testenv.StartProcess), at most 10 s.
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", child.Process.Pid)); err == nil && len(b) > 0 {
				break
			}
		}
		fmt.Println(child.Process.Pid)
	}
	if os.Getenv("CERTCTL_FAKE_KUBELET_SERVE") == "1" {
		if err := serve(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	for {
		time.Sleep(time.Hour)
	}
}

func serve() error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "fake-kubelet"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"localhost"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return err
	}
	healthz := &http.Server{Addr: "127.0.0.1:10248", Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "ok") })}
	serving := &http.Server{Addr: "127.0.0.1:10250", TLSConfig: &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}}
	errs := make(chan error, 2)
	go func() { errs <- healthz.ListenAndServe() }()
	go func() { errs <- serving.ListenAndServeTLS("", "") }()
	go func() { fmt.Fprintln(os.Stderr, <-errs); os.Exit(1) }()
	return nil
}
