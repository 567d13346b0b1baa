//go:build failpoints

package failpoint

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/certctl/certctl/pkg/fsutil"
	"github.com/certctl/certctl/pkg/manifest"
	"github.com/certctl/certctl/pkg/pki"
)

const enabled = true

// BeforeStart fires the first line of the node's failpoint file that names point
// before-start and component, and removes that line. staged is the component's manifest
// about to go back (a host path; "" where none moves: a reload), what set-flag edits.
func BeforeStart(l pki.Layout, component, staged string) (*Fired, error) {
	f, err := take(l, "before-start", component)
	if err != nil || f == nil {
		return f, err
	}
	switch f.Action {
	case "set-flag":
		if len(f.Args) != 2 {
			return f, fmt.Errorf("failpoint %s: set-flag wants a flag name and a value, got %q", Path(l), f.Args)
		}
		if staged == "" {
			return f, fmt.Errorf("failpoint %s: set-flag fires only where a manifest goes back (a restart, not a reload)", Path(l))
		}
		return f, setFlag(staged, f.Args[0], f.Args[1])
	case "break-key":
		if len(f.Args) != 1 {
			return f, fmt.Errorf("failpoint %s: break-key wants one key path, got %q", Path(l), f.Args)
		}
		return f, breakKey(pki.UnderRoot(l.Root, f.Args[0]))
	case "break-file":
		if len(f.Args) != 1 {
			return f, fmt.Errorf("failpoint %s: break-file wants one file path, got %q", Path(l), f.Args)
		}
		return f, breakFile(pki.UnderRoot(l.Root, f.Args[0]))
	default:
		return f, fmt.Errorf("failpoint %s: unknown action %q (want break-key, break-file or set-flag)", Path(l), f.Action)
	}
}

// breakFile writes, over the file at path, text that holds no PEM block: a certificate or CA
// bundle no component can load.
func breakFile(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("failpoint break-file: %w", err)
	}
	return fsutil.WriteFileAtomic(path, []byte("broken by a certctl failpoint: no PEM block here\n"), st.Mode().Perm())
}

// setFlag sets the flag name, which the manifest's container must carry, to value in the
// manifest at path: a component started with a bad flag, as a renewal that wrote a bad
// manifest would leave it.
func setFlag(path, name, value string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("failpoint set-flag: %w", err)
	}
	out, changes, err := manifest.SetFlags(data, map[string]string{name: value})
	if err != nil {
		return fmt.Errorf("failpoint set-flag %s: %w", path, err)
	}
	if len(changes) == 0 {
		return fmt.Errorf("failpoint set-flag: %s carries no --%s to set (or it is %q already)", path, name, value)
	}
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("failpoint set-flag: %w", err)
	}
	return fsutil.WriteFileAtomic(path, out, st.Mode().Perm())
}

// BeforeRestart fires the first line of the node's failpoint file that names point
// before-restart and component, and removes that line.
func BeforeRestart(ctx context.Context, l pki.Layout, component string) (*Fired, error) {
	return hold(ctx, l, "before-restart", component)
}

// BeforeCheck fires the first line of the node's failpoint file that names point before-check
// and component (etcd: the quorum check before a rotation restarts the node's etcd member), and
// removes that line.
func BeforeCheck(ctx context.Context, l pki.Layout, component string) (*Fired, error) {
	return hold(ctx, l, "before-check", component)
}

// hold fires a point whose one action is hold-until.
func hold(ctx context.Context, l pki.Layout, point, component string) (*Fired, error) {
	f, err := take(l, point, component)
	if err != nil || f == nil {
		return f, err
	}
	switch f.Action {
	case "hold-until":
		if len(f.Args) != 1 {
			return f, fmt.Errorf("failpoint %s: hold-until wants one file path, got %q", Path(l), f.Args)
		}
		return f, holdUntil(ctx, pki.UnderRoot(l.Root, f.Args[0]))
	default:
		return f, fmt.Errorf("failpoint %s: unknown action %q (want hold-until)", Path(l), f.Action)
	}
}

// holdUntil waits, polling, until path exists or ctx ends.
func holdUntil(ctx context.Context, path string) error {
	err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(context.Context) (bool, error) {
		_, err := os.Stat(path)
		return err == nil, nil
	})
	if err != nil {
		return fmt.Errorf("failpoint hold-until %s: %w", path, err)
	}
	return nil
}

// take removes and returns the first line for point and component.
func take(l pki.Layout, point, component string) (*Fired, error) {
	path := Path(l)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	lines := bytes.Split(data, []byte("\n"))
	for i, line := range lines {
		fields := strings.Fields(string(line))
		if len(fields) < 3 || fields[0] != point || fields[1] != component {
			continue
		}
		rest := append(lines[:i:i], lines[i+1:]...)
		if err := fsutil.WriteFileAtomic(path, bytes.Join(rest, []byte("\n")), 0o600); err != nil {
			return nil, err
		}
		return &Fired{Point: point, Component: component, Action: fields[2], Args: fields[3:]}, nil
	}
	return nil, nil
}

// breakKey writes a new ECDSA key over path: the certificate beside it no longer matches.
func breakKey(path string) error {
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("failpoint break-key: %w", err)
	}
	k, err := pki.GenerateKey(pki.AlgECDSAP256)
	if err != nil {
		return err
	}
	pemKey, err := pki.EncodePrivateKey(k)
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(path, pemKey, 0o600)
}
