package cli

import (
	"encoding/json"
	"fmt"
	"github.com/tollgate-fw/tollgate/internal/bustest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-fw/tollgate/internal/nstest"
	"github.com/tollgate-fw/tollgate/internal/proctest"
)

// The end-to-end test: the real tollgated guards a client network namespace
// and serves on a private system-like bus (the packaged D-Bus policy
// included); `tollgate prompt` runs on a pseudo-terminal as root's agent; a
// connection from the namespace is held until a key is typed. The test
// runs binaries only (ui/ never imports the daemon).

// repoRoot is the repository root, found from this file.
func repoRoot(t *testing.T) string {
	t.Helper()
	_, here, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(here), "..", "..")
}

// buildAll builds tollgated, tgprobe and tollgate into a directory every
// uid can read.
func buildAll(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "tollgate-cli-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	cmd := exec.Command("go", "build", "-o", dir+"/", "./daemon/cmd/tollgated", "./internal/cmd/tgprobe", "./ui/cmd/tollgate")
	cmd.Dir = repoRoot(t)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return dir
}

// systemBus starts a dbus-daemon with a system-bus-like configuration that
// includes the packaged Tollgate policy; it returns the address.
func systemBus(t *testing.T, dir string) string {
	t.Helper()
	return bustest.StartIn(t, dir, false).Addr
}

// startBackground starts a process for t; cleanup stops it by its pid
// and logs its output if the test failed.
func startBackground(t *testing.T, name string, args ...string) *proctest.Proc {
	t.Helper()
	return proctest.StartTest(t, exec.Command(name, args...), proctest.AtCleanup{Grace: 10 * time.Second, LogOutput: true})
}

// exitCode waits up to within for p to end and returns its exit code.
func exitCode(t *testing.T, p *proctest.Proc, within time.Duration) int {
	t.Helper()
	code, err := p.ExitCode(within)
	if err != nil {
		t.Fatalf("%v; output:\n%s", err, p.Output())
	}
	return code
}

// world is one end-to-end test's setup: binaries, a namespace pair with an
// echo server, a private bus and tollgated guarding the client namespace.
type world struct {
	t      *testing.T
	bin    string
	dir    string
	pair   *nstest.Pair
	addr   string
	env    []string
	daemon *proctest.Proc
	target string // the echo server, host:port
}

func newWorld(t *testing.T) *world {
	t.Helper()
	nstest.RequireRoot(t)
	for _, tool := range []string{"dbus-daemon", "ip", "setpriv"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed (make deps): %v", tool, err)
		}
	}
	// A directory every uid can reach (t.TempDir's parent is private):
	// other users' clients connect to the bus socket in it.
	dir, err := os.MkdirTemp("", "tollgate-cli-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	w := &world{t: t, bin: buildAll(t), dir: dir}
	w.pair = nstest.NewPair(t)
	w.addr = systemBus(t, w.dir)
	w.env = []string{BusEnv + "=" + w.addr}
	w.target = fmt.Sprintf("%s:7000", w.pair.ServerIP4)

	server := startBackground(t, "ip", "netns", "exec", w.pair.Server, filepath.Join(w.bin, "tgprobe"), "serve", "-tcp", ":7000")
	waitFor(t, "echo server", func() bool { return strings.Contains(server.Output(), "ready") })

	os.MkdirAll(filepath.Join(w.dir, "rules.d"), 0o755)
	cfg := filepath.Join(w.dir, "config.toml")
	err = os.WriteFile(cfg, []byte(fmt.Sprintf(`database = %q
rules_dir = %q
prompt_timeout = "60s"
database_lock_timeout = "2s"
default_action = "deny"
bus_address = %q
polkit = false
log_level = "debug"
`, filepath.Join(w.dir, "tollgate.db"), filepath.Join(w.dir, "rules.d"), w.addr)), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	w.daemon = startBackground(t, "ip", "netns", "exec", w.pair.Client, filepath.Join(w.bin, "tollgated"), "-config", cfg)
	waitFor(t, "tollgated on the bus", func() bool { code, _ := w.cli(-1, "status"); return code == ExitOK })
	return w
}

// cli runs the tollgate binary as uid (-1: root) and returns its exit code
// and output.
func (w *world) cli(uid int, args ...string) (int, string) {
	w.t.Helper()
	name, full := filepath.Join(w.bin, "tollgate"), args
	if uid >= 0 {
		full = append([]string{fmt.Sprintf("--reuid=%d", uid), fmt.Sprintf("--regid=%d", uid), "--clear-groups", name}, args...)
		name = "setpriv"
	}
	cmd := exec.Command(name, full...)
	cmd.Env = append(os.Environ(), w.env...)
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), string(out)
	}
	if err != nil {
		w.t.Fatalf("run tollgate: %v", err)
	}
	return 0, string(out)
}

// mustCLI runs tollgate as root and wants exit code want.
func (w *world) mustCLI(want int, args ...string) string {
	w.t.Helper()
	code, out := w.cli(-1, args...)
	if code != want {
		w.t.Fatalf("tollgate %s: exit %d, want %d\n%s", strings.Join(args, " "), code, want, out)
	}
	return out
}

// probe copies tgprobe to a path of its own (executable identity matters)
// and returns the path.
func (w *world) probe(name string) string {
	w.t.Helper()
	data, err := os.ReadFile(filepath.Join(w.bin, "tgprobe"))
	if err != nil {
		w.t.Fatal(err)
	}
	p := filepath.Join(w.dir, name)
	if err := os.WriteFile(p, data, 0o755); err != nil {
		w.t.Fatal(err)
	}
	return p
}

// connect starts exe connecting to the echo server from the client
// namespace, as root.
func (w *world) connect(exe string, timeout time.Duration) *proctest.Proc {
	return startBackground(w.t, "ip", "netns", "exec", w.pair.Client, exe, "connect", "-timeout", timeout.String(), "tcp", w.target)
}

func TestIntegrationPromptThroughPTY(t *testing.T) {
	w := newWorld(t)
	p := startOnTTY(t, w.env, filepath.Join(w.bin, "tollgate"), "prompt")
	p.waitOut("waiting for connections")

	probe := w.probe("probe")
	held := w.connect(probe, 50*time.Second)
	p.waitOut("--- connection #")
	p.waitOut(probe)
	if held.Exited() {
		t.Fatalf("the connection was not held for the prompt: %s", held.Output())
	}
	p.typeKeys("A") // allow forever, no Enter
	if code := exitCode(t, held, 30*time.Second); code != 0 {
		t.Fatalf("held connection after allow: exit %d: %s\n--- terminal ---\n%s", code, held.Output(), p.out.String())
	}
	p.waitOut("allow forever")

	// The forever rule lets later connections through without asking.
	if out := w.mustCLI(ExitOK, "rules", "list", "--json"); !strings.Contains(out, probe) {
		t.Fatalf("rules list after allow forever lacks the rule:\n%s", out)
	}
	if code := exitCode(t, w.connect(probe, 10*time.Second), 20*time.Second); code != 0 {
		t.Fatalf("second connection: exit %d", code)
	}
	if n := strings.Count(p.out.String(), "--- connection #"); n != 1 {
		t.Errorf("prompted %d times, want once:\n%s", n, p.out.String())
	}
	p.typeKeys("q")
	if code := p.wait(); code != ExitOK {
		t.Fatalf("prompt exit %d:\n%s", code, p.out.String())
	}
	t.Logf("terminal:\n%s", p.out.String())
}

// TestIntegrationCommands runs the CLI's commands against the real daemon:
// rules round trips, export/import idempotence, exit codes scripts rely on
// (not authorized as another user, not found), an answer given with
// `tollgate answer` reaching the prompt as decided elsewhere, and the log.
func TestIntegrationCommands(t *testing.T) {
	w := newWorld(t)
	const nobody = 65534

	if out := w.mustCLI(ExitOK, "status", "--json"); !strings.Contains(out, `"mode": "enforcing"`) {
		t.Errorf("status --json:\n%s", out)
	}
	out := w.mustCLI(ExitOK, "rules", "add", "--json", "--action", "allow", "--exe", "/usr/bin/curl", "--host", "example.org",
		"--port", "443", "--proto", "tcp", "--lifetime", "forever")
	id := decodeJSON[map[string]any](t, out)["id"].(string)
	if out := w.mustCLI(ExitOK, "rules", "show", id); !strings.Contains(out, "example.org") || !strings.Contains(out, "/usr/bin/curl") {
		t.Errorf("rules show %s:\n%s", id, out)
	}
	w.mustCLI(ExitOK, "rules", "edit", id, "--port", "8443", "--note", "edited")
	w.mustCLI(ExitOK, "rules", "disable", id)
	show := decodeJSON[map[string]any](t, w.mustCLI(ExitOK, "rules", "show", id, "--json"))
	if show["port"] != "8443" || show["note"] != "edited" || show["enabled"] != false || show["host"] != "example.org" {
		t.Errorf("after edit and disable: %v", show)
	}
	w.mustCLI(ExitOK, "rules", "enable", id)
	ex := decodeJSON[map[string]any](t, w.mustCLI(ExitOK, "rules", "explain", "--json", "--exe", "/usr/bin/curl",
		"--host", "example.org", "--ip", "192.0.2.1", "--port", "8443"))
	if cands, _ := ex["candidates"].([]any); len(cands) == 0 || !strings.Contains(fmt.Sprint(cands[0]), id) {
		t.Errorf("rules explain: %v", ex)
	}
	t.Logf("rules explain says:\n%s", w.mustCLI(ExitOK, "rules", "explain", "--exe", "/usr/bin/curl", "--host", "example.org", "--port", "8443"))
	w.mustCLI(ExitUsage, "rules", "add", "--action", "allow", "--port", "70000")
	w.mustCLI(ExitNotFound, "rules", "rm", "no-such-rule")

	// Another user: may read, may not change the mode or system rules.
	if code, out := w.cli(nobody, "status"); code != ExitOK {
		t.Errorf("status as nobody: exit %d\n%s", code, out)
	}
	if code, out := w.cli(nobody, "mode", "monitor"); code != ExitNotAuthorized || !strings.Contains(out, "sudo") {
		t.Errorf("mode monitor as nobody: exit %d\n%s", code, out)
	} else {
		t.Logf("mode monitor as nobody says:\n%s", out)
	}
	if code, out := w.cli(nobody, "rules", "rm", id); code != ExitNotAuthorized {
		t.Errorf("rm a system rule as nobody: exit %d\n%s", code, out)
	}

	// Export, then import the same file twice: the second adds nothing.
	file := filepath.Join(w.dir, "export.toml")
	w.mustCLI(ExitOK, "rules", "export", file)
	w.mustCLI(ExitOK, "rules", "rm", id)
	first := decodeJSON[map[string]any](t, w.mustCLI(ExitOK, "rules", "import", file, "--json"))
	second := decodeJSON[map[string]any](t, w.mustCLI(ExitOK, "rules", "import", file, "--json"))
	if first["added"] != json.Number("1") || second["added"] != json.Number("0") {
		t.Errorf("import twice: %v then %v", first, second)
	}

	// A connection held for the prompt, answered with `tollgate answer`.
	p := startOnTTY(t, w.env, filepath.Join(w.bin, "tollgate"), "prompt")
	p.waitOut("waiting for connections")
	probe := w.probe("answered-probe")
	held := w.connect(probe, 50*time.Second)
	p.waitOut("--- connection #")
	pending := decodeJSON[[]map[string]any](t, w.mustCLI(ExitOK, "pending", "--json"))
	if len(pending) != 1 {
		t.Fatalf("pending: %v", pending)
	}
	pid := pending[0]["id"].(json.Number).String()
	w.mustCLI(ExitOK, "answer", pid, "allow")
	if code := exitCode(t, held, 30*time.Second); code != 0 {
		t.Fatalf("connection after tollgate answer: exit %d: %s", code, held.Output())
	}
	p.waitOut("#" + pid + " was decided elsewhere: allow")
	w.mustCLI(ExitNotFound, "answer", pid, "deny")
	p.typeKeys("q")
	if code := p.wait(); code != ExitOK {
		t.Fatalf("prompt exit %d:\n%s", code, p.out.String())
	}

	// The log has the connection.
	var entries []map[string]any
	waitFor(t, "the connection in the log", func() bool {
		entries = decodeJSON[[]map[string]any](t, w.mustCLI(ExitOK, "log", "--json", "--exe", probe))
		return len(entries) > 0
	})
	if e := entries[len(entries)-1]; e["action"] != "allow" || e["remote_port"] != json.Number("7000") {
		t.Errorf("log --exe %s: %v", probe, entries)
	}
}
