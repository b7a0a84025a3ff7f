package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"
	"github.com/tollgate-fw/tollgate/dbus"
	"github.com/tollgate-fw/tollgate/internal/syncbuf"
	"github.com/tollgate-fw/tollgate/shared"
)

var testNow = time.Date(2026, 11, 21, 6, 0, 0, 0, time.UTC)

type result struct {
	code           int
	stdout, stderr string
	dials          []string // bus addresses dialed
}

type harness struct {
	fake  *fakeDaemon
	env   map[string]string
	stdin io.Reader
}

func newHarness() *harness { return &harness{fake: newFake(), env: map[string]string{}} }

func (h *harness) app(stdout, stderr io.Writer, dials *[]string) *App {
	stdin := h.stdin
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	return &App{
		Stdin:  stdin,
		Stdout: stdout,
		Stderr: stderr,
		Dial: func(ctx context.Context, address string) (Client, error) {
			*dials = append(*dials, address)
			return h.fake, nil
		},
		Getenv:       func(k string) string { return h.env[k] },
		Now:          func() time.Time { return testNow },
		Location:     time.UTC,
		PollInterval: time.Millisecond,
	}
}

func (h *harness) run(t *testing.T, args ...string) result {
	t.Helper()
	var out, errb syncbuf.Buffer
	var r result
	r.code = h.app(&out, &errb, &r.dials).Run(context.Background(), args)
	r.stdout, r.stderr = out.String(), errb.String()
	return r
}

func (r result) want(t *testing.T, code int) result {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
	return r
}

func decodeJSON[T any](t *testing.T, s string) T {
	t.Helper()
	var v T
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decode JSON %q: %v", s, err)
	}
	return v
}

func u32(n uint32) *uint32 { return &n }

func TestStatus(t *testing.T) {
	h := newHarness()
	h.fake.status.Agents = 1
	r := h.run(t, "status").want(t, ExitOK)
	want := `mode:            enforcing
version:         0.1.0
default action:  deny
rules:           0
pending:         0
agents:          1
decided:         10 (allowed 7, denied 3)
kernel queue:    waiting 0, dropped 2 (queue full), dropped 0 (socket buffer full)
`
	if r.stdout != want {
		t.Errorf("status:\n%s\nwant:\n%s", r.stdout, want)
	}
	j := decodeJSON[map[string]any](t, h.run(t, "status", "--json").want(t, ExitOK).stdout)
	if j["mode"] != "enforcing" || j["queue_dropped"] != json.Number("2") || j["default_action"] != "deny" {
		t.Errorf("status --json = %v", j)
	}
	// --json before the command works too.
	h.run(t, "--json", "status").want(t, ExitOK)
}

func TestMode(t *testing.T) {
	h := newHarness()
	if r := h.run(t, "mode").want(t, ExitOK); r.stdout != "enforcing\n" {
		t.Errorf("mode = %q", r.stdout)
	}
	h.run(t, "mode", "monitor").want(t, ExitOK)
	if h.fake.status.Mode != "monitor" {
		t.Errorf("mode after set = %q", h.fake.status.Mode)
	}
	r := h.run(t, "mode", "off").want(t, ExitUsage)
	if len(r.dials) != 0 || !strings.Contains(r.stderr, "enforcing, monitor or disabled") {
		t.Errorf("bad mode: dials %v, stderr %q", r.dials, r.stderr)
	}
	h.fake.deny = dbusErr(dbus.ErrorNotAuthorized, "SetMode needs org.tollgate.manage")
	r = h.run(t, "mode", "disabled").want(t, ExitNotAuthorized)
	if !strings.Contains(r.stderr, "sudo") || !strings.Contains(r.stderr, "SetMode needs org.tollgate.manage") {
		t.Errorf("not authorized message: %q", r.stderr)
	}
}

// dbusErr makes an error as *dbus.Client returns it for a D-Bus error reply.
func dbusErr(name, msg string) error {
	return fmt.Errorf("Call: %w", dbus.FromDBusError(godbus.NewError(name, []any{msg})))
}

func TestRulesAddExample(t *testing.T) {
	h := newHarness()
	r := h.run(t, "rules", "add", "--action", "allow", "--exe", "/usr/bin/curl", "--host", "example.org",
		"--port", "443", "--proto", "tcp", "--lifetime", "forever").want(t, ExitOK)
	if r.stdout != "added rule r1\n" {
		t.Errorf("stdout %q", r.stdout)
	}
	if len(h.fake.rules) != 1 {
		t.Fatalf("rules: %v", h.fake.rules)
	}
	got := h.fake.rules[0]
	if got.Action != shared.ActionAllow || got.Match.Exe != "/usr/bin/curl" || got.Match.Host != "example.org" ||
		got.Match.Port != (shared.PortRange{Lo: 443, Hi: 443}) || got.Match.Proto != shared.ProtoTCP ||
		got.Lifetime != shared.LifetimeForever || !got.Enabled {
		t.Errorf("rule stored: %+v", got)
	}
	// Every flag with its shared name, and --json.
	r = h.run(t, "rules", "add", "--json", "--action=deny", "--exe-sha256", strings.Repeat("AB", 32),
		"--cmdline", "curl *", "--unit", "foo.service", "--uid", "1000", "--gid", "100", "--direction", "out",
		"--ip", "10.0.0.0/8", "--local_port", "8000-8100", "--iface", "eth0", "--name", "n", "--note", "a note",
		"--priority", "-5", "--until", "2h", "--owner", "1000").want(t, ExitOK)
	if j := decodeJSON[map[string]any](t, r.stdout); j["id"] != "r2" {
		t.Errorf("add --json = %v", j)
	}
	got = h.fake.rules[1]
	m := got.Match
	if m.ExeSHA256 != strings.Repeat("ab", 32) || m.Cmdline != "curl *" || m.Unit != "foo.service" ||
		*m.UID != 1000 || *m.GID != 100 || m.Direction != shared.DirectionOut ||
		m.IP != netip.MustParsePrefix("10.0.0.0/8") || m.LocalPort != (shared.PortRange{Lo: 8000, Hi: 8100}) ||
		m.Iface != "eth0" || got.Name != "n" || got.Note != "a note" || got.Priority != -5 ||
		got.Lifetime != shared.LifetimeUntil || !got.Until.Equal(testNow.Add(2*time.Hour)) || got.Owner != 1000 {
		t.Errorf("rule stored: %+v match %+v", got, m)
	}
}

func TestRulesAddInvalidIsLocal(t *testing.T) {
	for _, tc := range []struct {
		args  []string
		field string
	}{
		{[]string{"--action", "allow", "--port", "70000"}, `"port"`},
		{[]string{"--action", "maybe"}, `"action"`},
		{[]string{"--exe", "/bin/x"}, `"action"`},
		{[]string{"--action", "allow", "--proto", "sctp6"}, `"proto"`},
		{[]string{"--action", "allow", "--host", "bad host"}, `"host"`},
		{[]string{"--action", "allow", "--ip", "10.0.0.300"}, `"ip"`},
		{[]string{"--action", "allow", "--uid", "no-such-user-here"}, `"uid"`},
		{[]string{"--action", "allow", "--priority", "1e9x"}, `"priority"`},
		{[]string{"--action", "allow", "--until", "tomorrowish"}, `"until"`},
		{[]string{"--action", "allow", "--lifetime", "until"}, `"until"`},
		{[]string{"--action", "allow", "--direction", "sideways"}, `"direction"`},
	} {
		h := newHarness()
		r := h.run(t, append([]string{"rules", "add"}, tc.args...)...).want(t, ExitUsage)
		if !strings.Contains(r.stderr, "field "+tc.field) {
			t.Errorf("%v: stderr %q does not name field %s", tc.args, r.stderr, tc.field)
		}
		if len(r.dials) != 0 || len(h.fake.rules) != 0 {
			t.Errorf("%v: sent to the daemon (dials %v)", tc.args, r.dials)
		}
	}
	h := newHarness()
	h.run(t, "rules", "add").want(t, ExitUsage)
	h.run(t, "rules", "add", "--action", "allow", "stray").want(t, ExitUsage)
	h.run(t, "rules", "add", "--bogus", "x").want(t, ExitUsage)
}

func seedRules(h *harness) {
	h.fake.rules = []shared.Rule{
		{ID: "r1", Action: shared.ActionAllow, Lifetime: shared.LifetimeForever, Enabled: true, Hits: 4, Name: "curl",
			Match: shared.Match{Exe: "/usr/bin/curl", Host: "example.org", Port: shared.PortRange{Lo: 443, Hi: 443}, Proto: shared.ProtoTCP}},
		{ID: "r2", Action: shared.ActionDeny, Lifetime: shared.LifetimeUntil, Until: testNow.Add(time.Hour), Owner: 1000,
			Match: shared.Match{UID: u32(1000), Host: "*.ads.example"}},
		{ID: "r3", Action: shared.ActionReject, Lifetime: shared.LifetimeForever, Enabled: true},
	}
	h.fake.nextID = 3
}

func TestRulesList(t *testing.T) {
	h := newHarness()
	if r := h.run(t, "rules", "list").want(t, ExitOK); !strings.HasPrefix(r.stdout, "no rules") {
		t.Errorf("empty list: %q", r.stdout)
	}
	seedRules(h)
	r := h.run(t, "rules", "list").want(t, ExitOK)
	want := `ID  ACTION  LIFETIME                   OWNER   ENABLED  HITS  MATCH                                                  NAME
r1  allow   forever                    system  yes      4     exe=/usr/bin/curl proto=tcp host=example.org port=443  curl
r2  deny    until 2026-11-21 07:00:00  1000    no       0     uid=1000 host=*.ads.example
r3  reject  forever                    system  yes      0     (anything)
`
	if r.stdout != want {
		t.Errorf("rules list:\n%s\nwant:\n%s", r.stdout, want)
	}
	if r := h.run(t, "rules", "list", "-q").want(t, ExitOK); r.stdout != "r1\nr2\nr3\n" {
		t.Errorf("rules list -q: %q", r.stdout)
	}
	// JSON: the shared field names, readable back as rules.
	r = h.run(t, "rules", "list", "--json").want(t, ExitOK)
	var back []shared.Rule
	if err := json.Unmarshal([]byte(r.stdout), &back); err != nil {
		t.Fatalf("rules list --json: %v\n%s", err, r.stdout)
	}
	if len(back) != 3 || back[1].Match.Host != "*.ads.example" || *back[1].Match.UID != 1000 || back[1].Enabled {
		t.Errorf("round trip: %+v", back)
	}
	raw := decodeJSON[[]map[string]any](t, r.stdout)
	if raw[0]["port"] != "443" || raw[0]["exe"] != "/usr/bin/curl" || raw[2]["enabled"] != true {
		t.Errorf("JSON fields: %v", raw)
	}
}

func TestRulesShow(t *testing.T) {
	h := newHarness()
	seedRules(h)
	r := h.run(t, "rules", "show", "r2").want(t, ExitOK)
	want := `id:        r2
action:    deny
lifetime:  until
until:     2026-11-21T07:00:00Z
owner:     1000
enabled:   false
uid:       1000
host:      *.ads.example
`
	if r.stdout != want {
		t.Errorf("rules show:\n%s\nwant:\n%s", r.stdout, want)
	}
	j := decodeJSON[map[string]any](t, h.run(t, "rules", "show", "r1", "--json").want(t, ExitOK).stdout)
	if j["id"] != "r1" || j["proto"] != "tcp" {
		t.Errorf("show --json: %v", j)
	}
	r = h.run(t, "rules", "show", "nope").want(t, ExitNotFound)
	if !strings.Contains(r.stderr, "rules list") {
		t.Errorf("not found says what to do: %q", r.stderr)
	}
	h.run(t, "rules", "show").want(t, ExitUsage)
}

func TestRulesEditEnableRm(t *testing.T) {
	h := newHarness()
	seedRules(h)
	h.run(t, "rules", "edit", "r1", "--port", "8443", "--host", "", "--note", "moved").want(t, ExitOK)
	got := h.fake.rules[0]
	if got.Match.Port != (shared.PortRange{Lo: 8443, Hi: 8443}) || got.Match.Host != "" || got.Note != "moved" ||
		got.Match.Exe != "/usr/bin/curl" || got.Name != "curl" || !got.Enabled || got.Hits != 4 {
		t.Errorf("after edit: %+v", got)
	}
	// Changing an until rule to forever drops its end.
	h.run(t, "rules", "edit", "r2", "--lifetime", "forever").want(t, ExitOK)
	if r := h.fake.rules[1]; r.Lifetime != shared.LifetimeForever || !r.Until.IsZero() {
		t.Errorf("until -> forever: %+v", r)
	}
	r := h.run(t, "rules", "edit", "r1", "--port", "0-").want(t, ExitUsage)
	if !strings.Contains(r.stderr, `field "port"`) {
		t.Errorf("edit bad port: %q", r.stderr)
	}
	h.run(t, "rules", "edit", "r1").want(t, ExitUsage)
	h.run(t, "rules", "edit", "zz", "--port", "1").want(t, ExitNotFound)

	h.run(t, "rules", "disable", "r1").want(t, ExitOK)
	if h.fake.rules[0].Enabled {
		t.Error("disable left the rule enabled")
	}
	r = h.run(t, "rules", "enable", "r1", "--json").want(t, ExitOK)
	if !h.fake.rules[0].Enabled {
		t.Error("enable left the rule disabled")
	}
	if j := decodeJSON[map[string]any](t, r.stdout); j["id"] != "r1" || j["enabled"] != true {
		t.Errorf("enable --json: %v", j)
	}

	h.run(t, "rules", "rm", "r3").want(t, ExitOK)
	if len(h.fake.rules) != 2 {
		t.Errorf("rm: %d rules left", len(h.fake.rules))
	}
	h.run(t, "rules", "rm", "r3").want(t, ExitNotFound)
}

func TestRulesExportImport(t *testing.T) {
	h := newHarness()
	h.fake.export = "[[rule]]\naction = \"allow\"\nexe = \"/usr/bin/curl\"\n"
	if r := h.run(t, "rules", "export").want(t, ExitOK); r.stdout != h.fake.export {
		t.Errorf("export to stdout: %q", r.stdout)
	}
	file := filepath.Join(t.TempDir(), "rules.toml")
	h.run(t, "rules", "export", file).want(t, ExitOK)
	data, err := os.ReadFile(file)
	if err != nil || string(data) != h.fake.export {
		t.Fatalf("exported file: %q, %v", data, err)
	}
	r := h.run(t, "rules", "import", file, "--json").want(t, ExitOK)
	if j := decodeJSON[map[string]any](t, r.stdout); j["added"] != json.Number("1") {
		t.Errorf("first import: %v", j)
	}
	r = h.run(t, "rules", "import", file).want(t, ExitOK)
	if !strings.HasPrefix(r.stdout, "added 0 rule(s)") {
		t.Errorf("second import: %q", r.stdout)
	}
	h.stdin = strings.NewReader("[[rule]]\n[[rule]]\n")
	if r := h.run(t, "rules", "import", "-").want(t, ExitOK); !strings.HasPrefix(r.stdout, "added 2 rule(s)") {
		t.Errorf("import from stdin: %q", r.stdout)
	}
	h.run(t, "rules", "import", filepath.Join(t.TempDir(), "missing.toml")).want(t, ExitError)
	h.fake.deny = dbusErr(dbus.ErrorNotAuthorized, "ImportRules needs org.tollgate.manage")
	h.run(t, "rules", "import", file).want(t, ExitNotAuthorized)
}

func seedPending(h *harness) {
	h.fake.pending = []shared.Pending{
		{ID: 7, Count: 3, Since: testNow.Add(-5 * time.Second), Deadline: testNow.Add(25 * time.Second),
			Connection: shared.Connection{Direction: shared.DirectionOut, Proto: shared.ProtoTCP, UID: 1000, User: "alice",
				PID: 4242, Exe: "/usr/bin/curl", RemoteIP: netip.MustParseAddr("93.184.216.34"), RemotePort: 443,
				Hosts: []string{"example.org"}}},
		{ID: 9, Count: 1, Deadline: testNow.Add(-time.Second),
			Connection: shared.Connection{Direction: shared.DirectionOut, Proto: shared.ProtoUDP, UID: 0, GID: 0,
				RemoteIP: netip.MustParseAddr("2001:db8::1"), RemotePort: 53, Attribution: shared.AttributedUIDOnly}},
	}
}

func TestPendingAndAnswer(t *testing.T) {
	h := newHarness()
	if r := h.run(t, "pending").want(t, ExitOK); r.stdout != "no pending connections\n" {
		t.Errorf("empty: %q", r.stdout)
	}
	seedPending(h)
	r := h.run(t, "pending").want(t, ExitOK)
	want := `ID  COUNT  USER          PROCESS                   DIR  PROTO  REMOTE                           EXPIRES IN
7   3      alice (1000)  /usr/bin/curl (pid 4242)  out  tcp    example.org:443 (93.184.216.34)  25s
9   1      0             (process unknown)         out  udp    [2001:db8::1]:53                 now
`
	if r.stdout != want {
		t.Errorf("pending:\n%s\nwant:\n%s", r.stdout, want)
	}
	j := decodeJSON[[]map[string]any](t, h.run(t, "pending", "--json").want(t, ExitOK).stdout)
	if len(j) != 2 || j[0]["id"] != json.Number("7") || j[0]["connection"].(map[string]any)["exe"] != "/usr/bin/curl" {
		t.Errorf("pending --json: %v", j)
	}
	if r := h.run(t, "pending", "-q").want(t, ExitOK); r.stdout != "7\n9\n" {
		t.Errorf("pending -q: %q", r.stdout)
	}

	h.run(t, "answer", "7", "allow", "--lifetime", "forever", "--scope", "exe-host").want(t, ExitOK)
	r = h.run(t, "answer", "9", "deny", "--until", "30m", "--json").want(t, ExitOK)
	ans := h.fake.answered()
	if len(ans) != 2 {
		t.Fatalf("answers: %+v", ans)
	}
	if a := ans[0]; a.PendingID != 7 || a.Action != shared.ActionAllow || a.Lifetime != shared.LifetimeForever || a.Scope != shared.ScopeExeHost {
		t.Errorf("answer 7: %+v", a)
	}
	if a := ans[1]; a.PendingID != 9 || a.Action != shared.ActionDeny || a.Lifetime != shared.LifetimeUntil ||
		!a.Until.Equal(testNow.Add(30*time.Minute)) || a.Scope != shared.ScopeExeHostPort {
		t.Errorf("answer 9: %+v", a)
	}
	if j := decodeJSON[map[string]any](t, r.stdout); j["lifetime"] != "until" || j["id"] != json.Number("9") {
		t.Errorf("answer --json: %v", j)
	}
	h.run(t, "answer", "7", "allow").want(t, ExitNotFound)
	for _, bad := range [][]string{
		{"answer", "x", "allow"},
		{"answer", "7", "maybe"},
		{"answer", "7", "allow", "--lifetime", "week"},
		{"answer", "7", "allow", "--scope", "everything"},
		{"answer", "7", "allow", "--lifetime", "until"},
		{"answer", "7"},
	} {
		if r := h.run(t, bad...).want(t, ExitUsage); len(r.dials) != 0 {
			t.Errorf("%v dialed the daemon", bad)
		}
	}
}

func logEntry(id uint64, at time.Time, exe string, a shared.Action, rule string) shared.LogEntry {
	return shared.LogEntry{
		Connection: shared.Connection{ID: id, Time: at, Direction: shared.DirectionOut, Proto: shared.ProtoTCP,
			UID: 1000, PID: 10, Exe: exe, RemoteIP: netip.MustParseAddr("192.0.2.1"), RemotePort: 443},
		Verdict: shared.Verdict{Action: a, RuleID: rule},
	}
}

func TestLog(t *testing.T) {
	h := newHarness()
	if r := h.run(t, "log").want(t, ExitOK); r.stdout != "no connections logged\n" {
		t.Errorf("empty log: %q", r.stdout)
	}
	h.fake.addLog(logEntry(1, testNow.Add(-2*time.Minute), "/usr/bin/curl", shared.ActionAllow, "r1"))
	h.fake.addLog(logEntry(2, testNow.Add(-time.Minute), "/usr/bin/wget", shared.ActionDeny, ""))
	r := h.run(t, "log").want(t, ExitOK)
	want := "TIME                 VERDICT   USER          PROCESS                           REMOTE                          RULE\n" +
		"2026-11-21 05:58:00  allow     1000          /usr/bin/curl (pid 10)            192.0.2.1:443 tcp               r1\n" +
		"2026-11-21 05:59:00  deny      1000          /usr/bin/wget (pid 10)            192.0.2.1:443 tcp               (default)\n"
	if r.stdout != want {
		t.Errorf("log:\n%s\nwant:\n%s", r.stdout, want)
	}
	r = h.run(t, "log", "--verdict", "deny", "--json").want(t, ExitOK)
	j := decodeJSON[[]map[string]any](t, r.stdout)
	if len(j) != 1 || j[0]["exe"] != "/usr/bin/wget" || j[0]["action"] != "deny" {
		t.Errorf("log --verdict deny --json: %v", j)
	}
	r = h.run(t, "log", "--limit", "1").want(t, ExitOK)
	if strings.Count(r.stdout, "\n") != 2 || !strings.Contains(r.stdout, "wget") {
		t.Errorf("log --limit 1 shows the newest: %q", r.stdout)
	}
	h.run(t, "log", "--limit", "0").want(t, ExitUsage)
	h.run(t, "log", "--verdict", "maybe").want(t, ExitUsage)
	h.run(t, "log", "--since", "yesterday-ish").want(t, ExitUsage)
}

func TestLogFollow(t *testing.T) {
	h := newHarness()
	h.fake.addLog(logEntry(1, testNow, "/usr/bin/curl", shared.ActionAllow, "r1"))
	var out, errb syncbuf.Buffer
	var dials []string
	app := h.app(&out, &errb, &dials)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int)
	go func() { done <- app.Run(ctx, []string{"log", "--follow", "--json"}) }()
	waitFor(t, "first entry", func() bool { return strings.Count(out.String(), "\n") == 1 })
	// Same time as the first (only the id tells them apart), then later.
	h.fake.addLog(logEntry(2, testNow, "/usr/bin/wget", shared.ActionDeny, ""))
	h.fake.addLog(logEntry(3, testNow.Add(time.Second), "/usr/bin/ssh", shared.ActionAllow, "r2"))
	waitFor(t, "new entries", func() bool { return strings.Count(out.String(), "\n") >= 3 })
	// A few more polls must not repeat anything.
	n := h.fake.calls()
	waitFor(t, "more polls", func() bool { return h.fake.calls() >= n+3 })
	cancel()
	if code := <-done; code != ExitOK {
		t.Fatalf("log --follow exit %d: %s", code, errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var ids []string
	for _, l := range lines {
		ids = append(ids, decodeJSON[map[string]any](t, l)["id"].(json.Number).String())
	}
	if strings.Join(ids, ",") != "1,2,3" {
		t.Errorf("followed ids %v, want 1,2,3 once each:\n%s", ids, out.String())
	}
}

func TestExitCodes(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code int
		msg  string
	}{
		{dbusErr(dbus.ErrorNotAuthorized, "denied"), ExitNotAuthorized, "admin rights"},
		{dbusErr(dbus.ErrorNotAuthorized, "not authorized: changing the mode needs root"), ExitNotAuthorized,
			"tollgate: not authorized: get status: changing the mode needs root\n"},
		{&dbus.Error{Name: "org.freedesktop.DBus.Error.AccessDenied", Message: "policy"}, ExitNotAuthorized, "sudo"},
		{dbusErr(dbus.ErrorNotFound, "no rule"), ExitNotFound, "not found"},
		{dbusErr(dbus.ErrorBusy, "slow down"), ExitBusy, "try again"},
		{dbusErr(dbus.ErrorInvalidArgument, `field "port": bad`), ExitUsage, `field "port"`},
		{&dbus.Error{Name: "org.freedesktop.DBus.Error.ServiceUnknown", Message: "The name is not activatable"}, ExitUnreachable, "sudo systemctl start tollgated"},
		{dbusErr(dbus.ErrorNotFound, "not found: rule \"x\""), ExitNotFound, "tollgate: not found: get status: rule \"x\" ("},
		{errors.New("something odd"), ExitError, "something odd"},
	} {
		h := newHarness()
		h.fake.fail = tc.err
		r := h.run(t, "status").want(t, tc.code)
		if !strings.Contains(r.stderr, tc.msg) {
			t.Errorf("%v: stderr %q lacks %q", tc.err, r.stderr, tc.msg)
		}
		r = h.run(t, "status", "--json").want(t, tc.code)
		j := decodeJSON[map[string]any](t, r.stderr)
		if j["exit_code"] != json.Number(strconv.Itoa(tc.code)) || j["error"] == "" {
			t.Errorf("--json error: %v", j)
		}
	}
	// Dial failure: the bus is not there.
	h := newHarness()
	var out, errb syncbuf.Buffer
	app := h.app(&out, &errb, new([]string))
	app.Dial = func(ctx context.Context, address string) (Client, error) {
		return nil, errors.New("connect to bus unix:path=/nope: no such file or directory")
	}
	if code := app.Run(context.Background(), []string{"rules", "list"}); code != ExitUnreachable ||
		!strings.Contains(errb.String(), "is dbus running") {
		t.Errorf("dial failure: exit %d, %q", code, errb.String())
	}
}

func TestUsage(t *testing.T) {
	h := newHarness()
	r := h.run(t, "--help").want(t, ExitOK)
	for _, s := range []string{"Exit codes:", "3   not authorized", "5   daemon unreachable", "rules add", "prompt", "--bus ADDRESS"} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("--help lacks %q", s)
		}
	}
	h.run(t).want(t, ExitUsage)
	h.run(t, "frobnicate").want(t, ExitUsage)
	h.run(t, "rules").want(t, ExitUsage)
	h.run(t, "rules", "frob").want(t, ExitUsage)
	h.run(t, "status", "extra").want(t, ExitUsage)
	h.run(t, "--bus").want(t, ExitUsage)
	if r := h.run(t, "rules", "add", "--help").want(t, ExitOK); !strings.Contains(r.stdout, "--exe-sha256") {
		t.Errorf("rules add --help: %q", r.stdout)
	}
	if r := h.run(t, "rules", "rm", "-h").want(t, ExitOK); !strings.Contains(r.stdout, "tollgate rules rm ID") {
		t.Errorf("rules rm -h: %q", r.stdout)
	}
	for _, args := range [][]string{{"status", "--json"}, {"--json", "status"}} {
		if r := h.run(t, args...).want(t, ExitOK); !strings.HasPrefix(r.stdout, "{") {
			t.Errorf("%v: not JSON: %q", args, r.stdout)
		}
	}
	// Flags after positional arguments, and -- ending the flags.
	seedRules(h)
	h.run(t, "rules", "rm", "r1", "--json").want(t, ExitOK)
	if r := h.run(t, "rules", "rm", "--", "--json").want(t, ExitNotFound); !strings.Contains(r.stderr, "no rule --json") {
		t.Errorf("-- ends flags: %q", r.stderr)
	}
}

func TestBusAddress(t *testing.T) {
	h := newHarness()
	if r := h.run(t, "status"); len(r.dials) != 1 || r.dials[0] != "" {
		t.Errorf("default dials %q, want the system bus (\"\")", r.dials)
	}
	h.env[BusEnv] = "unix:path=/tmp/env-bus"
	if r := h.run(t, "status"); r.dials[0] != "unix:path=/tmp/env-bus" {
		t.Errorf("env: dialed %q", r.dials)
	}
	if r := h.run(t, "--bus", "unix:path=/tmp/flag-bus", "status"); r.dials[0] != "unix:path=/tmp/flag-bus" {
		t.Errorf("--bus: dialed %q", r.dials)
	}
	if r := h.run(t, "status", "--bus=unix:path=/tmp/b2"); r.dials[0] != "unix:path=/tmp/b2" {
		t.Errorf("--bus=: dialed %q", r.dials)
	}
	if r := h.run(t, "completion", "bash"); len(r.dials) != 0 {
		t.Errorf("completion dialed the daemon")
	}
}

func TestRemoteFlagsNamesTheProcessDidNotLookUp(t *testing.T) {
	c := shared.Connection{RemoteIP: netip.MustParseAddr("192.0.2.7"), RemotePort: 443, Hosts: []string{"example.org"}}
	if got := remote(c); got != "example.org:443 (192.0.2.7)" {
		t.Errorf("own lookup: %q", got)
	}
	c.HostSource = shared.HostFromUser
	if got := remote(c); !strings.Contains(got, "another process of this user") {
		t.Errorf("user fallback not flagged: %q", got)
	}
	c.HostSource = shared.HostFromAny
	if got := remote(c); !strings.Contains(got, "not trusted") {
		t.Errorf("any fallback not flagged: %q", got)
	}
}
