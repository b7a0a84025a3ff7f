package proctest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// sh starts a /bin/sh child running script.
func sh(t *testing.T, script string) *Proc {
	t.Helper()
	p, err := Start(exec.Command("/bin/sh", "-c", script))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(syscall.SIGKILL, 10*time.Second) })
	return p
}

func TestStartCapturesStdoutAndStderrAndTheExitCode(t *testing.T) {
	p := sh(t, `echo out; echo err >&2; exit 7`)
	code, err := p.ExitCode(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if code != 7 {
		t.Errorf("exit code %d, want 7", code)
	}
	if out := p.Output(); !strings.Contains(out, "out\n") || !strings.Contains(out, "err\n") {
		t.Errorf("output %q lacks stdout or stderr", out)
	}
	if !p.Exited() {
		t.Error("not Exited after ExitCode returned")
	}
	select {
	case <-p.Done():
	default:
		t.Error("Done not closed after exit")
	}
	var ee *exec.ExitError
	if err := p.Wait(); !errors.As(err, &ee) || ee.ExitCode() != 7 {
		t.Errorf("Wait: %v, want exit status 7", err)
	}
}

func TestExitCodeZeroAndNilWait(t *testing.T) {
	p := sh(t, `exit 0`)
	if code, err := p.ExitCode(10 * time.Second); code != 0 || err != nil {
		t.Fatalf("ExitCode: %d, %v", code, err)
	}
	if err := p.Wait(); err != nil {
		t.Errorf("Wait: %v", err)
	}
}

func TestExitCodeOfARunningProcessTimesOut(t *testing.T) {
	p := sh(t, `echo ready; exec sleep 60`)
	if err := p.WaitOutput(context.Background(), "ready", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	code, err := p.ExitCode(50 * time.Millisecond)
	if !errors.Is(err, ErrRunning) || code != -1 {
		t.Fatalf("ExitCode of a running process: %d, %v; want -1 and ErrRunning", code, err)
	}
	if p.Exited() {
		t.Fatal("Exited while running")
	}
}

func TestStopWithTermWithinGrace(t *testing.T) {
	// The shell execs sleep, which dies of SIGTERM at once.
	p := sh(t, `echo ready; exec sleep 60`)
	if err := p.WaitOutput(context.Background(), "ready", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	err := p.Stop(syscall.SIGTERM, 20*time.Second)
	if errors.Is(err, ErrKilled) {
		t.Fatalf("killed, want ended by SIGTERM: %v", err)
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("Stop: %v, want the exit error", err)
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGTERM {
		t.Errorf("ended by %v, want SIGTERM", ee)
	}
	if code, err := p.ExitCode(time.Second); code != -1 || err != nil {
		t.Errorf("ExitCode after a signal: %d, %v; want -1", code, err)
	}
}

func TestStopACleanExitOnTerm(t *testing.T) {
	// A trap that exits 0: Stop returns nil, the process's own result.
	p := sh(t, `trap 'echo bye; exit 0' TERM; echo ready; while :; do sleep 0.05; done`)
	if err := p.WaitOutput(context.Background(), "ready", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(syscall.SIGTERM, 20*time.Second); err != nil {
		t.Fatalf("Stop: %v, want nil (exit 0 from the trap)", err)
	}
	if !strings.Contains(p.Output(), "bye") {
		t.Errorf("output %q lacks the trap's bye", p.Output())
	}
}

func TestStopKillsAfterGraceAChildThatIgnoresTerm(t *testing.T) {
	p := sh(t, `trap "" TERM; echo ready; while :; do sleep 0.05; done`)
	if err := p.WaitOutput(context.Background(), "ready", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	err := p.Stop(syscall.SIGTERM, 300*time.Millisecond)
	if !errors.Is(err, ErrKilled) {
		t.Fatalf("Stop: %v, want ErrKilled", err)
	}
	if !strings.Contains(err.Error(), "did not exit within 300ms of SIGTERM") {
		t.Errorf("error %q does not say what it waited for", err)
	}
	if !p.Exited() {
		t.Error("not Exited after the kill")
	}
	var ee *exec.ExitError
	if !errors.As(p.Wait(), &ee) {
		t.Fatalf("Wait after the kill: %v", p.Wait())
	}
	if ws := ee.Sys().(syscall.WaitStatus); ws.Signal() != syscall.SIGKILL {
		t.Errorf("ended by %v, want SIGKILL", ee)
	}
}

func TestStopAnExitedProcessReturnsItsResult(t *testing.T) {
	p := sh(t, `exit 3`)
	<-p.Done()
	err := p.Stop(syscall.SIGTERM, time.Second)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("Stop after exit: %v, want exit status 3", err)
	}
	if err := p.Signal(syscall.SIGTERM); !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("Signal after exit: %v, want os.ErrProcessDone", err)
	}
}

func TestSignalReachesTheChildByPID(t *testing.T) {
	p := sh(t, `trap 'echo got hup' HUP; echo ready pid $$; while :; do sleep 0.05; done`)
	if err := p.WaitOutput(context.Background(), "ready", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("ready pid %d", p.PID()); !strings.Contains(p.Output(), want) {
		t.Errorf("PID %d is not the child's: %q", p.PID(), p.Output())
	}
	if err := p.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if err := p.WaitOutput(context.Background(), "got hup", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if p.Exited() {
		t.Error("exited on a trapped SIGHUP")
	}
}

func TestWaitOutputFailsWhenTheProcessExitsWithoutSayingIt(t *testing.T) {
	p := sh(t, `echo something else; exit 2`)
	err := p.WaitOutput(context.Background(), "ready", 10*time.Second)
	if err == nil || !strings.Contains(err.Error(), `exited (exit status 2) before saying "ready"`) ||
		!strings.Contains(err.Error(), "something else") {
		t.Fatalf("WaitOutput: %v", err)
	}
}

func TestWaitOutputSucceedsWhenTheProcessSaidItAndExited(t *testing.T) {
	p := sh(t, `echo ready; exit 0`)
	<-p.Done()
	if err := p.WaitOutput(context.Background(), "ready", time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestWaitOutputTimesOutAndHonoursTheContext(t *testing.T) {
	p := sh(t, `exec sleep 60`)
	err := p.WaitOutput(context.Background(), "ready", 50*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), `did not say "ready" within 50ms`) {
		t.Fatalf("WaitOutput past its deadline: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.WaitOutput(ctx, "ready", 10*time.Second); !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitOutput with an ended context: %v", err)
	}
}

func TestStartNamesTheCommandItCouldNotStart(t *testing.T) {
	_, err := Start(exec.Command("/nonexistent/tollgate-proctest", "-x"))
	if err == nil || !strings.Contains(err.Error(), "start /nonexistent/tollgate-proctest -x") {
		t.Fatalf("Start: %v", err)
	}
}

// recorder is a T that records instead of failing the test.
type recorder struct {
	failed   bool
	fatal    string
	logs     []string
	cleanups []func()
}

func (r *recorder) Helper()          {}
func (r *recorder) Cleanup(f func()) { r.cleanups = append(r.cleanups, f) }
func (r *recorder) Failed() bool     { return r.failed }
func (r *recorder) Logf(format string, args ...any) {
	r.logs = append(r.logs, fmt.Sprintf(format, args...))
}

// Fatalf records and ends the goroutine, as testing's does.
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = true
	r.fatal = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// run runs f with r on a goroutine of its own (Fatalf ends it), then r's
// cleanups, last first.
func (r *recorder) run(f func(T)) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(r)
	}()
	<-done
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
}

func TestStartTestStopsAtCleanupAndLogsOutputOnFailure(t *testing.T) {
	r := &recorder{}
	var p *Proc
	r.run(func(t T) {
		p = StartTest(t, exec.Command("/bin/sh", "-c", `trap "" TERM; echo hello; while :; do sleep 0.05; done`),
			AtCleanup{Grace: 200 * time.Millisecond, LogOutput: true})
		if err := p.WaitOutput(context.Background(), "hello", 10*time.Second); err != nil {
			t.Fatalf("%v", err)
		}
		WaitFor(t, 50*time.Millisecond, "something that never holds", func() bool { return false })
	})
	if !strings.Contains(r.fatal, "timed out after 50ms waiting for something that never holds") {
		t.Errorf("WaitFor failed with %q", r.fatal)
	}
	if !p.Exited() {
		t.Fatal("the cleanup did not stop the process")
	}
	if len(r.logs) != 1 || !strings.Contains(r.logs[0], "--- sh output ---\nhello") {
		t.Errorf("logs at cleanup of a failed test: %q", r.logs)
	}
}

func TestStartTestLogsNothingWhenTheTestPassedOrWhenNotAsked(t *testing.T) {
	for _, c := range []AtCleanup{{Grace: 10 * time.Second, LogOutput: true}, {Grace: 10 * time.Second}} {
		r := &recorder{}
		var p *Proc
		r.run(func(t T) {
			p = StartTest(t, exec.Command("/bin/sh", "-c", `echo hello; exec sleep 60`), c)
			WaitFor(t, 10*time.Second, "hello", func() bool { return strings.Contains(p.Output(), "hello") })
			if c.LogOutput {
				return
			}
			r.failed = true // failed, but LogOutput is off
		})
		if r.fatal != "" {
			t.Fatal(r.fatal)
		}
		if !p.Exited() {
			t.Fatal("the cleanup did not stop the process")
		}
		if len(r.logs) != 0 {
			t.Errorf("%+v: logged %q", c, r.logs)
		}
	}
}

func TestStartTestFailsTheTestWhenItCannotStart(t *testing.T) {
	r := &recorder{}
	r.run(func(t T) {
		StartTest(t, exec.Command("/nonexistent/tollgate-proctest"), AtCleanup{Grace: time.Second})
		t.Logf("went on after a failed start")
	})
	if !strings.Contains(r.fatal, "start /nonexistent/tollgate-proctest") || len(r.logs) != 0 {
		t.Errorf("fatal %q, logs %q", r.fatal, r.logs)
	}
}
