package cli

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tollgate-fw/tollgate/internal/nstest"
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
	policy := filepath.Join(repoRoot(t), "packaging", "dbus", "org.tollgate.Firewall1.conf")
	if _, err := os.Stat(policy); err != nil {
		t.Fatalf("packaged policy: %v", err)
	}
	sock := filepath.Join(dir, "system_bus_socket")
	conf := filepath.Join(dir, "bus.conf")
	err := os.WriteFile(conf, []byte(`<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=`+sock+`</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
  </policy>
  <include>`+policy+`</include>
</busconfig>
`), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	p := startBackground(t, "dbus-daemon", "--config-file="+conf, "--nofork", "--nopidfile", "--print-address=1")
	waitFor(t, "the private bus", func() bool { return strings.Contains(p.out.String(), "unix:") })
	return "unix:path=" + sock
}

// background is a process the test started; it is stopped by its pid at
// cleanup.
type background struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error
}

func startBackground(t *testing.T, name string, args ...string) *background {
	t.Helper()
	p := &background{cmd: exec.Command(name, args...), out: new(syncBuffer), done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
			return
		default:
		}
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("--- %s output ---\n%s", name, p.out.String())
		}
	})
	return p
}

func (p *background) exitCode(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(within):
		t.Fatalf("%s did not end; output:\n%s", p.cmd.Path, p.out.String())
	}
	if p.err == nil {
		return 0
	}
	if ee, ok := p.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	t.Fatalf("%s: %v", p.cmd.Path, p.err)
	return -1
}

func TestIntegrationPromptThroughPTY(t *testing.T) {
	nstest.RequireRoot(t)
	for _, tool := range []string{"dbus-daemon", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed (make deps): %v", tool, err)
		}
	}
	bin := buildAll(t)
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	pair := nstest.NewPair(t)
	addr := systemBus(t, dir)

	server := startBackground(t, "ip", "netns", "exec", pair.Server, filepath.Join(bin, "tgprobe"), "serve", "-tcp", ":7000")
	waitFor(t, "echo server", func() bool { return strings.Contains(server.out.String(), "ready") })

	os.MkdirAll(filepath.Join(dir, "rules.d"), 0o755)
	cfg := filepath.Join(dir, "config.toml")
	err := os.WriteFile(cfg, []byte(fmt.Sprintf(`database = %q
rules_dir = %q
prompt_timeout = "60s"
database_lock_timeout = "2s"
default_action = "deny"
bus_address = %q
polkit = false
log_level = "debug"
`, filepath.Join(dir, "tollgate.db"), filepath.Join(dir, "rules.d"), addr)), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	daemon := startBackground(t, "ip", "netns", "exec", pair.Client, filepath.Join(bin, "tollgated"), "-config", cfg)

	tollgate := filepath.Join(bin, "tollgate")
	env := []string{BusEnv + "=" + addr}
	cli := func(args ...string) (int, string) {
		cmd := exec.Command(tollgate, args...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(out)
		}
		if err != nil {
			t.Fatalf("run tollgate: %v", err)
		}
		return 0, string(out)
	}
	waitFor(t, "tollgated on the bus\n"+daemon.out.String(), func() bool { code, _ := cli("status"); return code == ExitOK })

	p := startOnTTY(t, env, tollgate, "prompt")
	p.waitOut("waiting for connections")

	target := fmt.Sprintf("%s:7000", pair.ServerIP4)
	probe := filepath.Join(dir, "probe")
	data, err := os.ReadFile(filepath.Join(bin, "tgprobe"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(probe, data, 0o755); err != nil {
		t.Fatal(err)
	}
	held := startBackground(t, "ip", "netns", "exec", pair.Client, probe, "connect", "-timeout", "50s", "tcp", target)
	p.waitOut("--- connection #")
	p.waitOut(probe)
	select {
	case <-held.done:
		t.Fatalf("the connection was not held for the prompt: %s", held.out.String())
	default:
	}
	p.typeKeys("A") // allow forever, no Enter
	if code := held.exitCode(t, 30*time.Second); code != 0 {
		t.Fatalf("held connection after allow: exit %d: %s\n--- terminal ---\n%s", code, held.out.String(), p.out.String())
	}
	p.waitOut("allow forever")

	// The forever rule lets later connections through without asking.
	code, out := cli("rules", "list", "--json")
	if code != ExitOK || !strings.Contains(out, probe) {
		t.Fatalf("rules list after allow forever: exit %d\n%s", code, out)
	}
	again := startBackground(t, "ip", "netns", "exec", pair.Client, probe, "connect", "-timeout", "10s", "tcp", target)
	if code := again.exitCode(t, 20*time.Second); code != 0 {
		t.Fatalf("second connection: exit %d: %s", code, again.out.String())
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
