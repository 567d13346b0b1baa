// Package labns names the lab's network namespace (hack/lab/env.sh) and moves a program into
// it: the lab's apiserver, etcd and kubelet listen only there.
package labns

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
)

// Name is the lab's network namespace, Path its bind mount.
const (
	Name = "certctl-lab"
	Path = "/var/run/netns/" + Name
)

// Up reports whether the namespace exists.
func Up() bool {
	_, err := os.Stat(Path)
	return err == nil
}

// Inside reports whether this process runs in the namespace.
func Inside() bool { return InsideNS(Path) }

// InsideNS reports whether this process runs in the network namespace bound at path.
func InsideNS(path string) bool {
	var self, ns syscall.Stat_t
	if syscall.Stat("/proc/self/ns/net", &self) != nil || syscall.Stat(path, &ns) != nil {
		return false
	}
	return self.Ino == ns.Ino && self.Dev == ns.Dev
}

// Reexec runs this program again, with the same arguments, inside the namespace (nsenter
// --net, as hack/lab does: the mount namespace stays shared) and exits with its exit code.
// It returns only when it could not run it.
func Reexec() error { return ReexecNS(Path) }

// ReexecNS is Reexec into the network namespace bound at path.
func ReexecNS(path string) error {
	cmd := exec.Command("nsenter", append([]string{"--net=" + path, "--"}, os.Args...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		os.Exit(ee.ExitCode())
	}
	if err != nil {
		return fmt.Errorf("enter the network namespace %s: %w", path, err)
	}
	os.Exit(0)
	return nil
}
