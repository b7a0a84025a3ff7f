package e2e

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tollgate-fw/tollgate/daemon/store"
	"github.com/tollgate-fw/tollgate/internal/proctest"
	"github.com/tollgate-fw/tollgate/shared"
)

func (e *env) srv4(port int) string {
	return net.JoinHostPort(e.pair.ServerIP4.String(), fmt.Sprint(port))
}
func (e *env) srv6(port int) string {
	return net.JoinHostPort(e.pair.ServerIP6.String(), fmt.Sprint(port))
}

// logEntries stops nothing: it reads the connection log of a stopped daemon.
func (e *env) logEntries() []shared.LogEntry {
	e.t.Helper()
	st, err := store.Open(store.Options{Path: filepath.Join(e.dir, "tollgate.db"), LockTimeout: 2 * time.Second, MaxLogEntries: 1000}, nil)
	if err != nil {
		e.t.Fatalf("open database after the daemon stopped: %v", err)
	}
	defer st.Close()
	entries, err := st.Log(store.LogFilter{Limit: 1000})
	if err != nil {
		e.t.Fatal(err)
	}
	return entries
}

func TestIntegrationDefaultDenyWithNoRules(t *testing.T) {
	e := newEnv(t)
	probe := e.probe("client")
	// Before the daemon runs, everything gets through: the pair works.
	e.wantCode(e.connect(e.pair.Client, -1, probe, "tcp", e.srv4(portA)), codeOK, "tcp before daemon")

	e.start("")
	e.wantCode(e.connect(e.pair.Client, -1, probe, "tcp", e.srv4(portA)), codeTimeout, "tcp4, no rules")
	e.wantCode(e.connect(e.pair.Client, -1, probe, "udp", e.srv4(portA)), codeTimeout, "udp4, no rules")
	e.wantCode(e.connect(e.pair.Client, -1, probe, "tcp", e.srv6(portA)), codeTimeout, "tcp6, no rules")
	e.wantCode(e.connect(e.pair.Client, -1, probe, "udp", e.srv6(portA)), codeTimeout, "udp6, no rules")

	if err := e.stop(e.d, syscall.SIGTERM); err != nil {
		t.Errorf("daemon exit: %v\n%s", err, e.daemonLog())
	}
	if c := e.chains(); strings.Contains(c, "TOLLGATE") {
		t.Errorf("chains left after SIGTERM:\n%s", c)
	}
	// Every attempt is in the connection log as denied by the default.
	denied := 0
	for _, le := range e.logEntries() {
		if le.Verdict.Action == shared.ActionDeny && le.Verdict.RuleID == "" && le.Connection.Exe == probe {
			denied++
		}
	}
	if denied < 4 {
		t.Errorf("connection log has %d default denials of %s, want at least 4", denied, probe)
	}
	e.wantCode(e.connect(e.pair.Client, -1, probe, "tcp", e.srv4(portA)), codeOK, "tcp after daemon stopped")
}

func TestIntegrationRejectFailsFast(t *testing.T) {
	e := newEnv(t)
	probe := e.probe("client")
	e.start(`default_action = "reject"`)
	for _, addr := range []string{e.srv4(portA), e.srv6(portA)} {
		r := e.connect(e.pair.Client, -1, probe, "tcp", addr)
		e.wantCode(r, codeRefused, "tcp reject "+addr)
	}
	// UDP: the ICMP port unreachable makes the next read fail with refused.
	r := e.connect(e.pair.Client, -1, probe, "udp", e.srv4(portA))
	e.wantCode(r, codeRefused, "udp4 reject")
}

func TestIntegrationRuleAllowsExactlyOneExecutablePortAndUser(t *testing.T) {
	e := newEnv(t)
	allowed := e.probe("allowed-client")
	other := e.probe("other-client")
	e.writeRules("10-test.toml", fmt.Sprintf(`
[[rule]]
name = "allowed client to port A"
action = "allow"
exe = %q
uid = 0
proto = "tcp"
port = %d
`, allowed, portA))
	e.start("")
	e.wantCode(e.connect(e.pair.Client, -1, allowed, "tcp", e.srv4(portA)), codeOK, "allowed exe, port A, root")
	e.wantCode(e.connect(e.pair.Client, -1, allowed, "tcp", e.srv6(portA)), codeOK, "allowed exe, port A, root, IPv6")
	e.wantCode(e.connect(e.pair.Client, -1, other, "tcp", e.srv4(portA)), codeTimeout, "same binary at another path")
	e.wantCode(e.connect(e.pair.Client, -1, allowed, "tcp", e.srv4(portB)), codeTimeout, "allowed exe, other port")
	e.wantCode(e.connect(e.pair.Client, -1, allowed, "udp", e.srv4(portA)), codeTimeout, "allowed exe, other protocol")
	e.wantCode(e.connect(e.pair.Client, 65534, allowed, "tcp", e.srv4(portA)), codeTimeout, "allowed exe as nobody")

	if err := e.stop(e.d, syscall.SIGTERM); err != nil {
		t.Errorf("daemon exit: %v", err)
	}
	var sawAllow, sawNobody bool
	for _, le := range e.logEntries() {
		c := le.Connection
		if c.Exe == allowed && le.Verdict.Action == shared.ActionAllow {
			sawAllow = true
			if le.Verdict.RuleID == "" || c.PID == 0 || c.Attribution != shared.AttributedProcess {
				t.Errorf("allowed connection not attributed to its rule and process: %+v", le)
			}
		}
		if c.UID == 65534 {
			sawNobody = true
			if le.Verdict.Action != shared.ActionDeny || c.Exe != allowed || c.User != "nobody" {
				t.Errorf("nobody's connection: %+v", le)
			}
		}
	}
	if !sawAllow || !sawNobody {
		t.Errorf("log lacks the allowed (%v) or nobody's (%v) connection", sawAllow, sawNobody)
	}
}

func TestIntegrationInboundNeedsARule(t *testing.T) {
	e := newEnv(t)
	listener := e.probe("listener")
	dialer := filepath.Join(e.bin, "tgprobe")
	const inPort, inPortAllowed = 8000, 8001
	e.writeRules("20-in.toml", fmt.Sprintf(`
[[rule]]
name = "listener may accept"
action = "allow"
direction = "in"
exe = %q
local_port = %d
`, listener, inPortAllowed))
	// The listener runs in the guarded (client) namespace; the server
	// namespace dials in.
	for _, port := range []int{inPort, inPortAllowed} {
		p := startProc(t, "ip", "netns", "exec", e.pair.Client, listener, "serve",
			"-tcp", fmt.Sprintf(":%d", port), "-udp", fmt.Sprintf(":%d", port))
		proctest.WaitFor(t, 5*time.Second, "listener ready", func() bool { return strings.Contains(p.Output(), "ready") })
	}
	e.start("")
	client := func(port int) string { return net.JoinHostPort(e.pair.ClientIP4.String(), fmt.Sprint(port)) }
	e.wantCode(e.connect(e.pair.Server, -1, dialer, "tcp", client(inPort)), codeTimeout, "inbound without rule")
	e.wantCode(e.connect(e.pair.Server, -1, dialer, "tcp", client(inPortAllowed)), codeOK, "inbound with rule")
	e.wantCode(e.connect(e.pair.Server, -1, dialer, "udp", client(inPortAllowed)), codeOK, "inbound udp with rule")
}

// Short-lived clients: a UDP sender that exits right after its datagram and
// a TCP client that exits right after its first write. TCP is held in
// connect() until the verdict, so it must always be named; a UDP sender may
// be gone before its socket is traced to it, and is then attributed to its
// uid alone. Nothing is ever attributed to the wrong executable.
func TestIntegrationShortLivedProcessIsAttributed(t *testing.T) {
	for _, tc := range []struct{ name, config, logSays string }{
		// In a test namespace the kernel refuses process events: the
		// daemon attributes by sock_diag and /proc alone.
		{"without-proc-events", "", "proc connector unavailable"},
		// Process events opened in the namespace this test runs in (the
		// machine's own), as a daemon running there has them.
		{"with-proc-events", fmt.Sprintf("proc_events_netns = \"/proc/%d/ns/net\"", os.Getpid()), "proc connector in use"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			quick := e.probe("quick-client")
			e.writeRules("30-quick.toml", fmt.Sprintf(`
[[rule]]
name = "quick client"
action = "allow"
exe = %q
port = %d
`, quick, portA))
			e.start(tc.config)
			if !strings.Contains(e.daemonLog(), tc.logSays) {
				t.Fatalf("daemon log does not say %q:\n%s", tc.logSays, e.daemonLog())
			}
			const runs = 20
			for i := 0; i < runs; i++ {
				e.wantCode(e.connect(e.pair.Client, -1, quick, "udp", e.srv4(portA), "-send-only"), codeOK, "udp send-only")
				e.wantCode(e.connect(e.pair.Client, -1, quick, "tcp", e.srv4(portA), "-send-only"), codeOK, "tcp send-only")
			}
			if err := e.stop(e.d, syscall.SIGTERM); err != nil {
				t.Errorf("daemon exit: %v", err)
			}
			count := map[shared.Proto]*[3]int{shared.ProtoTCP: {}, shared.ProtoUDP: {}} // right, unknown, wrong
			for _, le := range e.logEntries() {
				c := le.Connection
				n, ok := count[c.Proto]
				if !ok || c.RemotePort != portA {
					continue
				}
				switch {
				case c.PID == 0:
					n[1]++
				case c.Exe == quick:
					n[0]++
				default:
					n[2]++
					t.Errorf("short-lived process attributed to the wrong executable: %+v", c)
				}
			}
			tcp, udp := count[shared.ProtoTCP], count[shared.ProtoUDP]
			t.Logf("short-lived: tcp %d right, %d unknown, %d wrong; udp %d right, %d unknown, %d wrong",
				tcp[0], tcp[1], tcp[2], udp[0], udp[1], udp[2])
			if tcp[0] != runs {
				t.Errorf("tcp: %d of %d short-lived clients named, want all", tcp[0], runs)
			}
			if udp[0]+udp[1]+udp[2] < runs {
				t.Errorf("udp: only %d of %d datagrams logged", udp[0]+udp[1]+udp[2], runs)
			}
		})
	}
}

func TestIntegrationForeverRulesSurviveRestartAndCrashFailsClosed(t *testing.T) {
	e := newEnv(t)
	probe := e.probe("client")
	rulesFile := filepath.Join(e.dir, "import.toml")
	if err := os.WriteFile(rulesFile, []byte(fmt.Sprintf(`
[[rule]]
name = "stored allow"
action = "allow"
exe = %q
port = %d
`, probe, portA)), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := e.writeConfig("")
	if out, err := runCmd(filepath.Join(e.bin, "tollgated"), "-config", cfg, "-import-rules", rulesFile); err != nil {
		t.Fatalf("import rules: %v\n%s", err, out)
	}

	d := e.start("")
	e.wantCode(e.connect(e.pair.Client, -1, probe, "tcp", e.srv4(portA)), codeOK, "stored rule, first run")
	if err := e.stop(d, syscall.SIGTERM); err != nil {
		t.Fatalf("daemon exit: %v", err)
	}

	d = e.start("")
	e.wantCode(e.connect(e.pair.Client, -1, probe, "tcp", e.srv4(portA)), codeOK, "stored rule after restart")

	// kill -9: the chains stay and nobody reads the queue: fail-closed.
	d.Stop(syscall.SIGKILL, 10*time.Second)
	if c := e.chains(); !strings.Contains(c, "NFQUEUE") {
		t.Fatalf("chains gone after kill -9 (expected them to stay, fail-closed):\n%s", c)
	}
	e.wantCode(e.connect(e.pair.Client, -1, probe, "tcp", e.srv4(portA)), codeTimeout, "while the daemon is dead")

	before := strings.Count(e.chains(), "-j NFQUEUE")
	e.start("")
	after := strings.Count(e.chains(), "-j NFQUEUE")
	if after != before {
		t.Errorf("restart after crash: %d NFQUEUE rules before, %d after (stale chains not replaced)", before, after)
	}
	e.wantCode(e.connect(e.pair.Client, -1, probe, "tcp", e.srv4(portA)), codeOK, "after restart from crash")
	e.wantCode(e.connect(e.pair.Client, -1, probe, "tcp", e.srv4(portB)), codeTimeout, "other port still denied")
}

func TestIntegrationFailOpenLetsTrafficThroughWhileDown(t *testing.T) {
	e := newEnv(t)
	probe := e.probe("client")
	d := e.start(`fail_open = true`)
	e.wantCode(e.connect(e.pair.Client, -1, probe, "tcp", e.srv4(portA)), codeTimeout, "fail_open, daemon up, no rule")
	d.Stop(syscall.SIGKILL, 10*time.Second)
	e.wantCode(e.connect(e.pair.Client, -1, probe, "tcp", e.srv4(portA)), codeOK, "fail_open, daemon dead")
	e.start(`fail_open = true`) // replaces the stale chains
}

func TestIntegrationCorruptDatabaseStopsWithClearError(t *testing.T) {
	e := newEnv(t)
	db := filepath.Join(e.dir, "tollgate.db")
	garbage := []byte(strings.Repeat("not a database ", 1000))
	if err := os.WriteFile(db, garbage, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := e.writeConfig("")
	out, err := runCmd("ip", "netns", "exec", e.pair.Client, filepath.Join(e.bin, "tollgated"), "-config", cfg)
	if err == nil {
		t.Fatalf("tollgated started on a corrupt database:\n%s", out)
	}
	if !strings.Contains(out, db) {
		t.Errorf("error does not name the file %s:\n%s", db, out)
	}
	after, _ := os.ReadFile(db)
	if string(after) != string(garbage) {
		t.Error("the corrupt database file was modified")
	}
	if c := e.chains(); strings.Contains(c, "TOLLGATE") {
		t.Errorf("chains installed although the daemon refused to start:\n%s", c)
	}
}

// An allow from tollgated lets the packet go on through the rest of the
// built-in chain: an administrator's own drop after Tollgate's jump still
// applies.
func TestIntegrationAllowDoesNotOverrideOtherRules(t *testing.T) {
	e := newEnv(t)
	probe := e.probe("client")
	e.writeRules("40-all.toml", fmt.Sprintf(`
[[rule]]
name = "client anywhere"
action = "allow"
exe = %q
`, probe))
	e.start("")
	if out, err := runCmd("ip", "netns", "exec", e.pair.Client, "iptables", "-w", "-A", "OUTPUT",
		"-p", "tcp", "--dport", fmt.Sprint(portB), "-j", "DROP"); err != nil {
		t.Fatalf("add the admin's rule: %v\n%s", err, out)
	}
	e.wantCode(e.connect(e.pair.Client, -1, probe, "tcp", e.srv4(portA)), codeOK, "allowed, no other rule")
	e.wantCode(e.connect(e.pair.Client, -1, probe, "tcp", e.srv4(portB)), codeTimeout, "allowed by tollgate, dropped by the admin's rule")
	e.wantCode(e.connect(e.pair.Client, -1, probe, "tcp", e.srv6(portB)), codeOK, "IPv6 has no admin rule")
}

func TestIntegrationMonitorModeAllowsAndLogsWouldBeDenials(t *testing.T) {
	e := newEnv(t)
	probe := e.probe("client")
	e.start(`mode = "monitor"`)
	e.wantCode(e.connect(e.pair.Client, -1, probe, "tcp", e.srv4(portA)), codeOK, "monitor mode, no rule")
	if err := e.stop(e.d, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var seen bool
	for _, le := range e.logEntries() {
		if le.Connection.Exe == probe {
			seen = true
			if le.Verdict.Action != shared.ActionDeny || !le.Verdict.Monitor {
				t.Errorf("monitor log entry %+v, want a would-be deny", le.Verdict)
			}
		}
	}
	if !seen {
		t.Error("monitor mode logged nothing")
	}
}

func TestIntegrationSIGHUPReloadsRulesDir(t *testing.T) {
	e := newEnv(t)
	probe := e.probe("client")
	e.writeRules("50-broken.toml", "[[rule]]\naction = \"allow\"\nport = \"not a port\"\n")
	d := e.start("")
	if !strings.Contains(e.daemonLog(), "50-broken.toml") {
		t.Errorf("a bad rules file is not reported by name:\n%s", e.daemonLog())
	}
	e.wantCode(e.connect(e.pair.Client, -1, probe, "tcp", e.srv4(portA)), codeTimeout, "before the rule exists")
	e.writeRules("51-reload.toml", fmt.Sprintf("[[rule]]\naction = \"allow\"\nexe = %q\n", probe))
	d.Signal(syscall.SIGHUP)
	proctest.WaitFor(t, 5*time.Second, "rules reloaded", func() bool {
		return strings.Count(d.Output(), "read rules directory") >= 2
	})
	e.wantCode(e.connect(e.pair.Client, -1, probe, "tcp", e.srv4(portA)), codeOK, "after SIGHUP")
}

func TestCheckConfigReportsBadRulesAndKeys(t *testing.T) {
	e := &env{t: t, bin: binaries(t), dir: t.TempDir()}
	if err := os.MkdirAll(filepath.Join(e.dir, "rules.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := e.writeConfig("")
	tollgated := filepath.Join(e.bin, "tollgated")
	if out, err := runCmd(tollgated, "-config", cfg, "-check-config"); err != nil {
		t.Errorf("good config: %v\n%s", err, out)
	}
	e.writeRules("60-bad.toml", "[[rule]]\nname = \"typo\"\naction = \"alow\"\n")
	out, err := runCmd(tollgated, "-config", cfg, "-check-config")
	if err == nil || !strings.Contains(out, "60-bad.toml") || !strings.Contains(out, "action") || !strings.Contains(out, "typo") {
		t.Errorf("bad rule: err %v, output does not name file, rule and field:\n%s", err, out)
	}
	bad := filepath.Join(e.dir, "bad.toml")
	os.WriteFile(bad, []byte("default_action = \"maybe\"\n"), 0o644)
	if out, err := runCmd(tollgated, "-config", bad, "-check-config"); err == nil || !strings.Contains(out, "default_action") {
		t.Errorf("bad key: err %v\n%s", err, out)
	}
}
