package attribution

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"

	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// helperEnv makes the test binary act as a small network program: the
// integration tests run copies of it as child processes.
const helperEnv = "TOLLGATE_ATTR_HELPER"

// runHelper is the child's main. It prints one line saying what it opened
// and then holds it until stdin closes (except the modes that exit).
func runHelper(mode string, args []string) int {
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "helper:", mode, err)
		return 1
	}
	hold := func() int {
		_, _ = io.Copy(io.Discard, os.Stdin)
		return 0
	}
	switch mode {
	case "tcp-connect": // ADDR: connect, print "LOCAL REMOTE"
		c, err := net.Dial("tcp", args[0])
		if err != nil {
			return fail(err)
		}
		fmt.Println(c.LocalAddr(), c.RemoteAddr())
		return hold()
	case "tcp-syn": // LOCALIP ADDR: bind, print LOCAL, then block in connect
		ap := netip.MustParseAddrPort(args[1])
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
		if err != nil {
			return fail(err)
		}
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: netip.MustParseAddr(args[0]).As4()}); err != nil {
			return fail(err)
		}
		sa, err := unix.Getsockname(fd)
		if err != nil {
			return fail(err)
		}
		fmt.Printf("%s:%d\n", args[0], sa.(*unix.SockaddrInet4).Port)
		go func() { os.Exit(hold()) }()
		err = unix.Connect(fd, &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())})
		return fail(fmt.Errorf("connect returned: %v", err))
	case "udp-send", "udp-send-exit": // ADDR: unconnected wildcard socket, one datagram
		ap := netip.MustParseAddrPort(args[0])
		c, err := net.ListenUDP("udp", &net.UDPAddr{})
		if err != nil {
			return fail(err)
		}
		if _, err := c.WriteToUDPAddrPort([]byte("hello"), ap); err != nil {
			return fail(err)
		}
		if mode == "udp-send-exit" {
			return 0
		}
		fmt.Println(c.LocalAddr())
		return hold()
	case "udp-connect": // ADDR: connected socket, one datagram
		c, err := net.Dial("udp", args[0])
		if err != nil {
			return fail(err)
		}
		if _, err := c.Write([]byte("hello")); err != nil {
			return fail(err)
		}
		fmt.Println(c.LocalAddr(), c.RemoteAddr())
		return hold()
	case "tcp-listen": // ADDR
		l, err := net.Listen("tcp", args[0])
		if err != nil {
			return fail(err)
		}
		fmt.Println(l.Addr())
		return hold()
	case "udp-listen": // ADDR
		c, err := net.ListenPacket("udp", args[0])
		if err != nil {
			return fail(err)
		}
		fmt.Println(c.LocalAddr())
		return hold()
	case "tcp-accept-hold": // ADDR: listen, print the address, keep every connection until its peer closes
		l, err := net.Listen("tcp", args[0])
		if err != nil {
			return fail(err)
		}
		fmt.Println(l.Addr())
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go func() {
					_, _ = io.Copy(io.Discard, c)
					c.Close()
				}()
			}
		}()
		return hold()
	case "ping": // ADDR: ping socket, one echo request, print the echo id
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, unix.IPPROTO_ICMP)
		if err != nil {
			return fail(err)
		}
		echo := []byte{8, 0, 0, 0, 0, 0, 0, 1, 'h', 'i'}
		if err := unix.Sendto(fd, echo, 0, &unix.SockaddrInet4{Addr: netip.MustParseAddr(args[0]).As4()}); err != nil {
			return fail(err)
		}
		sa, err := unix.Getsockname(fd)
		if err != nil {
			return fail(err)
		}
		fmt.Println(sa.(*unix.SockaddrInet4).Port)
		return hold()
	case "exec-hold": // ADDR NEWEXE: connect, keep the socket across exec of NEWEXE on "go"
		c, err := net.Dial("tcp", args[0])
		if err != nil {
			return fail(err)
		}
		raw, err := c.(*net.TCPConn).SyscallConn()
		if err != nil {
			return fail(err)
		}
		var dupErr error
		_ = raw.Control(func(fd uintptr) { _, dupErr = unix.Dup(int(fd)) }) // no FD_CLOEXEC
		if dupErr != nil {
			return fail(dupErr)
		}
		fmt.Println(c.LocalAddr(), c.RemoteAddr())
		line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
		if strings.TrimSpace(line) != "go" {
			return 0
		}
		var env []string
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, helperEnv+"=") {
				env = append(env, kv)
			}
		}
		env = append(env, helperEnv+"=held")
		return fail(syscall.Exec(args[1], []string{args[1], "held", "after-exec"}, env))
	case "held":
		fmt.Println("held")
		return hold()
	case "bind-exec": // IMAGE PATH ADDR: in a mount namespace of its own, bind IMAGE over PATH, exec PATH tcp-connect ADDR
		// Private first, so that nothing propagates out of this namespace.
		if err := unix.Mount("none", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			return fail(fmt.Errorf("make / private: %w", err))
		}
		if err := unix.Mount(args[0], args[1], "", unix.MS_BIND, ""); err != nil {
			return fail(fmt.Errorf("bind %s over %s: %w", args[0], args[1], err))
		}
		var env []string
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, helperEnv+"=") {
				env = append(env, kv)
			}
		}
		env = append(env, helperEnv+"=tcp-connect")
		return fail(syscall.Exec(args[1], []string{args[1], "tcp-connect", args[2]}, env))
	}
	return fail(fmt.Errorf("unknown mode"))
}

// helperBin copies the test binary to a fresh world-readable directory
// under name, so every process of it has a known executable and sha256.
func helperBin(t testing.TB, name string) (path, sum string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "tg-attr-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(dir, name)
	if err := os.WriteFile(path, b, 0o755); err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return path, hex.EncodeToString(s[:])
}

// child is a running helper.
type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
	done  chan error

	stopOnce sync.Once
}

// startHelper runs bin in mode with args and returns it with the first
// line it printed. The child is stopped (stdin closed, then killed if it
// does not end) at cleanup.
func startHelper(t testing.TB, bin, mode string, cred *syscall.Credential, args ...string) (*child, string) {
	t.Helper()
	var attr *syscall.SysProcAttr
	if cred != nil {
		attr = &syscall.SysProcAttr{Credential: cred}
	}
	return startHelperAttr(t, bin, mode, attr, args...)
}

// startHelperAttr is startHelper with the child's process attributes.
func startHelperAttr(t testing.TB, bin, mode string, attr *syscall.SysProcAttr, args ...string) (*child, string) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{mode}, args...)...)
	cmd.Env = append(os.Environ(), helperEnv+"="+mode)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = attr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout), done: make(chan error, 1)}
	t.Cleanup(func() { c.stop(t) })
	line := c.readLine(t)
	return c, line
}

// readLine waits (with a deadline) for the child's next line.
func (c *child) readLine(t testing.TB) string {
	t.Helper()
	type res struct {
		s   string
		err error
	}
	ch := make(chan res, 1)
	go func() {
		s, err := c.out.ReadString('\n')
		ch <- res{strings.TrimSpace(s), err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("helper %v: read its output: %v", c.cmd.Args, r.err)
		}
		return r.s
	case <-time.After(20 * time.Second):
		t.Fatalf("helper %v printed nothing in time", c.cmd.Args)
	}
	return ""
}

// stop ends the child (closing its stdin, killing it if that is not
// enough) and waits for it. It may be called more than once.
func (c *child) stop(t testing.TB) {
	c.stopOnce.Do(func() {
		c.stdin.Close()
		go func() { c.done <- c.cmd.Wait() }()
		select {
		case <-c.done:
		case <-time.After(10 * time.Second):
			_ = c.cmd.Process.Kill()
			<-c.done
		}
	})
}

// addrs parses "LOCAL REMOTE" or "LOCAL".
func addrs(t testing.TB, line string) (netip.AddrPort, netip.AddrPort) {
	t.Helper()
	f := strings.Fields(line)
	l, err := netip.ParseAddrPort(f[0])
	if err != nil {
		t.Fatalf("helper said %q: %v", line, err)
	}
	var r netip.AddrPort
	if len(f) > 1 {
		if r, err = netip.ParseAddrPort(f[1]); err != nil {
			t.Fatalf("helper said %q: %v", line, err)
		}
	}
	return l, r
}

// testLogger logs to the test.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// initialNetnsPath finds a network namespace other than ours among our
// ancestors (the one `ip netns exec` was started from) for the proc
// connector, or "" when there is none (not running in a test namespace).
func initialNetnsPath(t testing.TB) string {
	self, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		return ""
	}
	fp := newProcFS("/proc", nil)
	pid := os.Getppid()
	for i := 0; pid > 1 && i < 32; i++ {
		path := "/proc/" + strconv.Itoa(pid) + "/ns/net"
		if l, err := os.Readlink(path); err == nil && l != self {
			return path
		}
		st, err := fp.stat(pid)
		if err != nil {
			return ""
		}
		pid = st.PPID
	}
	return ""
}

// helperCmd builds a helper command that is not waited for by cleanup.
func helperCmd(bin, mode string, args ...string) *exec.Cmd {
	cmd := exec.Command(bin, append([]string{mode}, args...)...)
	cmd.Env = append(os.Environ(), helperEnv+"="+mode)
	cmd.Stderr = os.Stderr
	return cmd
}

// run runs a command, returning its output in the error when it fails.
func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
