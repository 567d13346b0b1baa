package restart_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/certctl/certctl/pkg/restart"
)

// netnsPair makes two network namespaces joined by a veth pair: a (the node, 10.251.0.1) and
// b (another machine, a load balancer, 10.251.0.2).
func netnsPair(t *testing.T) (a, b string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatal("needs ip (iproute2)")
	}
	id := fmt.Sprintf("%d", os.Getpid()%100000)
	a, b = "certctl-drain-a-"+id, "certctl-drain-b-"+id
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v\n%s", args, err, out)
		}
	}
	// Named for ip netns; the return values become their paths below, so the cleanups take
	// the names as arguments.
	for _, ns := range []string{a, b} {
		run("netns", "add", ns)
		t.Cleanup(func() {
			if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
				t.Errorf("ip netns del %s: %v %s", ns, err, out)
			}
		})
	}
	run("link", "add", "cdr-a"+id, "netns", a, "type", "veth", "peer", "name", "cdr-b"+id, "netns", b)
	run("-n", a, "addr", "add", "10.251.0.1/30", "dev", "cdr-a"+id)
	run("-n", b, "addr", "add", "10.251.0.2/30", "dev", "cdr-b"+id)
	for _, ns := range []string{a, b} {
		run("-n", ns, "link", "set", "lo", "up")
	}
	run("-n", a, "link", "set", "cdr-a"+id, "up")
	run("-n", b, "link", "set", "cdr-b"+id, "up")
	return "/run/netns/" + a, "/run/netns/" + b
}

// inNetNS runs f on an OS thread moved into the network namespace at path, and moves the
// thread back before it is used again (the thread may be the process's main one, whose
// namespace /proc/self/ns/net shows: it must not stay in the test's namespace).
func inNetNS(t *testing.T, path string, f func()) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		home, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer unix.Close(home)
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		f()
		if err := unix.Setns(home, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("back to the test's namespace: %w", err) // the thread stays locked and dies with this goroutine
			return
		}
		runtime.UnlockOSThread()
		errc <- nil
	}()
	if err := <-errc; err != nil {
		t.Fatalf("enter %s: %v", path, err)
	}
}

func listenIn(t *testing.T, ns string) net.Listener {
	t.Helper()
	var ln net.Listener
	var err error
	inNetNS(t, ns, func() { ln, err = net.Listen("tcp", "0.0.0.0:0") })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() { // echo
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	return ln
}

func dialFrom(t *testing.T, ns, addr string) (net.Conn, error) {
	t.Helper()
	var c net.Conn
	var err error
	inNetNS(t, ns, func() { c, err = net.DialTimeout("tcp", addr, 3*time.Second) })
	return c, err
}

func echo(c net.Conn) error {
	c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Write([]byte("x")); err != nil {
		return err
	}
	b := make([]byte, 1)
	_, err := io.ReadFull(c, b)
	return err
}

// TestDrain, in real network namespaces: while the drain stands, a new connection to the
// apiserver's port from another machine is reset at once (not left to time out), one from the
// node itself and one to another port are accepted, and a connection opened before keeps
// working; after it, connections are accepted again and no table is left. A drain left behind
// by a certctl that died is replaced, not doubled.
func TestDrain(t *testing.T) {
	a, b := netnsPair(t)
	api, other := listenIn(t, a), listenIn(t, a)
	port := api.Addr().(*net.TCPAddr).Port
	addr := fmt.Sprintf("10.251.0.1:%d", port)
	otherAddr := fmt.Sprintf("10.251.0.1:%d", other.Addr().(*net.TCPAddr).Port)
	open, err := dialFrom(t, b, addr)
	if err != nil {
		t.Fatalf("before the drain: %v", err)
	}
	defer open.Close()
	fd, err := unix.Open(a, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	d := restart.Drain{NetNS: fd, Wait: 200 * time.Millisecond}
	ctx := context.Background()

	// A drain left by a certctl that died (the same table) is replaced.
	if _, err := d.Begin(ctx, port); err != nil {
		t.Fatal(err)
	}
	end, err := d.Begin(ctx, port)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	c, err := dialFrom(t, b, addr)
	if err == nil {
		c.Close()
		t.Fatalf("during the drain a connection from another machine was accepted")
	}
	if !errors.Is(err, syscall.ECONNREFUSED) || time.Since(start) > time.Second {
		t.Errorf("during the drain: %v after %s, want a reset at once (connection refused)", err, time.Since(start))
	}
	for _, tc := range []struct{ name, ns, addr string }{
		{"from the node itself", a, addr},
		{"to another port", b, otherAddr},
	} {
		c, err := dialFrom(t, tc.ns, tc.addr)
		if err != nil {
			t.Errorf("during the drain, %s: %v", tc.name, err)
			continue
		}
		if err := echo(c); err != nil {
			t.Errorf("during the drain, %s: %v", tc.name, err)
		}
		c.Close()
	}
	if err := echo(open); err != nil {
		t.Errorf("during the drain, a connection opened before: %v", err)
	}
	if err := end(); err != nil {
		t.Fatal(err)
	}
	c, err = dialFrom(t, b, addr)
	if err != nil {
		t.Fatalf("after the drain: %v", err)
	}
	c.Close()
	if left, err := d.Remove(); err != nil || left {
		t.Errorf("after the drain: a table left %v (%v)", left, err)
	}
}

// TestRecoverDrain, in real network namespaces: a drain whose record names a certctl that still
// runs is left alone; once that process is gone (killed during the drain: a Job deleted at its
// deadline), the next certctl removes the drain and its record, and connections from other
// machines are accepted again. Without a record nothing is touched.
func TestRecoverDrain(t *testing.T) {
	a, b := netnsPair(t)
	api := listenIn(t, a)
	port := api.Addr().(*net.TCPAddr).Port
	addr := fmt.Sprintf("10.251.0.1:%d", port)
	fd, err := unix.Open(a, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	record := filepath.Join(t.TempDir(), "drain.json")
	d := restart.Drain{NetNS: fd, Record: record}
	refused := func() bool {
		c, err := dialFrom(t, b, addr)
		if err == nil {
			c.Close()
		}
		return errors.Is(err, syscall.ECONNREFUSED)
	}

	// The owner: another process, alive, then killed.
	owner := exec.Command("sleep", "600")
	if err := owner.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = owner.Process.Kill(); _ = owner.Wait() }()
	if _, err := d.Begin(context.Background(), port); err != nil {
		t.Fatal(err)
	}
	// Begin recorded this test process; the record now names the other one, as a certctl
	// killed during its drain would have left it.
	var rec map[string]any
	data, err := os.ReadFile(record)
	if err != nil || json.Unmarshal(data, &rec) != nil {
		t.Fatalf("the drain's record %s: %v %s", record, err, data)
	}
	self := os.Getpid()
	if int(rec["pid"].(float64)) != self {
		t.Fatalf("record %s names pid %v, want this process %d", data, rec["pid"], self)
	}
	rec["pid"], rec["startTime"] = owner.Process.Pid, startTime(t, owner.Process.Pid)
	data, _ = json.Marshal(rec)
	if err := os.WriteFile(record, data, 0o600); err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	if err := restart.RecoverDrain(d, &log); err != nil {
		t.Fatal(err)
	}
	if !refused() || log.Len() != 0 {
		t.Fatalf("a drain whose certctl still runs was touched (said %q)", log.String())
	}
	_ = owner.Process.Kill()
	_ = owner.Wait()
	if err := restart.RecoverDrain(d, &log); err != nil {
		t.Fatal(err)
	}
	if refused() {
		t.Fatal("the drain of a certctl that is gone still refuses connections from other machines")
	}
	if _, err := os.Stat(record); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the record is left: %v", err)
	}
	t.Logf("said: %s", log.String())
	if !strings.Contains(log.String(), fmt.Sprintf("port %d", port)) {
		t.Errorf("said %q, want the port named", log.String())
	}

	// Without a record: a table there (made by hand, say) is not certctl's to remove.
	if _, err := (restart.Drain{NetNS: fd}).Begin(context.Background(), port); err != nil {
		t.Fatal(err)
	}
	defer func() { _, _ = (restart.Drain{NetNS: fd}).Remove() }()
	if err := restart.RecoverDrain(d, io.Discard); err != nil || !refused() {
		t.Errorf("without a record the drain was touched: %v", err)
	}
}

// startTime is field 22 of /proc/PID/stat: when the process started, in clock ticks after boot.
func startTime(t *testing.T, pid int) uint64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// The command name (field 2) may hold spaces: count after its closing parenthesis.
	rest := string(data[strings.LastIndexByte(string(data), ')')+2:])
	v, err := strconv.ParseUint(strings.Fields(rest)[19], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
