package cli

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tollgate-fw/tollgate/internal/syncbuf"
	"github.com/tollgate-fw/tollgate/shared"
)

// openPTY opens a pseudo-terminal pair.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	fd := int(m.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		t.Fatalf("unlock pty: %v", err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		m.Close()
		t.Fatalf("pty number: %v", err)
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		t.Fatalf("open pty %d: %v", n, err)
	}
	t.Cleanup(func() { m.Close(); s.Close() })
	return m, s
}

// buildTollgate builds the tollgate binary into a temporary directory.
func buildTollgate(t *testing.T) string {
	t.Helper()
	gotool, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "tollgate")
	cmd := exec.Command(gotool, "build", "-o", bin, "github.com/tollgate-fw/tollgate/ui/cmd/tollgate")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build tollgate: %v\n%s", err, out)
	}
	return bin
}

// ttyProc is a process whose terminal is a pty this test holds.
type ttyProc struct {
	t      *testing.T
	cmd    *exec.Cmd
	master *os.File
	slave  *os.File
	out    *syncbuf.Buffer
	done   chan error
}

func startOnTTY(t *testing.T, env []string, bin string, args ...string) *ttyProc {
	t.Helper()
	m, s := openPTY(t)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = s, s, s
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	p := &ttyProc{t: t, cmd: cmd, master: m, slave: s, out: new(syncbuf.Buffer), done: make(chan error, 1)}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	go io.Copy(p.out, m) // ends with EIO when the terminal closes
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

func (p *ttyProc) waitOut(s string) {
	p.t.Helper()
	waitFor(p.t, quote(s)+" on the terminal; so far:\n"+p.out.String(), func() bool { return strings.Contains(p.out.String(), s) })
}

func (p *ttyProc) typeKeys(s string) {
	p.t.Helper()
	if _, err := p.master.Write([]byte(s)); err != nil {
		p.t.Fatalf("type %q: %v", s, err)
	}
}

func (p *ttyProc) wait() int {
	p.t.Helper()
	select {
	case err := <-p.done:
		if err == nil {
			return 0
		}
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		p.t.Fatalf("wait: %v", err)
	case <-time.After(20 * time.Second):
		p.t.Fatalf("process did not end; terminal:\n%s", p.out.String())
	}
	return -1
}

// TestTTYPrompt runs the tollgate binary's prompt on a pseudo-terminal:
// single keys answer without Enter (the terminal is put in key mode), and
// the terminal is restored on exit.
func TestTTYPrompt(t *testing.T) {
	addr := privateBus(t)
	bin := buildTollgate(t)
	f := newFake()
	srv := serve(t, addr, f)
	p := startOnTTY(t, []string{BusEnv + "=" + addr}, bin, "prompt", "--scope", "exe-host")
	p.waitOut("waiting for connections")
	waitFor(t, "agent registration", f.isAgent)
	srv.emitPending(t, pend(80, "/usr/bin/curl", "example.org"))
	p.waitOut("--- connection #80")
	p.typeKeys("A") // no Enter
	waitFor(t, "answer to 80", func() bool { return len(f.answered()) == 1 })
	if a := f.answered()[0]; a.PendingID != 80 || a.Action != shared.ActionAllow ||
		a.Lifetime != shared.LifetimeForever || a.Scope != shared.ScopeExeHost {
		t.Errorf("answer: %+v", a)
	}
	p.waitOut("#80: allow forever")
	p.typeKeys("q")
	if code := p.wait(); code != ExitOK {
		t.Fatalf("exit %d; terminal:\n%s", code, p.out.String())
	}
	tio, err := unix.IoctlGetTermios(int(p.slave.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	if tio.Lflag&unix.ICANON == 0 || tio.Lflag&unix.ECHO == 0 {
		t.Errorf("terminal left in key mode: lflag %#x", tio.Lflag)
	}
	if f.isAgent() {
		t.Error("agent not unregistered")
	}
}
