// Package echo is the client side of the exchange Tollgate's load tools
// (tgload, tgsoak) make with an echo server: connect, send a byte, read it
// back, close with a reset (linger 0, so no TIME_WAIT piles up).
package echo

import (
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"
)

// Once makes one exchange with the echo server at addr within timeout and
// returns how long connect took. buf (one byte or more) is its scratch
// space, reused across calls. An error of the established connection names
// its local address (to find it in a firewall's log); a reset then is a
// *ResetError.
func Once(addr string, timeout time.Duration, buf []byte) (time.Duration, error) {
	t0 := time.Now()
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return 0, err
	}
	d := time.Since(t0)
	tc := c.(*net.TCPConn)
	defer tc.Close()
	tc.SetLinger(0)
	tc.SetDeadline(t0.Add(timeout))
	buf = buf[:1]
	buf[0] = 'x'
	if _, err := tc.Write(buf); err != nil {
		return 0, established(tc, "write", err)
	}
	buf[0] = 0
	if _, err := io.ReadFull(tc, buf); err != nil {
		return 0, established(tc, "read echo", err)
	}
	if buf[0] != 'x' {
		return 0, fmt.Errorf("echo on %s: got %q, want \"x\"", tc.LocalAddr(), buf)
	}
	return d, nil
}

// ResetError is a connection reset after its handshake completed: a
// firewall that refuses a connection does so at its SYN, so whether this
// was a firewall's doing is for its log to say.
type ResetError struct{ Err error }

func (e *ResetError) Error() string { return e.Err.Error() }
func (e *ResetError) Unwrap() error { return e.Err }

func established(c net.Conn, what string, err error) error {
	err = fmt.Errorf("%s on %s: %w", what, c.LocalAddr(), err)
	if errors.Is(err, syscall.ECONNRESET) {
		return &ResetError{err}
	}
	return err
}

// IsReset says whether err is a reset after the handshake.
func IsReset(err error) bool {
	var r *ResetError
	return errors.As(err, &r)
}
