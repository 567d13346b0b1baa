package lease

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ProcessAnnotation on the Lease names the holder's process: its kernel's boot ID, its PID
// namespace, its PID and that process's start time. With it, a run on the same machine can
// prove that a holder that did not release the Lease is dead (killed, its machine's
// terminal closed) and take the Lease at once instead of waiting for it to expire.
const ProcessAnnotation = "certctl.io/holder-process"

// Process identifies one process on one machine for as long as the machine is up: a PID is
// reused, a PID with its start time (clock ticks since boot, /proc/PID/stat) is not; the boot
// ID tells this kernel from another machine's, the PID namespace tells the host's PIDs from a
// container's.
type Process struct {
	BootID       string
	PIDNamespace string
	PID          int
	StartTicks   uint64
}

// String is the annotation's value: BOOTID/PIDNS/PID/START.
func (p Process) String() string {
	return fmt.Sprintf("%s/%s/%d/%d", p.BootID, p.PIDNamespace, p.PID, p.StartTicks)
}

// ParseProcess reads the annotation's value; ok is false for anything else (an older certctl,
// a holder that is not certctl).
func ParseProcess(s string) (p Process, ok bool) {
	f := strings.Split(s, "/")
	if len(f) != 4 || f[0] == "" || f[1] == "" {
		return Process{}, false
	}
	pid, err := strconv.Atoi(f[2])
	if err != nil || pid <= 0 {
		return Process{}, false
	}
	start, err := strconv.ParseUint(f[3], 10, 64)
	if err != nil {
		return Process{}, false
	}
	return Process{BootID: f[0], PIDNamespace: f[1], PID: pid, StartTicks: start}, true
}

// procFS reads the process table of this machine: /proc, or a test's copy.
type procFS string

// self is this process, as procFS shows it; ok is false where /proc cannot say (not Linux).
func (fs procFS) self() (Process, bool) {
	boot, err := os.ReadFile(string(fs) + "/sys/kernel/random/boot_id")
	if err != nil {
		return Process{}, false
	}
	ns, err := os.Readlink(string(fs) + "/self/ns/pid")
	if err != nil {
		return Process{}, false
	}
	pid := os.Getpid()
	start, ok := fs.startTicks(pid)
	if !ok {
		return Process{}, false
	}
	// pid:[4026531836] -> 4026531836
	ns = strings.TrimSuffix(strings.TrimPrefix(ns, "pid:["), "]")
	return Process{BootID: strings.TrimSpace(string(boot)), PIDNamespace: ns, PID: pid, StartTicks: start}, true
}

// startTicks is field 22 of /proc/PID/stat, read after the command's closing parenthesis (a
// command may hold spaces and parentheses).
func (fs procFS) startTicks(pid int) (uint64, bool) {
	b, err := os.ReadFile(fmt.Sprintf("%s/%d/stat", fs, pid))
	if err != nil {
		return 0, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); field 22 is f[19].
	if len(f) < 20 {
		return 0, false
	}
	v, err := strconv.ParseUint(f[19], 10, 64)
	return v, err == nil
}

// gone reports that p is proven dead: it ran on this kernel, in this PID namespace, and no
// process has its PID any more, or the one that has it started at another time. Anything
// else (another machine or container, a /proc that cannot be read) proves nothing: false.
func (fs procFS) gone(p Process) bool {
	self, ok := fs.self()
	if !ok || p.BootID != self.BootID || p.PIDNamespace != self.PIDNamespace {
		return false
	}
	if p.PID == self.PID {
		return p.StartTicks != self.StartTicks
	}
	start, alive := fs.startTicks(p.PID)
	if !alive {
		_, err := os.Stat(fmt.Sprintf("%s/%d", fs, p.PID))
		return os.IsNotExist(err)
	}
	return start != p.StartTicks
}

// Gone is whether p is proven dead on the machine whose /proc is proc (see Options.Proc).
func Gone(proc string, p Process) bool { return procFS(proc).gone(p) }
