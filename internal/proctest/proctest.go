// Package proctest owns the child processes of Tollgate's tests and of its
// benchmark harness (cmd tgbench): it starts a command with its output
// captured, tells whether and how it ended, waits for something in its
// output, and stops it by its own PID (a signal, a grace period, then
// SIGKILL).
//
// It must never find, signal or kill a process by name (no pkill, no
// killall) nor touch a process it did not start. It does not import
// "testing": the benchmark harness is not test code, and tests pass their
// *testing.T as a T.
package proctest

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tollgate-fw/tollgate/internal/syncbuf"
)

// pollEvery is how often WaitFor and WaitOutput look again.
const pollEvery = 10 * time.Millisecond

var (
	// ErrKilled is wrapped by Stop's error when the process did not exit
	// within the grace period and was killed.
	ErrKilled = errors.New("killed")
	// ErrRunning is wrapped by ExitCode's error when the process did not
	// end in time.
	ErrRunning = errors.New("still running")
)

// T is the part of testing.TB that StartTest and WaitFor use; *testing.T
// and *testing.B are one.
type T interface {
	Helper()
	Cleanup(func())
	Failed() bool
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
}

// Proc is a running (or ended) child process whose stdout and stderr are
// captured together.
type Proc struct {
	cmd  *exec.Cmd
	out  syncbuf.Buffer
	done chan struct{}
	err  error // cmd.Wait's; read only after done is closed
}

// Start starts cmd with its stdout and stderr going to the Proc's output
// (whatever they were set to is replaced). Its error names the command.
func Start(cmd *exec.Cmd) (*Proc, error) {
	p := &Proc{cmd: cmd, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = &p.out, &p.out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", strings.Join(cmd.Args, " "), err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// AtCleanup says how StartTest ends a process at the test's cleanup.
type AtCleanup struct {
	// Grace is how long the process has after SIGTERM before it is killed.
	Grace time.Duration
	// LogOutput logs the process's output, once it has stopped, if the
	// test failed.
	LogOutput bool
}

// StartTest starts cmd as Start does, failing t if it cannot. At t's
// cleanup a process still running is stopped with SIGTERM, or killed after
// c.Grace.
func StartTest(t T, cmd *exec.Cmd, c AtCleanup) *Proc {
	t.Helper()
	p, err := Start(cmd)
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() {
		p.Stop(syscall.SIGTERM, c.Grace)
		if c.LogOutput && t.Failed() {
			t.Logf("--- %s output ---\n%s", filepath.Base(cmd.Args[0]), p.Output())
		}
	})
	return p
}

// PID is the process's id.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Args is the command line the process was started with; do not modify it.
func (p *Proc) Args() []string { return p.cmd.Args }

// Output is what the process wrote so far, stdout and stderr interleaved.
func (p *Proc) Output() string { return p.out.String() }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Wait waits for the process to exit and returns what exec.Cmd.Wait
// returned: nil, an *exec.ExitError, or an error of the wait itself.
func (p *Proc) Wait() error {
	<-p.done
	return p.err
}

// Signal sends sig to the process by its PID. Once the process has been
// waited for it sends nothing and the error wraps os.ErrProcessDone.
func (p *Proc) Signal(sig syscall.Signal) error {
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("send %s to %s (pid %d): %w", signalName(sig), p.cmd.Path, p.PID(), err)
	}
	return nil
}

// Stop sends sig to the process (unless it has exited), waits up to grace
// for it to exit, and kills it after that. It returns the process's exit
// error (as Wait), or an error wrapping ErrKilled if it had to be killed.
func (p *Proc) Stop(sig syscall.Signal, grace time.Duration) error {
	if !p.Exited() {
		p.cmd.Process.Signal(sig)
	}
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-p.done:
		return p.err
	case <-timer.C:
	}
	p.cmd.Process.Kill()
	<-p.done
	return fmt.Errorf("%s did not exit within %s of %s: %w", p.cmd.Path, grace, signalName(sig), ErrKilled)
}

// ExitCode waits up to within for the process to exit and returns its exit
// code: 0 on success, -1 when a signal ended it. The error wraps ErrRunning
// if it did not exit in time, or is the wait's own when that failed.
func (p *Proc) ExitCode(within time.Duration) (int, error) {
	timer := time.NewTimer(within)
	defer timer.Stop()
	select {
	case <-p.done:
	case <-timer.C:
		return -1, fmt.Errorf("%s did not end within %s: %w", p.cmd.Path, within, ErrRunning)
	}
	if p.err == nil {
		return 0, nil
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode(), nil
	}
	return -1, fmt.Errorf("wait for %s: %w", p.cmd.Path, p.err)
}

// WaitOutput waits up to within until the process's output contains want.
// It fails early when ctx ends or the process exits without having said it.
func (p *Proc) WaitOutput(ctx context.Context, want string, within time.Duration) error {
	if !poll(ctx, within, func() bool { return strings.Contains(p.Output(), want) || p.Exited() }) {
		if err := ctx.Err(); err != nil {
			return err
		}
		return fmt.Errorf("%s did not say %q within %s: %s", p.cmd.Path, want, within, p.Output())
	}
	// Exited may have ended the wait: the output is complete now.
	if !strings.Contains(p.Output(), want) {
		return fmt.Errorf("%s exited (%v) before saying %q: %s", p.cmd.Path, p.err, want, p.Output())
	}
	return nil
}

// WaitFor polls cond until it holds, failing t if within passes first.
// cond runs on the caller's goroutine, so it may fail t itself.
func WaitFor(t T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	if !poll(context.Background(), within, cond) {
		t.Fatalf("timed out after %v waiting for %s", within, what)
	}
}

// poll calls cond every pollEvery until it returns true (true), or ctx
// ends or within passes first (false). cond is called at least once.
func poll(ctx context.Context, within time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)
	for !cond() {
		if ctx.Err() != nil || time.Now().After(deadline) {
			return false
		}
		time.Sleep(pollEvery)
	}
	return true
}

// signalName is "SIGTERM" for syscall.SIGTERM.
func signalName(sig syscall.Signal) string {
	if n := unix.SignalName(sig); n != "" {
		return n
	}
	return sig.String()
}
