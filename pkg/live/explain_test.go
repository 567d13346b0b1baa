package live

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestExplainDial: the kind of a dial failure is told from the error's type and errno, never
// its wording: a refusal, a timeout (the dialer's, a deadline's), anything else as it is. The
// errors are what real dials on loopback return.
func TestExplainDial(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	_, refused := net.Dial("tcp", closed)
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	_, expired := (&net.Dialer{}).DialContext(ctx, "tcp", closed)
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"refused (a real dial)", refused, "nothing listens on"},
		{"refused, reworded", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, "nothing listens on"},
		{"deadline (a real dial)", expired, "did not answer in time"},
		{"a timeout without the word", &net.OpError{Op: "dial", Net: "tcp", Err: timeoutErr{}}, "did not answer in time"},
		{"the word without a timeout", fmt.Errorf("remote error: tls: handshake failure (timeout in the message)"), "could not complete a TLS handshake"},
		{"refused in words only", errors.New("connection refused"), "could not complete a TLS handshake"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.err == nil {
				t.Fatal("the dial did not fail")
			}
			if got := explainDial(closed, tc.err); !strings.Contains(got, tc.want) {
				t.Errorf("explainDial(%v) = %q, want %q", tc.err, got, tc.want)
			}
		})
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o deadline" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }
