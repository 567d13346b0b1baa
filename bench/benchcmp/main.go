// Command benchcmp runs two commands side by side, alternating, and prints the median wall
// time, the ratio a/b and each command's peak RSS. An optional prep command runs untimed
// before every run (to lay a fresh copy of a tree, say).
//
//	benchcmp -n 21 -a "certctl --root T inspect" -b "kubeadm certs check-expiration --rootfs T"
//
// Arguments are split on white space: no shell quoting.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"syscall"
	"time"
)

type result struct {
	wall   []time.Duration
	maxRSS int64 // KiB
}

func main() {
	n := flag.Int("n", 21, "runs of each command")
	a := flag.String("a", "", "command A (the one measured)")
	b := flag.String("b", "", "command B (the baseline)")
	an := flag.String("a-name", "A", "name of command A")
	bn := flag.String("b-name", "B", "name of command B")
	prep := flag.String("prep", "", "command run untimed before every run")
	okCodes := flag.String("ok-exit", "0", "comma-separated exit codes counted as success")
	flag.Parse()
	if *a == "" || *b == "" {
		fmt.Fprintln(os.Stderr, "benchcmp: -a and -b are required")
		os.Exit(2)
	}
	ok := map[int]bool{}
	for _, c := range strings.Split(*okCodes, ",") {
		var v int
		fmt.Sscan(c, &v)
		ok[v] = true
	}
	ra, rb := &result{}, &result{}
	for i := 0; i < *n; i++ {
		// Alternate the order so neither command always runs on a warmer cache.
		order := []struct {
			cmd string
			r   *result
		}{{*a, ra}, {*b, rb}}
		if i%2 == 1 {
			order[0], order[1] = order[1], order[0]
		}
		for _, o := range order {
			if *prep != "" {
				if err := runOnce(*prep, nil, map[int]bool{0: true}); err != nil {
					fail("prep", err)
				}
			}
			if err := runOnce(o.cmd, o.r, ok); err != nil {
				fail(o.cmd, err)
			}
		}
	}
	ma, mb := median(ra.wall), median(rb.wall)
	fmt.Printf("%-10s median %8.2f ms  peak RSS %6.1f MiB  (%d runs)\n", *an, ms(ma), float64(ra.maxRSS)/1024, *n)
	fmt.Printf("%-10s median %8.2f ms  peak RSS %6.1f MiB  (%d runs)\n", *bn, ms(mb), float64(rb.maxRSS)/1024, *n)
	fmt.Printf("ratio %s/%s = %.3fx\n", *an, *bn, float64(ma)/float64(mb))
}

func runOnce(cmdline string, r *result, ok map[int]bool) error {
	f := strings.Fields(cmdline)
	cmd := exec.Command(f[0], f[1:]...)
	cmd.Stdout, cmd.Stderr = nil, nil
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	if ee, isExit := err.(*exec.ExitError); isExit && ok[ee.ExitCode()] {
		err = nil
	}
	if err != nil {
		return err
	}
	if r != nil {
		r.wall = append(r.wall, wall)
		if ru, isRU := cmd.ProcessState.SysUsage().(*syscall.Rusage); isRU && ru.Maxrss > r.maxRSS {
			r.maxRSS = ru.Maxrss
		}
	}
	return nil
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func fail(what string, err error) {
	fmt.Fprintf(os.Stderr, "benchcmp: %s: %v\n", what, err)
	os.Exit(1)
}
