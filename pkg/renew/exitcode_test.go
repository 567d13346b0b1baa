package renew

import (
	"errors"
	"fmt"
	"testing"
)

// coded is an error shaped as the CLI's exit errors: a code, and a cause or none.
type coded struct {
	code int
	err  error
}

func (c *coded) Error() string {
	if c.err == nil {
		return fmt.Sprintf("exit %d", c.code)
	}
	return c.err.Error()
}
func (c *coded) Unwrap() error { return c.err }
func (c *coded) ExitCode() int { return c.code }

// TestBareExitCode: the run record keeps a failure's message, and none for a bare exit code,
// decided by the error's type, whatever its text.
func TestBareExitCode(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"bare exit code", &coded{code: 2}, true},
		{"wrapped bare exit code", fmt.Errorf("renew: %w", &coded{code: 1}), true},
		{"exit code with a cause", &coded{code: 3, err: errors.New("read ca.key: permission denied")}, false},
		{"plain error that reads like an exit", errors.New("exit 3"), false},
	} {
		if got := bareExitCode(tc.err); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
