package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"
	"github.com/tollgate-fw/tollgate/dbus"
	"github.com/tollgate-fw/tollgate/internal/bustest"
	"github.com/tollgate-fw/tollgate/internal/nstest"
	"github.com/tollgate-fw/tollgate/internal/proctest"
	"github.com/tollgate-fw/tollgate/shared"
)

// Callers run as these users. They must exist: dbus-daemon refuses
// connections from uids it cannot look up.
const (
	uidA = 65534 // nobody
	uidB = 33    // www-data
	uidC = 34    // backup
)

// testEnv is a directory every uid can read, holding the bus socket and a
// copy of the test binary the helpers run as.
type testEnv struct {
	dir    string
	sock   string
	addr   string
	binary string
}

func newTestEnv(t testing.TB) *testEnv {
	t.Helper()
	nstest.RequireRoot(t)
	for _, tool := range []string{"dbus-daemon", "setpriv"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed (make deps): %v", tool, err)
		}
	}
	for _, uid := range []int{uidA, uidB, uidC} {
		if _, err := user.LookupId(strconv.Itoa(uid)); err != nil {
			t.Fatalf("test user %d: %v (dbus-daemon needs callers with a passwd entry)", uid, err)
		}
	}
	dir := bustest.Dir(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "client.test")
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "bus.sock")
	return &testEnv{dir: dir, sock: sock, addr: "unix:path=" + sock, binary: bin}
}

// startBus starts a private, system-like dbus-daemon on e.sock with the
// packaged policy and a stand-in polkit that root may own.
func (e *testEnv) startBus(t testing.TB) *bustest.Bus {
	t.Helper()
	return bustest.StartIn(t, e.dir, true)
}

// waitFor waits for cond (proctest.WaitFor) with this package's deadline.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	proctest.WaitFor(t, 20*time.Second, what, cond)
}

// startServer runs the server on the test bus and waits until it owns the name.
func (e *testEnv) startServer(t testing.TB, be Backend, opts Options) *Server {
	t.Helper()
	opts.Address = e.addr
	opts.Backend = be
	opts.Log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if opts.MinBackoff == 0 {
		opts.MinBackoff, opts.MaxBackoff = 20*time.Millisecond, 200*time.Millisecond
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	waitFor(t, "the server to own its name", s.Connected)
	return s
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// helper is a client process running as another uid.
type helper struct {
	t   *testing.T
	uid int
	cmd *exec.Cmd
	in  *json.Encoder
	out *json.Decoder
}

func (e *testEnv) helper(t *testing.T, uid int) *helper {
	t.Helper()
	cmd := exec.Command("setpriv", fmt.Sprintf("--reuid=%d", uid), fmt.Sprintf("--regid=%d", uid),
		"--clear-groups", e.binary, "-test.run=^$")
	cmd.Env = append(os.Environ(), envHelper+"=1", envAddr+"="+e.addr)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start helper as uid %d: %v", uid, err)
	}
	h := &helper{t: t, uid: uid, cmd: cmd, in: json.NewEncoder(stdin), out: json.NewDecoder(stdout)}
	t.Cleanup(func() { stdin.Close(); cmd.Wait() })
	return h
}

func (h *helper) do(op helperOp) helperResult {
	h.t.Helper()
	if err := h.in.Encode(op); err != nil {
		h.t.Fatalf("uid %d: send %s: %v", h.uid, op.Op, err)
	}
	var res helperResult
	if err := h.out.Decode(&res); err != nil {
		h.t.Fatalf("uid %d: read result of %s: %v", h.uid, op.Op, err)
	}
	return res
}

// stop ends the helper process (its bus connection goes with it).
func (h *helper) stop() {
	h.cmd.Process.Kill()
	h.cmd.Wait()
}

func TestIntegrationIntrospectionIsTheXML(t *testing.T) {
	e := newTestEnv(t)
	e.startBus(t)
	e.startServer(t, newFakeBackend(), Options{PolkitDisabled: true})

	conn, err := godbus.Connect(e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var live string
	if err := conn.Object(dbus.BusName, dbus.ObjectPath).Call("org.freedesktop.DBus.Introspectable.Introspect", 0).Store(&live); err != nil {
		t.Fatalf("Introspect: %v", err)
	}
	if live != dbus.IntrospectionXML {
		t.Fatalf("live introspection differs from dbus/org.tollgate.Firewall1.xml:\n%s", live)
	}
	// Every method of the XML exists on the live object: calling it with
	// no arguments gets an argument error (or runs), never UnknownMethod.
	node := parseXML(t)
	for _, m := range node.Interfaces[0].Methods {
		err := conn.Object(dbus.BusName, dbus.ObjectPath).Call(dbus.Interface+"."+m.Name, 0).Err
		var de godbus.Error
		if errors.As(err, &de) && de.Name == "org.freedesktop.DBus.Error.UnknownMethod" {
			t.Errorf("method %s of the XML is not exported", m.Name)
		}
	}
	// A typed client on this connection works and leaves it open.
	c, err := dbus.Connect(context.Background(), conn)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := c.GetStatus(context.Background()); err != nil || st.Mode != "enforcing" || st.Version != "test" {
		t.Fatalf("GetStatus: %+v %v", st, err)
	}
	c.Close()
	if !conn.Connected() {
		t.Fatal("Close of a Connect client closed the caller's connection")
	}
	// The parents walk down to the object.
	var root string
	if err := conn.Object(dbus.BusName, "/org/tollgate").Call("org.freedesktop.DBus.Introspectable.Introspect", 0).Store(&root); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(root, `<node name="Firewall1"/>`) {
		t.Errorf("/org/tollgate does not list Firewall1: %s", root)
	}
}

// fakePolkit stands in for polkit on the test bus: it grants actions by
// the caller's uid.
type fakePolkit struct {
	conn   *godbus.Conn
	grants map[uint32][]string
}

func (p *fakePolkit) CheckAuthorization(subject polkitSubject, action string, details map[string]string, flags uint32, cancel string) (polkitResult, *godbus.Error) {
	name, _ := subject.Details["name"].Value().(string)
	if subject.Kind != "system-bus-name" || name == "" {
		return polkitResult{}, godbus.MakeFailedError(errors.New("bad subject"))
	}
	if flags != polkitAllowUserInteraction {
		return polkitResult{}, godbus.MakeFailedError(fmt.Errorf("flags %d: want AllowUserInteraction", flags))
	}
	var uid uint32
	if err := p.conn.BusObject().Call("org.freedesktop.DBus.GetConnectionUnixUser", 0, name).Store(&uid); err != nil {
		return polkitResult{}, godbus.MakeFailedError(err)
	}
	for _, a := range p.grants[uid] {
		if a == action {
			return polkitResult{IsAuthorized: true, Details: map[string]string{}}, nil
		}
	}
	return polkitResult{Details: map[string]string{}}, nil
}

func (e *testEnv) startPolkit(t *testing.T, grants map[uint32][]string) {
	t.Helper()
	conn, err := godbus.Connect(e.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	p := &fakePolkit{conn: conn, grants: grants}
	if err := conn.Export(p, polkitPath, "org.freedesktop.PolicyKit1.Authority"); err != nil {
		t.Fatal(err)
	}
	if r, err := conn.RequestName(polkitName, godbus.NameFlagDoNotQueue); err != nil || r != godbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("own %s: %v %v", polkitName, r, err)
	}
}

// seed puts rules, pending groups and log entries of root, A and B.
func seed(b *fakeBackend) {
	a, bb := uint32(uidA), uint32(uidB)
	b.put(shared.Rule{ID: "sys", Action: shared.ActionAllow, Lifetime: shared.LifetimeForever, Enabled: true, Match: shared.Match{Exe: "/usr/bin/apt"}})
	b.put(shared.Rule{ID: "ra", Action: shared.ActionAllow, Lifetime: shared.LifetimeForever, Owner: a, Enabled: true, Match: shared.Match{Exe: "/usr/bin/curl"}})
	b.put(shared.Rule{ID: "rb", Action: shared.ActionDeny, Lifetime: shared.LifetimeForever, Owner: bb, Enabled: true, Match: shared.Match{Exe: "/usr/bin/wget"}})
	for i, uid := range []int64{uidA, uidB, uidC} {
		id := uint64(i + 1)
		b.pending[id] = shared.Pending{ID: id, Count: 1, Connection: shared.Connection{UID: uid, GID: uid, Exe: "/usr/bin/x"}}
		b.log = append(b.log, shared.LogEntry{Connection: shared.Connection{ID: id, UID: uid, GID: uid}, Verdict: shared.Verdict{Action: shared.ActionDeny}})
	}
}

type step struct {
	op   helperOp
	err  string // expected error name, "" = success
	want any    // expected value when not nil (compared as JSON)
}

const (
	eNotAuth = dbus.ErrorNotAuthorized
	eNotFnd  = dbus.ErrorNotFound
	eInval   = dbus.ErrorInvalidArgument
)

func userRule(extra map[string]any) map[string]any {
	f := map[string]any{"action": "allow", "lifetime": "forever", "exe": "/usr/bin/ssh", "host": "example.org", "port": "22"}
	for k, v := range extra {
		f[k] = v
	}
	return f
}

func jsonEqual(t *testing.T, got, want any) bool {
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	return string(g) == string(w)
}

func (h *helper) run(steps []step) {
	h.t.Helper()
	for i, s := range steps {
		res := h.do(s.op)
		if res.Err != s.err {
			h.t.Errorf("uid %d step %d %s %s%s: error %q, want %q", h.uid, i, s.op.Op, s.op.ID, s.op.S, res.Err, s.err)
			continue
		}
		if s.want != nil && !jsonEqual(h.t, res.Value, s.want) {
			h.t.Errorf("uid %d step %d %s: got %v, want %v", h.uid, i, s.op.Op, res.Value, s.want)
		}
	}
}

// userSteps is what an ordinary user A may and may not do, whatever polkit
// says (A holds no org.tollgate.manage).
func userSteps() []step {
	return []step{
		{op: helperOp{Op: "GetStatus"}, want: "enforcing"},
		{op: helperOp{Op: "SetMode", S: "monitor"}, err: eNotAuth},
		{op: helperOp{Op: "SetMode", S: "bogus"}, err: eInval},
		{op: helperOp{Op: "ListRules"}, want: []string{"ra", "sys"}},
		{op: helperOp{Op: "AddRule", Fields: userRule(nil)}},
		{op: helperOp{Op: "AddRule", Fields: userRule(map[string]any{"owner": json.Number("0")})}, err: eNotAuth},
		{op: helperOp{Op: "AddRule", Fields: userRule(map[string]any{"owner": json.Number(fmt.Sprint(uidB))})}, err: eNotAuth},
		{op: helperOp{Op: "AddRule", Fields: userRule(map[string]any{"port": "99999"})}, err: eInval},
		{op: helperOp{Op: "UpdateRule", ID: "ra", Fields: userRule(nil)}},
		{op: helperOp{Op: "UpdateRule", ID: "sys", Fields: userRule(nil)}, err: eNotAuth},
		{op: helperOp{Op: "UpdateRule", ID: "rb", Fields: userRule(nil)}, err: eNotFnd},
		{op: helperOp{Op: "DeleteRule", ID: "rb"}, err: eNotFnd},
		{op: helperOp{Op: "DeleteRule", ID: "sys"}, err: eNotAuth},
		{op: helperOp{Op: "DeleteRule", ID: "nope"}, err: eNotFnd},
		{op: helperOp{Op: "ExportRules"}, want: fmt.Sprintf("# rules of uid %d\n", uidA)},
		{op: helperOp{Op: "ImportRules", S: "[[rule]]\n"}, err: eNotAuth},
		{op: helperOp{Op: "ListPending"}, want: []uint64{1}},
		{op: helperOp{Op: "Answer", N: 1}, err: eNotAuth}, // not an agent yet
		{op: helperOp{Op: "UnregisterAgent"}, err: eNotFnd},
		{op: helperOp{Op: "RegisterAgent"}},
		{op: helperOp{Op: "Answer", N: 2}, err: eNotAuth}, // B's connection
		{op: helperOp{Op: "Answer", N: 1, S: "system"}, err: eNotAuth},
		{op: helperOp{Op: "Answer", N: 9}, err: eNotFnd},
		{op: helperOp{Op: "Answer", N: 1}},
		{op: helperOp{Op: "RecentConnections"}, want: []int64{uidA}},
		{op: helperOp{Op: "RecentConnections", Fields: map[string]any{"uid": json.Number(fmt.Sprint(uidB))}}, err: eNotAuth},
		{op: helperOp{Op: "UnregisterAgent"}},
	}
}

func TestIntegrationAuthorizationWithoutPolkit(t *testing.T) {
	e := newTestEnv(t)
	e.startBus(t)
	be := newFakeBackend()
	seed(be)
	e.startServer(t, be, Options{})

	e.helper(t, uidA).run(userSteps())
	rules, mode, answers, imported := be.snapshot()
	if mode != "enforcing" || imported != 0 || answers != 1 {
		t.Fatalf("after user A: mode %s, imports %d, answers %d; want enforcing, 0, 1", mode, imported, answers)
	}
	if _, ok := rules["rb"]; !ok || rules["sys"].Match.Exe != "/usr/bin/apt" {
		t.Fatalf("user A changed rules that are not A's: %+v", rules)
	}
	for id, r := range rules {
		if id != "sys" && id != "ra" && id != "rb" && r.Owner != uidA {
			t.Errorf("rule %s added by A is owned by %d", id, r.Owner)
		}
	}

	// Without polkit, B can no more manage than A.
	e.helper(t, uidB).run([]step{
		{op: helperOp{Op: "ListRules"}, want: []string{"rb", "sys"}},
		{op: helperOp{Op: "SetMode", S: "monitor"}, err: eNotAuth},
		{op: helperOp{Op: "DeleteRule", ID: "ra"}, err: eNotFnd},
		{op: helperOp{Op: "ListPending"}, want: []uint64{2}},
		{op: helperOp{Op: "RegisterAgent"}},
		{op: helperOp{Op: "Answer", N: 1}, err: eNotAuth},
	})

	// Root may do everything.
	root := e.rootClient(t)
	ctx := context.Background()
	if err := root.SetMode(ctx, "monitor"); err != nil {
		t.Fatalf("root SetMode: %v", err)
	}
	if _, err := root.ImportRules(ctx, "[[rule]]\n"); err != nil {
		t.Fatalf("root ImportRules: %v", err)
	}
	id, err := root.AddRule(ctx, shared.Rule{Action: shared.ActionDeny, Lifetime: shared.LifetimeForever, Enabled: true, Match: shared.Match{Exe: "/bin/nc"}})
	if err != nil {
		t.Fatalf("root AddRule: %v", err)
	}
	if err := root.DeleteRule(ctx, "rb"); err != nil {
		t.Fatalf("root DeleteRule of B's rule: %v", err)
	}
	if err := root.Answer(ctx, shared.Answer{PendingID: 2, Action: shared.ActionDeny, Lifetime: shared.LifetimeOnce, System: true}); err != nil {
		t.Fatalf("root Answer of B's connection: %v", err)
	}
	es, err := root.RecentConnections(ctx, shared.LogFilter{})
	if err != nil || len(es) != 3 {
		t.Fatalf("root RecentConnections: %d entries, %v; want all 3", len(es), err)
	}
	if st, err := root.GetStatus(ctx); err != nil || st.Mode != "monitor" {
		t.Fatalf("root GetStatus: %+v %v", st, err)
	}
	all, _, _, _ := be.snapshot()
	if rs, err := root.ListRules(ctx); err != nil || len(rs) != len(all) {
		t.Fatalf("root ListRules: %d rules, %v; want all %d", len(rs), err, len(all))
	}
	if err := root.UpdateRule(ctx, "ra", shared.Rule{Action: shared.ActionDeny, Lifetime: shared.LifetimeForever, Owner: uidA, Enabled: true, Match: shared.Match{Exe: "/bin/true"}}); err != nil {
		t.Fatalf("root UpdateRule of A's rule: %v", err)
	}
	if txt, err := root.ExportRules(ctx); err != nil || txt != "# rules of uid 0\n" {
		t.Fatalf("root ExportRules: %q %v", txt, err)
	}
	if ps, err := root.ListPending(ctx); err != nil || len(ps) != 3 {
		t.Fatalf("root ListPending: %d, %v; want all 3", len(ps), err)
	}
	if err := root.RegisterAgent(ctx); err != nil {
		t.Fatalf("root RegisterAgent: %v", err)
	}
	if err := root.UnregisterAgent(ctx); err != nil {
		t.Fatalf("root UnregisterAgent: %v", err)
	}
	rules, mode, _, imported = be.snapshot()
	if rules["ra"].Owner != uidA || rules["ra"].Match.Exe != "/bin/true" {
		t.Fatalf("root's update of A's rule: %+v", rules["ra"])
	}
	if mode != "monitor" || imported != 1 || rules[id].Owner != shared.OwnerSystem {
		t.Fatalf("after root: mode %s, imports %d, new rule owner %d", mode, imported, rules[id].Owner)
	}
}

func TestIntegrationAuthorizationWithPolkit(t *testing.T) {
	e := newTestEnv(t)
	e.startBus(t)
	e.startPolkit(t, map[uint32][]string{
		uidA: {ActionAnswer, ActionOwnRules},
		uidB: {ActionManage, ActionAnswer, ActionOwnRules},
		// uidC: nothing (e.g. not an active local session)
	})
	be := newFakeBackend()
	seed(be)
	e.startServer(t, be, Options{})

	e.helper(t, uidA).run(userSteps())

	// B holds org.tollgate.manage: system rules, mode, import, others'
	// rules and connections.
	e.helper(t, uidB).run([]step{
		{op: helperOp{Op: "SetMode", S: "monitor"}},
		{op: helperOp{Op: "ImportRules", S: "[[rule]]\n"}, want: 1},
		{op: helperOp{Op: "AddRule", Fields: userRule(map[string]any{"owner": json.Number("0")})}},
		{op: helperOp{Op: "UpdateRule", ID: "sys", Fields: userRule(nil)}},
		{op: helperOp{Op: "DeleteRule", ID: "ra"}},
		{op: helperOp{Op: "Answer", N: 3}},
	})
	// C has no polkit grant: not even its own rules or connections.
	e.helper(t, uidC).run([]step{
		{op: helperOp{Op: "GetStatus"}, want: "monitor"},
		{op: helperOp{Op: "AddRule", Fields: userRule(nil)}, err: eNotAuth},
		{op: helperOp{Op: "RegisterAgent"}},
		{op: helperOp{Op: "Answer", N: 3}, err: eNotAuth},
		{op: helperOp{Op: "SetMode", S: "enforcing"}, err: eNotAuth},
	})
	rules, mode, answers, imported := be.snapshot()
	if mode != "monitor" || imported != 1 || answers != 2 {
		t.Fatalf("mode %s imports %d answers %d; want monitor 1 2", mode, imported, answers)
	}
	if _, ok := rules["ra"]; ok {
		t.Fatal("B (manage) could not delete A's rule")
	}
	if rules["sys"].Match.Exe != "/usr/bin/ssh" || rules["sys"].Owner != shared.OwnerSystem {
		t.Fatalf("B's update of the system rule: %+v", rules["sys"])
	}
}

func (e *testEnv) rootClient(t testing.TB) *dbus.Client {
	t.Helper()
	c, err := dbus.Dial(context.Background(), e.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestIntegrationConnectionPendingOnlyToEntitledAgent(t *testing.T) {
	e := newTestEnv(t)
	e.startBus(t)
	be := newFakeBackend()
	s := e.startServer(t, be, Options{PolkitDisabled: true})

	a, b := e.helper(t, uidA), e.helper(t, uidB)
	for _, h := range []*helper{a, b} {
		h.run([]step{{op: helperOp{Op: "Subscribe"}}, {op: helperOp{Op: "RegisterAgent"}}})
	}
	waitFor(t, "two agents", func() bool { return len(s.Agents()) == 2 })

	// Signals from one sender arrive in order: if B were sent A's
	// pending groups, it would see them before its own end marker.
	send := func(id uint64, uid int64) {
		if n := s.ConnectionPending(shared.Pending{ID: id, Count: 1, Connection: shared.Connection{UID: uid, GID: uid}}); n != 1 {
			t.Fatalf("pending %d of uid %d sent to %d agents, want 1", id, uid, n)
		}
	}
	send(1, uidA)
	send(2, uidB)
	send(3, uidA)
	send(200, uidB)
	// B forges a ConnectionPending to A's agent and a NameOwnerChanged
	// saying A left, sent to A and to the daemon: both are ignored.
	var nameA string
	for n, uid := range s.Agents() {
		if uid == uidA {
			nameA = n
		}
	}
	// (A round trip after each forge: the bus has routed the forged
	// signals before the daemon's next one.)
	b.run([]step{{op: helperOp{Op: "Forge", S: nameA, N: 66, ID: nameA}}, {op: helperOp{Op: "GetStatus"}}})
	daemonName := s.uniqueName()
	b.run([]step{{op: helperOp{Op: "Forge", S: daemonName, N: 66, ID: nameA}}, {op: helperOp{Op: "GetStatus"}}})
	send(100, uidA)
	a.run([]step{{op: helperOp{Op: "WaitPending", N: 100}, want: []uint64{1, 3, 100}}})
	if got := s.Entitled(uidA); len(got) != 1 {
		t.Fatalf("a forged NameOwnerChanged made the daemon forget A's agent: %v", got)
	}
	b.run([]step{{op: helperOp{Op: "WaitPending", N: 200}, want: []uint64{2, 200}}})

	// A connection of a user with no agent goes to nobody (uid 0 is
	// system, but there is no admin agent either).
	if n := s.ConnectionPending(shared.Pending{ID: 5, Connection: shared.Connection{UID: 1000}}); n != 0 {
		t.Fatalf("pending of a uid without agents sent to %d agents", n)
	}
	if got := s.Entitled(0); len(got) != 0 {
		t.Fatalf("entitled for uid 0 without admin agents: %v", got)
	}

	// An agent that leaves the bus is forgotten and the backend told.
	a.stop()
	waitFor(t, "the backend to hear agent A is gone", func() bool { return be.agentCount() == 1 })
	if got := s.Entitled(uidA); len(got) != 0 {
		t.Fatalf("agents of A after it left: %v", got)
	}
}

func TestIntegrationBroadcastSignalsReachEveryone(t *testing.T) {
	e := newTestEnv(t)
	e.startBus(t)
	s := e.startServer(t, newFakeBackend(), Options{PolkitDisabled: true})

	// B is no agent: it hears the broadcasts but no ConnectionPending,
	// not even one of its own uid.
	b := e.helper(t, uidB)
	b.run([]step{{op: helperOp{Op: "Subscribe"}}})
	s.ConnectionPending(shared.Pending{ID: 1, Connection: shared.Connection{UID: uidB}})
	s.RulesChanged()
	s.PendingResolved(1, shared.ActionDeny)
	s.StatusChanged(shared.Status{Mode: "monitor"})
	b.run([]step{
		{op: helperOp{Op: "WaitSignal", S: dbus.SignalRulesChanged}, want: map[string]any{"id": 0, "action": "", "mode": "", "pending_seen": 0}},
		{op: helperOp{Op: "WaitSignal", S: dbus.SignalPendingResolved}, want: map[string]any{"id": 1, "action": "deny", "mode": "", "pending_seen": 0}},
		{op: helperOp{Op: "WaitSignal", S: dbus.SignalStatusChanged}, want: map[string]any{"id": 0, "action": "", "mode": "monitor", "pending_seen": 0}},
	})
}

// A client hears the daemon leave and come back, and takes signals from
// the new daemon (whose unique name differs).
func TestIntegrationClientFollowsDaemonRestart(t *testing.T) {
	e := newTestEnv(t)
	e.startBus(t)
	run := func() (*Server, func()) {
		s, err := New(Options{Address: e.addr, Backend: newFakeBackend(), PolkitDisabled: true, Log: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		waitFor(t, "the server to own its name", s.Connected)
		return s, func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		}
	}
	_, stop := run()
	h := e.helper(t, uidA)
	h.run([]step{{op: helperOp{Op: "Subscribe"}}})
	stop()
	h.run([]step{{op: helperOp{Op: "WaitSignal", S: dbus.SignalDaemonChanged}, want: map[string]any{"owner_set": false}}})
	s2, stop2 := run()
	defer stop2()
	h.run([]step{{op: helperOp{Op: "WaitSignal", S: dbus.SignalDaemonChanged}, want: map[string]any{"owner_set": true}}})
	s2.StatusChanged(shared.Status{Mode: "disabled"})
	h.run([]step{{op: helperOp{Op: "WaitSignal", S: dbus.SignalStatusChanged}, want: map[string]any{"id": 0, "action": "", "mode": "disabled", "pending_seen": 0}}})
}

func TestIntegrationMalformedRuleIsInvalidAndChangesNothing(t *testing.T) {
	e := newTestEnv(t)
	e.startBus(t)
	be := newFakeBackend()
	seed(be)
	e.startServer(t, be, Options{PolkitDisabled: true})
	before, _, _, _ := be.snapshot()

	conn, err := godbus.Connect(e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	obj := conn.Object(dbus.BusName, dbus.ObjectPath)
	v := godbus.MakeVariant
	many := map[string]godbus.Variant{}
	for i := range dbus.MaxFields + 1 {
		many[fmt.Sprintf("f%d", i)] = v("x")
	}
	bad := map[string]map[string]godbus.Variant{
		"unknown field":   {"action": v("allow"), "colour": v("red")},
		"wrong type":      {"action": v("allow"), "port": v(true)},
		"bad action":      {"action": v("maybe")},
		"object path":     {"action": v(godbus.ObjectPath("/x"))},
		"huge string":     {"action": v("allow"), "note": v(strings.Repeat("x", dbus.MaxStringLen+1))},
		"too many fields": many,
		"bookkeeping":     {"action": v("allow"), "hits": v(uint64(5))},
		"bad ip":          {"action": v("allow"), "ip": v("300.1.1.1")},
		"struct":          {"action": v("allow"), "exe": v([]any{"a", int32(1)})},
	}
	for name, f := range bad {
		err := dbus.FromDBusError(obj.Call(dbus.Interface+"."+dbus.MethodAddRule, 0, f).Err)
		if !errors.Is(err, dbus.ErrInvalidArgument) {
			t.Errorf("AddRule with %s: %v, want InvalidArgument", name, err)
		}
		err = dbus.FromDBusError(obj.Call(dbus.Interface+"."+dbus.MethodUpdateRule, 0, "ra", f).Err)
		if !errors.Is(err, dbus.ErrInvalidArgument) {
			t.Errorf("UpdateRule with %s: %v, want InvalidArgument", name, err)
		}
	}
	// A wrong signature is refused by the D-Bus layer itself.
	if err := obj.Call(dbus.Interface+"."+dbus.MethodAddRule, 0, "not a dict").Err; err == nil {
		t.Error("AddRule with a string argument succeeded")
	}
	after, _, _, _ := be.snapshot()
	if !reflect.DeepEqual(before, after) {
		t.Fatalf("rules changed by malformed calls:\nbefore %+v\nafter  %+v", before, after)
	}
}

func TestIntegrationRateLimitIsPerUnprivilegedCaller(t *testing.T) {
	e := newTestEnv(t)
	e.startBus(t)
	e.startServer(t, newFakeBackend(), Options{PolkitDisabled: true, RateLimit: 0.001, RateBurst: 3})
	steps := []step{
		{op: helperOp{Op: "GetStatus"}}, {op: helperOp{Op: "GetStatus"}}, {op: helperOp{Op: "GetStatus"}},
		{op: helperOp{Op: "GetStatus"}, err: dbus.ErrorBusy},
	}
	e.helper(t, uidA).run(steps)
	root := e.rootClient(t)
	for i := range 10 {
		if _, err := root.GetStatus(context.Background()); err != nil {
			t.Fatalf("root call %d: %v (root is not rate-limited)", i, err)
		}
	}
}

func TestIntegrationKeepsServingAcrossBusRestarts(t *testing.T) {
	e := newTestEnv(t)
	be := newFakeBackend()

	// No bus at start: Run waits and retries.
	opts := Options{PolkitDisabled: true, MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}
	opts.Address = e.addr
	opts.Backend = be
	opts.Log = slog.New(slog.NewTextHandler(testWriter{t}, nil))
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	if s.Connected() {
		t.Fatal("connected without a bus")
	}

	bus := e.startBus(t)
	waitFor(t, "the server to connect once the bus is there", s.Connected)
	e.helper(t, uidA).run([]step{{op: helperOp{Op: "RegisterAgent"}}})
	waitFor(t, "the agent", func() bool { return be.agentCount() == 1 })

	// The bus dies: the server notices, forgets the agents, and comes back.
	bus.Stop()
	waitFor(t, "the server to notice the bus is gone", func() bool { return !s.Connected() })
	// The connection reads as closed a moment before the server has told
	// the backend its agents are gone: wait for that too.
	waitFor(t, "the agents to be forgotten after the bus died", func() bool { return be.agentCount() == 0 })
	if n := s.ConnectionPending(shared.Pending{ID: 1, Connection: shared.Connection{UID: uidA}}); n != 0 {
		t.Fatalf("signal sent to %d agents with no bus", n)
	}
	e.startBus(t)
	waitFor(t, "the server to reconnect", s.Connected)
	e.helper(t, uidA).run([]step{{op: helperOp{Op: "GetStatus"}, want: "enforcing"}})
}

func TestIntegrationOnlyRootOwnsTheName(t *testing.T) {
	e := newTestEnv(t)
	e.startBus(t)
	// The server run as uid A: the packaged policy lets only root own the
	// name, and Run says so instead of retrying for ever.
	res := e.helper(t, uidA).do(helperOp{Op: "Serve"})
	if res.Err != "name not allowed" {
		t.Fatalf("Serve as uid %d: %q, want the ErrNameNotAllowed failure", uidA, res.Err)
	}
	t.Logf("as uid %d: %v", uidA, res.Value)
}

// BenchmarkIntegrationGetStatus is one authorized call through a real
// dbus-daemon: the caller's uid from the bus, the backend, the reply.
func BenchmarkIntegrationGetStatus(b *testing.B) {
	e := newTestEnv(b)
	e.startBus(b)
	opts := Options{PolkitDisabled: true}
	e.startServer(b, newFakeBackend(), opts)
	c := e.rootClient(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.GetStatus(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkIntegrationAddRule adds a user's rule as root: decoding,
// validation and the owner check included.
func BenchmarkIntegrationAddRule(b *testing.B) {
	e := newTestEnv(b)
	e.startBus(b)
	e.startServer(b, newFakeBackend(), Options{PolkitDisabled: true})
	c := e.rootClient(b)
	ctx := context.Background()
	f := map[string]any{"action": "allow", "lifetime": "forever", "exe": "/usr/bin/curl", "host": "example.org", "port": "443", "owner": uint32(1000)}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.AddRuleFields(ctx, f); err != nil {
			b.Fatal(err)
		}
	}
}

// Rules past what one bus message carries (32 MiB here, as on a system
// bus): ListRules refuses by name instead of sending a message the bus
// would refuse (dropping the daemon's connection, and every agent with it),
// the client pages through them all, and the daemon stays on the bus.
func TestIntegrationRulesPastTheMessageLimit(t *testing.T) {
	e := newTestEnv(t)
	e.startBus(t)
	be := newFakeBackend()
	name := strings.Repeat("n", dbus.MaxStringLen)
	const n = 9000 // × 4 KiB names: 37 MB
	for i := range n {
		be.put(shared.Rule{ID: fmt.Sprintf("big%05d", i), Name: name, Action: shared.ActionDeny,
			Lifetime: shared.LifetimeForever, Enabled: true, Match: shared.Match{Exe: "/usr/bin/x"}})
	}
	s := e.startServer(t, be, Options{PolkitDisabled: true})
	root := e.rootClient(t)
	ctx := context.Background()

	conn, err := godbus.Dial(e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.Auth(nil); err != nil {
		t.Fatal(err)
	}
	if err := conn.Hello(); err != nil {
		t.Fatal(err)
	}
	var raw []map[string]godbus.Variant
	err = conn.Object(dbus.BusName, dbus.ObjectPath).CallWithContext(ctx, dbus.Interface+"."+dbus.MethodListRules, 0).Store(&raw)
	var de godbus.Error
	if !errors.As(err, &de) || de.Name != dbus.ErrorInvalidArgument || !strings.Contains(err.Error(), dbus.MethodListRulesPage) {
		t.Fatalf("ListRules of %d rules of 4 KiB: %v, want InvalidArgument naming %s", n, err, dbus.MethodListRulesPage)
	}
	rs, err := root.ListRules(ctx)
	if err != nil || len(rs) != n {
		t.Fatalf("client ListRules (paging): %d rules, %v; want %d", len(rs), err, n)
	}
	for i, r := range rs {
		if want := fmt.Sprintf("big%05d", i); r.ID != want || r.Name != name {
			t.Fatalf("rule %d: %s (name of %d bytes), want %s", i, r.ID, len(r.Name), want)
		}
	}
	if r, err := root.GetRule(ctx, "big00042"); err != nil || r.ID != "big00042" {
		t.Fatalf("GetRule: %+v %v", r.ID, err)
	}
	if !s.Connected() {
		t.Fatal("the daemon left the bus")
	}
	if _, err := root.GetStatus(ctx); err != nil {
		t.Fatalf("GetStatus after: %v", err)
	}
}
