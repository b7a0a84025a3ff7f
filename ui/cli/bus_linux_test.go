package cli

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	godbus "github.com/godbus/dbus/v5"
	"github.com/tollgate-fw/tollgate/dbus"
	"github.com/tollgate-fw/tollgate/internal/bustest"
	"github.com/tollgate-fw/tollgate/internal/nstest"
	"github.com/tollgate-fw/tollgate/internal/syncbuf"
	"github.com/tollgate-fw/tollgate/shared"
)

// These tests run the CLI with the real *dbus.Client over a private
// system-like dbus-daemon with the packaged policy (internal/bustest),
// against a stand-in server that serves the fake daemon under the real
// names: they prove the wiring (dial, --bus, the wire forms, D-Bus error
// names becoming exit codes, signals reaching the prompt) without
// tollgated. The policy lets only root own the name: they need root.

// privateBus starts the private bus and returns its address.
func privateBus(t *testing.T) string {
	t.Helper()
	nstest.RequireRoot(t)
	return bustest.Start(t, false).Addr
}

// busServer serves a fakeDaemon as org.tollgate.Firewall1.
type busServer struct {
	f    *fakeDaemon
	conn *godbus.Conn
}

func serve(t *testing.T, addr string, f *fakeDaemon) *busServer {
	t.Helper()
	conn, err := godbus.Connect(addr)
	if err != nil {
		t.Fatalf("server connect: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	s := &busServer{f: f, conn: conn}
	if err := conn.Export(s, dbus.ObjectPath, dbus.Interface); err != nil {
		t.Fatal(err)
	}
	reply, err := conn.RequestName(dbus.BusName, godbus.NameFlagDoNotQueue)
	if err != nil || reply != godbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("own %s: %v %v", dbus.BusName, reply, err)
	}
	return s
}

var bg = context.Background()

func (s *busServer) GetStatus() (map[string]godbus.Variant, *godbus.Error) {
	st, err := s.f.GetStatus(bg)
	return dbus.Variants(st.Fields()), dbus.ToDBusError(err)
}

func (s *busServer) SetMode(mode string) *godbus.Error {
	return dbus.ToDBusError(s.f.SetMode(bg, mode))
}

// ListRulesPage answers with every rule in one page (the fake holds few).
func (s *busServer) ListRulesPage(map[string]godbus.Variant) ([]map[string]godbus.Variant, string, *godbus.Error) {
	rules, err := s.f.ListRules(bg)
	out := []map[string]godbus.Variant{}
	for _, r := range rules {
		out = append(out, dbus.Variants(r.Fields()))
	}
	return out, "", dbus.ToDBusError(err)
}

func (s *busServer) GetRule(id string) (map[string]godbus.Variant, *godbus.Error) {
	r, err := s.f.GetRule(bg, id)
	if err != nil {
		return nil, dbus.ToDBusError(err)
	}
	return dbus.Variants(r.Fields()), nil
}

func (s *busServer) AddRule(raw map[string]godbus.Variant) (string, *godbus.Error) {
	f, err := dbus.Fields(raw)
	if err != nil {
		return "", dbus.ToDBusError(err)
	}
	id, err := s.f.AddRuleFields(bg, f)
	return id, dbus.ToDBusError(err)
}

func (s *busServer) UpdateRule(id string, raw map[string]godbus.Variant) *godbus.Error {
	f, err := dbus.Fields(raw)
	if err != nil {
		return dbus.ToDBusError(err)
	}
	r, err := shared.RuleFromFields(f)
	if err != nil {
		return dbus.ToDBusError(err)
	}
	return dbus.ToDBusError(s.f.UpdateRule(bg, id, r))
}

func (s *busServer) DeleteRule(id string) *godbus.Error {
	return dbus.ToDBusError(s.f.DeleteRule(bg, id))
}

func (s *busServer) RegisterAgent() *godbus.Error   { return dbus.ToDBusError(s.f.RegisterAgent(bg)) }
func (s *busServer) UnregisterAgent() *godbus.Error { return dbus.ToDBusError(s.f.UnregisterAgent(bg)) }

func (s *busServer) ListPending() ([]map[string]godbus.Variant, *godbus.Error) {
	ps, err := s.f.ListPending(bg)
	out := []map[string]godbus.Variant{}
	for _, p := range ps {
		out = append(out, dbus.Variants(p.Fields()))
	}
	return out, dbus.ToDBusError(err)
}

func (s *busServer) Answer(id uint64, action, lifetime, scope string, opts map[string]godbus.Variant) *godbus.Error {
	o, err := dbus.Fields(opts)
	if err != nil {
		return dbus.ToDBusError(err)
	}
	a, err := shared.ParseAnswer(id, action, lifetime, scope, o)
	if err != nil {
		return dbus.ToDBusError(err)
	}
	return dbus.ToDBusError(s.f.Answer(bg, a))
}

// emitPending offers p as the daemon does: state, then the signal.
func (s *busServer) emitPending(t *testing.T, p shared.Pending) {
	t.Helper()
	s.f.mu.Lock()
	s.f.pending = append(s.f.pending, p)
	s.f.mu.Unlock()
	if err := s.conn.Emit(dbus.ObjectPath, dbus.Interface+"."+dbus.SignalConnectionPending, dbus.Variants(p.Fields())); err != nil {
		t.Fatal(err)
	}
}

func busHarness(t *testing.T, addr string) (*harness, func(args ...string) result) {
	h := newHarness()
	h.env[BusEnv] = addr
	run := func(args ...string) result {
		var out, errb syncbuf.Buffer
		app := h.app(&out, &errb, new([]string))
		app.Dial = DialDBus
		code := app.Run(context.Background(), args)
		return result{code: code, stdout: out.String(), stderr: errb.String()}
	}
	return h, run
}

func TestPrivateBusNoDaemon(t *testing.T) {
	addr := privateBus(t)
	_, run := busHarness(t, addr)
	r := run("status").want(t, ExitUnreachable)
	if !strings.Contains(r.stderr, "sudo systemctl start tollgated") {
		t.Errorf("stderr: %q", r.stderr)
	}
	// No bus at all at the address given with --bus.
	r = run("--bus", "unix:path="+filepath.Join(t.TempDir(), "none"), "status").want(t, ExitUnreachable)
	if !strings.Contains(r.stderr, "cannot reach the bus") {
		t.Errorf("stderr: %q", r.stderr)
	}
}

func TestPrivateBusCommands(t *testing.T) {
	addr := privateBus(t)
	h, run := busHarness(t, addr)
	serve(t, addr, h.fake)

	if r := run("status").want(t, ExitOK); !strings.Contains(r.stdout, "mode:            enforcing") {
		t.Errorf("status: %q", r.stdout)
	}
	run("rules", "add", "--action", "allow", "--exe", "/usr/bin/curl", "--host", "example.org", "--port", "443",
		"--proto", "tcp", "--lifetime", "forever").want(t, ExitOK)
	r := run("rules", "list", "--json").want(t, ExitOK)
	j := decodeJSON[[]map[string]any](t, r.stdout)
	if len(j) != 1 || j[0]["host"] != "example.org" || j[0]["port"] != "443" || j[0]["id"] != "r1" {
		t.Errorf("rules list over the bus: %v", j)
	}
	run("rules", "disable", "r1").want(t, ExitOK)
	if h.fake.rulesNow()[0].Enabled {
		t.Error("disable over the bus did not reach the daemon")
	}
	run("rules", "rm", "nope").want(t, ExitNotFound)
	h.fake.setDeny(dbusErr(dbus.ErrorNotAuthorized, "SetMode needs org.tollgate.manage"))
	r = run("mode", "monitor", "--json").want(t, ExitNotAuthorized)
	if e := decodeJSON[map[string]any](t, r.stderr); !strings.Contains(e["error"].(string), "SetMode needs org.tollgate.manage") {
		t.Errorf("error over the bus: %v", e)
	}
	h.fake.setDeny(nil)
	h.fake.setPending([]shared.Pending{pend(5, "/usr/bin/curl", "example.org")})
	run("answer", "5", "allow", "--lifetime", "session").want(t, ExitOK)
	if a := h.fake.answered(); len(a) != 1 || a[0].Lifetime != shared.LifetimeSession {
		t.Errorf("answer over the bus: %+v", a)
	}
}

func TestPrivateBusPrompt(t *testing.T) {
	addr := privateBus(t)
	h := newHarness()
	h.env[BusEnv] = addr
	srv := serve(t, addr, h.fake)
	p := startPromptWith(t, h, func(a *App) { a.Dial = DialDBus })
	p.waitOut("waiting for connections")
	srv.emitPending(t, pend(40, "/usr/bin/curl", "example.org"))
	p.waitOut("--- connection #40")
	p.press("A")
	waitFor(t, "answer over the bus", func() bool { return len(h.fake.answered()) == 1 })
	if a := h.fake.answered()[0]; a.PendingID != 40 || a.Action != shared.ActionAllow || a.Lifetime != shared.LifetimeForever {
		t.Errorf("answer: %+v", a)
	}
	if err := srv.conn.Emit(dbus.ObjectPath, dbus.Interface+"."+dbus.SignalPendingResolved, uint64(40), "allow"); err != nil {
		t.Fatal(err)
	}
	p.press("q")
	if code := p.exit(); code != ExitOK {
		t.Fatalf("exit %d: %s", code, p.errb.String())
	}
	waitFor(t, "unregister", func() bool { return !h.fake.isAgent() })
}

func TestPrivateBusPromptFollowsRestart(t *testing.T) {
	addr := privateBus(t)
	h := newHarness()
	h.env[BusEnv] = addr
	srv := serve(t, addr, h.fake)
	p := startPromptWith(t, h, func(a *App) { a.Dial = DialDBus })
	p.waitOut("waiting for connections")
	srv.conn.Close() // the daemon stops
	p.waitOut("tollgated left the bus")
	srv = serve(t, addr, h.fake) // and starts again
	p.waitOut("tollgated is back")
	if n := h.fake.registered(); n != 2 {
		t.Errorf("registered %d times, want 2", n)
	}
	srv.emitPending(t, pend(70, "/usr/bin/curl", "example.org"))
	p.waitOut("--- connection #70")
	p.press("sq")
	if code := p.exit(); code != ExitOK {
		t.Fatalf("exit %d: %s", code, p.errb.String())
	}
	if a := h.fake.answered(); len(a) != 1 || a[0].PendingID != 70 || a[0].Lifetime != shared.LifetimeSession {
		t.Errorf("answers: %+v", a)
	}
}
