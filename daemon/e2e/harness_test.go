// Package e2e drives the real tollgated binary inside a pair of network
// namespaces the tests create: a client namespace the daemon guards and a
// server namespace it talks to over veth. Nothing here touches the machine's
// own network namespace.
package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tollgate-fw/tollgate/daemon/store"
	"github.com/tollgate-fw/tollgate/internal/nstest"
	"github.com/tollgate-fw/tollgate/internal/proctest"
	"github.com/tollgate-fw/tollgate/shared"
)

// Ports the server namespace answers on.
const (
	portA = 7000
	portB = 7001
)

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// binaries builds tollgated and tgprobe once per test run.
func binaries(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "tollgate-e2e-bin-")
		if buildErr != nil {
			return
		}
		os.Chmod(buildDir, 0o755)
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		cmd := exec.Command("go", "build", "-o", buildDir+"/", "./daemon/cmd/tollgated", "./internal/cmd/tgprobe")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildDir
}

// env is one test's world: a namespace pair, a server, a daemon directory.
type env struct {
	t    *testing.T
	pair *nstest.Pair
	bin  string
	dir  string // config, database, rules.d (readable by nobody for probes)
	d    *daemon
	// busAddr is the D-Bus address the daemon serves on: a private bus the
	// test started, or (empty) a socket that does not exist, so no test
	// ever reaches a host bus.
	busAddr string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	nstest.RequireRoot(t)
	e := &env{t: t, bin: binaries(t), pair: nstest.NewPair(t)}
	e.dir = t.TempDir()
	os.Chmod(e.dir, 0o755)
	if err := os.MkdirAll(filepath.Join(e.dir, "rules.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	e.startServer(e.pair.Server, fmt.Sprintf(":%d", portA), fmt.Sprintf(":%d", portB))
	return e
}

// startServer runs an echo server (TCP and UDP on each address) in ns.
func (e *env) startServer(ns string, addrs ...string) {
	for _, a := range addrs {
		p := startProc(e.t, "ip", "netns", "exec", ns, filepath.Join(e.bin, "tgprobe"), "serve", "-tcp", a, "-udp", a)
		proctest.WaitFor(e.t, 5*time.Second, "server ready on "+a, func() bool { return strings.Contains(p.Output(), "ready") })
	}
}

// probe copies tgprobe to a path of its own so executable identity matters.
func (e *env) probe(name string) string {
	e.t.Helper()
	dst := filepath.Join(e.dir, name)
	data, err := os.ReadFile(filepath.Join(e.bin, "tgprobe"))
	if err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o755); err != nil {
		e.t.Fatal(err)
	}
	return dst
}

// result of one probe run.
type result struct {
	code int
	out  string
	took time.Duration
}

func (r result) String() string {
	return fmt.Sprintf("exit %d after %s: %s", r.code, r.took.Round(time.Millisecond), strings.TrimSpace(r.out))
}

// connect runs exe in ns as uid (-1: root) connecting to addr.
func (e *env) connect(ns string, uid int, exe, network, addr string, extra ...string) result {
	e.t.Helper()
	args := []string{"netns", "exec", ns}
	if uid >= 0 {
		args = append(args, "setpriv", fmt.Sprintf("--reuid=%d", uid), fmt.Sprintf("--regid=%d", uid), "--clear-groups")
	}
	args = append(args, exe, "connect", "-timeout", "1500ms")
	args = append(args, extra...)
	args = append(args, network, addr)
	start := time.Now()
	out, err := exec.Command("ip", args...).CombinedOutput()
	r := result{out: string(out), took: time.Since(start)}
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			r.code = ee.ExitCode()
		} else {
			e.t.Fatalf("run probe: %v", err)
		}
	}
	return r
}

// Outcomes of a probe, by exit code (see tgprobe).
const (
	codeOK      = 0
	codeRefused = 3
	codeTimeout = 4
)

func (e *env) wantCode(r result, want int, what string) {
	e.t.Helper()
	if r.code != want {
		e.t.Errorf("%s: want exit %d, got %s\n--- daemon log ---\n%s", what, want, r, e.daemonLog())
	}
}

func (e *env) daemonLog() string {
	if e.d == nil {
		return "(no daemon)"
	}
	return e.d.Output()
}

// writeConfig writes the daemon's configuration with extra TOML lines.
func (e *env) writeConfig(extra string) string {
	path := filepath.Join(e.dir, "config.toml")
	busAddr := e.busAddr
	if busAddr == "" {
		busAddr = "unix:path=" + filepath.Join(e.dir, "no-bus")
	}
	if !strings.Contains(extra, "prompt_timeout") {
		extra += "\nprompt_timeout = \"2s\""
	}
	cfg := fmt.Sprintf(`database = %q
rules_dir = %q
log_level = "info"
database_lock_timeout = "2s"
bus_address = %q
%s
`, filepath.Join(e.dir, "tollgate.db"), filepath.Join(e.dir, "rules.d"), busAddr, extra)
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		e.t.Fatal(err)
	}
	return path
}

// writeRules writes a rules.d file.
func (e *env) writeRules(name, toml string) {
	if err := os.WriteFile(filepath.Join(e.dir, "rules.d", name), []byte(toml), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

// startProc starts a process for t; it is stopped (by its pid) at cleanup.
func startProc(t *testing.T, name string, args ...string) *proctest.Proc {
	t.Helper()
	return proctest.StartTest(t, exec.Command(name, args...), proctest.AtCleanup{Grace: 5 * time.Second})
}

// daemon is a running tollgated.
type daemon = proctest.Proc

// start runs tollgated in the client namespace and waits until its chains
// are in place.
func (e *env) start(extraConfig string) *daemon {
	e.t.Helper()
	cfg := e.writeConfig(extraConfig)
	// ip netns exec execs the daemon: the pid is the daemon's own.
	d := startProc(e.t, "ip", "netns", "exec", e.pair.Client, filepath.Join(e.bin, "tollgated"), "-config", cfg)
	e.d = d
	if err := d.WaitOutput(e.t.Context(), "tollgated running", 15*time.Second); err != nil {
		e.t.Fatalf("start tollgated: %v", err)
	}
	return d
}

// stop sends sig to the daemon and waits for it to exit.
func (e *env) stop(d *daemon, sig syscall.Signal) error {
	e.t.Helper()
	err := d.Stop(sig, 20*time.Second)
	if errors.Is(err, proctest.ErrKilled) {
		e.t.Fatalf("tollgated did not exit after %v:\n%s", sig, d.Output())
	}
	return err
}

// allLogEntries reads the whole connection log of the stopped daemon.
func (e *env) allLogEntries() []shared.LogEntry {
	e.t.Helper()
	st, err := store.Open(store.Options{Path: filepath.Join(e.dir, "tollgate.db"), LockTimeout: 2 * time.Second, ReadOnly: true}, nil)
	if err != nil {
		e.t.Fatalf("open database after the daemon stopped: %v", err)
	}
	defer st.Close()
	entries, err := st.Log(store.LogFilter{})
	if err != nil {
		e.t.Fatal(err)
	}
	return entries
}

// chains returns the client namespace's iptables and ip6tables rules.
func (e *env) chains() string {
	var b strings.Builder
	for _, tool := range []string{"iptables", "ip6tables"} {
		out, err := exec.Command("ip", "netns", "exec", e.pair.Client, tool, "-w", "-S").CombinedOutput()
		if err != nil {
			e.t.Fatalf("%s -S: %v\n%s", tool, err, out)
		}
		b.Write(out)
	}
	return b.String()
}

// runCmd runs a command to completion and returns its combined output.
func runCmd(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}
