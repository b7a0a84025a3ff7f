// Package bustest starts a private, system-bus-like dbus-daemon for tests:
// the system bus's default policy with Tollgate's packaged policy file
// included as it is shipped, on a socket in a directory every user can
// reach. Tests never rely on a host bus.
package bustest

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
)

// Bus is a running private bus.
type Bus struct {
	Addr string // D-Bus address: unix:path=...
	Dir  string // directory holding the socket and the configuration
	cmd  *exec.Cmd
	done chan struct{}
}

// PolicyFile returns the path of the packaged D-Bus policy in this checkout.
func PolicyFile(t testing.TB) string {
	t.Helper()
	_, here, _, _ := runtime.Caller(0)
	p := filepath.Join(filepath.Dir(here), "..", "..", "packaging", "dbus", "org.tollgate.Firewall1.conf")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("packaged D-Bus policy: %v", err)
	}
	return p
}

// Config returns a system-bus-like configuration listening on sock, with
// the packaged policy included and (when withPolkit) a policy letting root
// own org.freedesktop.PolicyKit1, for a test's stand-in polkit.
func Config(t testing.TB, sock string, withPolkit bool) string {
	return ConfigWithPolicy(sock, PolicyFile(t), withPolkit)
}

// ConfigWithPolicy is Config including the policy file at policy instead of
// the checkout's (e.g. the one a package installed).
func ConfigWithPolicy(sock, policy string, withPolkit bool) string {
	polkit := ""
	if withPolkit {
		polkit = `
  <policy user="root"><allow own="org.freedesktop.PolicyKit1"/></policy>
  <policy context="default"><allow send_destination="org.freedesktop.PolicyKit1"/></policy>`
	}
	return `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=` + sock + `</listen>
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
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus" send_member="UpdateActivationEnvironment"/>
  </policy>` + polkit + `
  <include>` + policy + `</include>
</busconfig>
`
}

// Start starts a private bus in a directory of its own (stopped at
// cleanup). It needs the dbus-daemon binary (make deps installs it).
func Start(t testing.TB, withPolkit bool) *Bus {
	t.Helper()
	return StartIn(t, Dir(t), withPolkit)
}

// Dir makes a directory every user can reach (for the bus socket and for
// programs that run as other users), removed at cleanup.
func Dir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "tollgate-bus-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// StartWithPolicy is Start with the D-Bus policy file at policy included
// instead of the checkout's: a package test starts the bus with the policy
// its package installed.
func StartWithPolicy(t testing.TB, policy string, withPolkit bool) *Bus {
	t.Helper()
	if _, err := os.Stat(policy); err != nil {
		t.Fatalf("D-Bus policy: %v", err)
	}
	dir := Dir(t)
	return startIn(t, dir, ConfigWithPolicy(filepath.Join(dir, "bus.sock"), policy, withPolkit))
}

// StartIn starts a private bus on dir/bus.sock (stopped at cleanup): a
// test that stops a bus can start another at the same address.
func StartIn(t testing.TB, dir string, withPolkit bool) *Bus {
	t.Helper()
	return startIn(t, dir, Config(t, filepath.Join(dir, "bus.sock"), withPolkit))
}

// startIn runs dbus-daemon on dir/bus.sock with the configuration conf.
func startIn(t testing.TB, dir, config string) *Bus {
	t.Helper()
	if _, err := exec.LookPath("dbus-daemon"); err != nil {
		t.Fatalf("dbus-daemon is needed (make deps): %v", err)
	}
	sock := filepath.Join(dir, "bus.sock")
	conf := filepath.Join(dir, "bus.conf")
	if err := os.WriteFile(conf, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	b := &Bus{Addr: "unix:path=" + sock, Dir: dir, done: make(chan struct{})}
	b.cmd = exec.Command("dbus-daemon", "--config-file="+conf, "--nofork", "--print-address")
	out, err := b.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	b.cmd.Stderr = &stderr
	if err := b.cmd.Start(); err != nil {
		t.Fatalf("start dbus-daemon: %v", err)
	}
	if _, err := bufio.NewReader(out).ReadString('\n'); err != nil {
		b.cmd.Process.Kill()
		b.cmd.Wait()
		t.Fatalf("dbus-daemon printed no address: %v\n%s", err, stderr.String())
	}
	go func() {
		io.Copy(io.Discard, out)
		b.cmd.Wait()
		close(b.done)
	}()
	t.Cleanup(b.Stop)
	return b
}

// Stop stops the bus (by its pid) and waits for it to exit.
func (b *Bus) Stop() {
	select {
	case <-b.done:
		return
	default:
	}
	b.cmd.Process.Signal(syscall.SIGTERM)
	<-b.done
}
