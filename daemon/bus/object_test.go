package bus

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/introspect"
	"github.com/tollgate-fw/tollgate/dbus"
	"github.com/tollgate-fw/tollgate/shared"
)

func parseXML(t *testing.T) introspect.Node {
	t.Helper()
	var n introspect.Node
	if err := xml.Unmarshal([]byte(dbus.IntrospectionXML), &n); err != nil {
		t.Fatalf("parse the introspection XML: %v", err)
	}
	if len(n.Interfaces) == 0 || n.Interfaces[0].Name != dbus.Interface {
		t.Fatalf("first interface of the XML is not %s", dbus.Interface)
	}
	return n
}

// The exported Go methods are exactly the XML's methods, with the XML's
// argument signatures (the XML is the truth; this keeps the code to it).
func TestObjectMatchesXML(t *testing.T) {
	n := parseXML(t)
	want := map[string][2]string{}
	for _, m := range n.Interfaces[0].Methods {
		var in, out strings.Builder
		for _, a := range m.Args {
			if a.Direction == "out" {
				out.WriteString(a.Type)
			} else {
				in.WriteString(a.Type)
			}
		}
		want[m.Name] = [2]string{in.String(), out.String()}
	}
	senderT := reflect.TypeOf(godbus.Sender(""))
	errT := reflect.TypeOf((*godbus.Error)(nil))
	typ := reflect.TypeOf(&object{})
	got := map[string][2]string{}
	for i := range typ.NumMethod() {
		m := typ.Method(i)
		var in, out strings.Builder
		for j := 1; j < m.Type.NumIn(); j++ {
			if at := m.Type.In(j); at != senderT {
				in.WriteString(godbus.SignatureOfType(at).String())
			}
		}
		nout := m.Type.NumOut()
		if nout == 0 || m.Type.Out(nout-1) != errT {
			t.Errorf("method %s does not end in *dbus.Error", m.Name)
			continue
		}
		for j := range nout - 1 {
			out.WriteString(godbus.SignatureOfType(m.Type.Out(j)).String())
		}
		got[m.Name] = [2]string{in.String(), out.String()}
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("exported methods differ from the XML:\n got  %v\n want %v", got, want)
	}
	// Every member constant names something in the XML.
	members := map[string]bool{}
	for _, m := range n.Interfaces[0].Methods {
		members[m.Name] = true
	}
	for _, s := range n.Interfaces[0].Signals {
		members[s.Name] = true
	}
	for _, c := range []string{dbus.MethodGetStatus, dbus.MethodSetMode, dbus.MethodListRules, dbus.MethodListRulesPage, dbus.MethodGetRule, dbus.MethodAddRule,
		dbus.MethodUpdateRule, dbus.MethodDeleteRule, dbus.MethodExportRules, dbus.MethodImportRules,
		dbus.MethodRegisterAgent, dbus.MethodUnregisterAgent, dbus.MethodListPending, dbus.MethodAnswer,
		dbus.MethodRecentConnections, dbus.MethodExplain, dbus.SignalConnectionPending, dbus.SignalPendingResolved,
		dbus.SignalRulesChanged, dbus.SignalStatusChanged} {
		if !members[c] {
			t.Errorf("constant %s is not in the XML", c)
		}
	}
}

// unitServer is a server with a fake peer in place of the bus.
func unitServer(t *testing.T, p *fakePeer, opts Options) (*Server, *fakeBackend, *object) {
	t.Helper()
	be := newFakeBackend()
	seed(be)
	opts.Backend = be
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	s.connCtx, s.peer = context.Background(), p
	return s, be, &object{s: s}
}

func errNameOf(e *godbus.Error) string {
	if e == nil {
		return ""
	}
	return e.Name
}

func TestUnitAuthorization(t *testing.T) {
	p := &fakePeer{uids: map[string]uint32{":1.root": 0, ":1.a": uidA, ":1.b": uidB}}
	s, be, o := unitServer(t, p, Options{})
	v := godbus.MakeVariant
	rule := map[string]godbus.Variant{"action": v("allow"), "exe": v("/usr/bin/ssh"), "lifetime": v("forever")}

	// Polkit absent: only root manages.
	if e := o.SetMode(":1.a", "monitor"); errNameOf(e) != dbus.ErrorNotAuthorized {
		t.Fatalf("A SetMode: %v", e)
	}
	if e := o.SetMode(":1.root", "monitor"); e != nil {
		t.Fatalf("root SetMode: %v", e)
	}
	id, e := o.AddRule(":1.a", rule)
	if e != nil {
		t.Fatalf("A AddRule: %v", e)
	}
	rules, mode, _, _ := be.snapshot()
	if mode != "monitor" || rules[id].Owner != uidA {
		t.Fatalf("mode %s, A's new rule owned by %d", mode, rules[id].Owner)
	}
	if e := o.DeleteRule(":1.a", strings.Repeat("x", dbus.MaxIDLen+1)); errNameOf(e) != dbus.ErrorInvalidArgument {
		t.Fatalf("over-long id: %v", e)
	}
	if e := o.DeleteRule(":1.b", id); errNameOf(e) != dbus.ErrorNotFound {
		t.Fatalf("B deleting A's rule: %v, want NotFound", e)
	}
	if e := o.DeleteRule(":1.a", id); e != nil {
		t.Fatalf("A deleting its rule: %v", e)
	}
	be.put(shared.Rule{ID: "file", Action: shared.ActionAllow, ReadOnly: true, Source: "rules.d/x.toml", Enabled: true})
	if e := o.DeleteRule(":1.root", "file"); errNameOf(e) != dbus.ErrorNotAuthorized || !strings.Contains(e.Error(), "rules.d/x.toml") {
		t.Fatalf("root deleting a rules.d rule: %v", e)
	}
	// An unknown caller is refused.
	if _, e := o.GetStatus(":1.ghost"); errNameOf(e) != dbus.ErrorNotAuthorized {
		t.Fatalf("unknown caller: %v", e)
	}
	// Answer: only the uid's agent.
	if e := o.RegisterAgent(":1.b"); e != nil {
		t.Fatal(e)
	}
	if e := o.Answer(":1.b", 1, "allow", "once", "", nil); errNameOf(e) != dbus.ErrorNotAuthorized {
		t.Fatalf("B answering A's: %v", e)
	}
	if e := o.Answer(":1.b", 2, "allow", "until", "", nil); errNameOf(e) != dbus.ErrorInvalidArgument {
		t.Fatalf("until without a time: %v", e)
	}
	until := map[string]godbus.Variant{"until": v(time.Now().Add(time.Hour).UTC().Format(time.RFC3339))}
	if e := o.Answer(":1.b", 2, "allow", "until", "exe-any", until); e != nil {
		t.Fatalf("B answering its own: %v", e)
	}
	_ = s

	// Polkit present and granting B manage.
	p.polkit = map[uint32]map[string]bool{uidB: {ActionManage: true, ActionOwnRules: true}, uidA: {}}
	if e := o.SetMode(":1.b", "disabled"); e != nil {
		t.Fatalf("B with manage SetMode: %v", e)
	}
	if _, e := o.AddRule(":1.a", rule); errNameOf(e) != dbus.ErrorNotAuthorized {
		t.Fatalf("A without own-rules AddRule: %v", e)
	}
	if e := o.DeleteRule(":1.b", "ra"); e != nil {
		t.Fatalf("B with manage deleting A's rule: %v", e)
	}
}

func TestUnitDecodeRuleBounds(t *testing.T) {
	v := godbus.MakeVariant
	for name, f := range map[string]map[string]godbus.Variant{
		"empty":        {},
		"no action":    {"exe": v("/x")},
		"unknown":      {"action": v("allow"), "x": v("y")},
		"deep":         {"action": v(map[string]godbus.Variant{"a": v(map[string]godbus.Variant{"b": v(map[string]godbus.Variant{"c": v("d")})})})},
		"long key":     {strings.Repeat("k", dbus.MaxKeyLen+1): v("x")},
		"read_only":    {"action": v("allow"), "read_only": v(true)},
		"float owner":  {"action": v("allow"), "owner": v(1.5)},
		"list of many": {"action": v("allow"), "exe": v(make([]string, dbus.MaxListLen+1))},
	} {
		if _, _, err := decodeRule(f); !errors.Is(err, dbus.ErrInvalidArgument) {
			t.Errorf("%s: %v, want InvalidArgument", name, err)
		}
	}
	r, ownerSet, err := decodeRule(map[string]godbus.Variant{"action": v("deny"), "owner": v(uint32(7)), "port": v("443"), "id": v("ignored")})
	if err != nil || !ownerSet || r.Owner != 7 || r.Match.Port != (shared.PortRange{Lo: 443, Hi: 443}) || r.ID != "" {
		t.Fatalf("good rule: %+v %v %v", r, ownerSet, err)
	}
}

func TestLimiter(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newLimiter(2, 3, func() time.Time { return now })
	for i := range 3 {
		if !l.allow(5) {
			t.Fatalf("call %d within the burst refused", i)
		}
	}
	if l.allow(5) {
		t.Fatal("call past the burst allowed")
	}
	if !l.allow(6) {
		t.Fatal("another uid limited by the first")
	}
	now = now.Add(500 * time.Millisecond) // one token at 2/s
	if !l.allow(5) || l.allow(5) {
		t.Fatal("refill is not 2 a second")
	}
	for uid := range uint32(maxBuckets + 10) {
		l.allow(uid + 100)
	}
	if len(l.buckets) > maxBuckets+1 {
		t.Fatalf("%d buckets: not bounded", len(l.buckets))
	}
}

func TestEntitled(t *testing.T) {
	s, _, _ := unitServer(t, &fakePeer{}, Options{})
	s.agents = map[string]agent{":1.a": {uid: uidA}, ":1.a2": {uid: uidA}, ":1.root": {uid: 0, admin: true}}
	if got := s.Entitled(uidA); len(got) != 2 {
		t.Fatalf("A's agents: %v", got)
	}
	if got := s.Entitled(1000); len(got) != 0 {
		t.Fatalf("uid 1000 (no agent, not a system user) offered to %v", got)
	}
	if got := s.Entitled(110); len(got) != 1 || got[0] != ":1.root" {
		t.Fatalf("system user 110 offered to %v, want the admin agent", got)
	}
	if got := s.Entitled(-1); len(got) != 1 {
		t.Fatalf("unknown uid offered to %v, want the admin agent", got)
	}
}

// errPeer is a peer whose polkit fails.
type errPeer struct{ fakePeer }

func (p *errPeer) Authorized(ctx context.Context, name, action string, interactive bool) (bool, bool, error) {
	return false, true, errors.New("polkit exploded")
}

// When polkit cannot answer, nothing that needs it is allowed (fail
// closed); root still needs no polkit.
func TestUnitPolkitFailureRefuses(t *testing.T) {
	p := &errPeer{fakePeer{uids: map[string]uint32{":1.root": 0, ":1.a": uidA}}}
	be := newFakeBackend()
	seed(be)
	s, err := New(Options{Backend: be})
	if err != nil {
		t.Fatal(err)
	}
	s.connCtx, s.peer = context.Background(), p
	o := &object{s: s}
	rule := map[string]godbus.Variant{"action": godbus.MakeVariant("allow"), "exe": godbus.MakeVariant("/x")}
	if _, e := o.AddRule(":1.a", rule); errNameOf(e) != dbus.ErrorNotAuthorized {
		t.Fatalf("own rule with polkit failing: %v", e)
	}
	if e := o.SetMode(":1.a", "monitor"); errNameOf(e) != dbus.ErrorNotAuthorized {
		t.Fatalf("SetMode with polkit failing: %v", e)
	}
	if _, e := o.AddRule(":1.root", rule); e != nil {
		t.Fatalf("root with polkit failing: %v", e)
	}
	// With polkit disabled by configuration, users keep their own rules
	// and only root manages.
	s.opts.PolkitDisabled = true
	if _, e := o.AddRule(":1.a", rule); e != nil {
		t.Fatalf("own rule, polkit disabled: %v", e)
	}
	if e := o.SetMode(":1.a", "monitor"); errNameOf(e) != dbus.ErrorNotAuthorized {
		t.Fatalf("SetMode, polkit disabled: %v", e)
	}
	if _, mode, _, _ := be.snapshot(); mode != "enforcing" {
		t.Fatalf("mode changed to %s", mode)
	}
}

// Calls while the bus is away are Busy, not a crash.
func TestUnitNoBusIsBusy(t *testing.T) {
	s, err := New(Options{Backend: newFakeBackend()})
	if err != nil {
		t.Fatal(err)
	}
	o := &object{s: s}
	if _, e := o.GetStatus(":1.a"); errNameOf(e) != dbus.ErrorBusy {
		t.Fatalf("no bus: %v", e)
	}
	if n := s.ConnectionPending(shared.Pending{ID: 1}); n != 0 || s.Connected() {
		t.Fatalf("no bus: sent to %d, connected %v", n, s.Connected())
	}
	s.RulesChanged() // no bus: nothing to do, no panic
}

func TestExplainAsksAboutTheCallersOwnConnectionsOnly(t *testing.T) {
	p := &fakePeer{uids: map[string]uint32{":1.root": 0, ":1.a": uidA, ":1.b": uidB}}
	_, be, o := unitServer(t, p, Options{})
	be.put(shared.Rule{ID: "a-rule", Action: shared.ActionAllow, Owner: uidA, Enabled: true, Match: shared.Match{Exe: "/usr/bin/curl"}})
	be.put(shared.Rule{ID: "sys", Action: shared.ActionDeny, Owner: shared.OwnerSystem, Enabled: true})
	conn := dbus.Variants(shared.Connection{UID: uidB, Exe: "/usr/bin/curl", Proto: shared.ProtoTCP, RemotePort: 443}.Fields())

	text, cands, e := o.Explain(":1.a", conn)
	if e != nil {
		t.Fatal(e)
	}
	if text != fmt.Sprintf("uid %d", uidA) {
		t.Errorf("A asked about uid %s, want its own uid %d", text, uidA)
	}
	ids := map[string]bool{}
	for _, f := range cands {
		ff, err := dbus.Fields(f)
		if err != nil {
			t.Fatal(err)
		}
		c, err := shared.CandidateFromFields(ff)
		if err != nil {
			t.Fatal(err)
		}
		ids[c.Rule.ID] = true
	}
	if !ids["a-rule"] || !ids["sys"] {
		t.Errorf("A's explanation lacks its own or the system rule: %v", ids)
	}
	if _, cands, _ = o.Explain(":1.b", conn); len(cands) == 0 {
		t.Fatal("B got no candidates")
	}
	for _, f := range cands {
		ff, _ := dbus.Fields(f)
		if c, _ := shared.CandidateFromFields(ff); c.Rule.ID == "a-rule" {
			t.Error("B's explanation shows A's rule")
		}
	}
	if text, _, _ := o.Explain(":1.root", conn); text != fmt.Sprintf("uid %d", uidB) {
		t.Errorf("root's question was changed: %s", text)
	}
	if _, _, e := o.Explain(":1.a", map[string]godbus.Variant{"uid": godbus.MakeVariant("x")}); errNameOf(e) != dbus.ErrorInvalidArgument {
		t.Errorf("malformed connection: %v", e)
	}
}

// pageAll walks ListRulesPage as name with limit, returning the ids.
func pageAll(t *testing.T, o *object, name godbus.Sender, limit uint32) []string {
	t.Helper()
	var ids []string
	after := ""
	for pages := 0; ; pages++ {
		if pages > 10_000 {
			t.Fatal("ListRulesPage never ends")
		}
		q := map[string]godbus.Variant{"limit": godbus.MakeVariant(limit)}
		if after != "" {
			q["after"] = godbus.MakeVariant(after)
		}
		rs, next, e := o.ListRulesPage(name, q)
		if e != nil {
			t.Fatalf("%s ListRulesPage after %q: %v", name, after, e)
		}
		if limit > 0 && len(rs) > int(limit) {
			t.Fatalf("page of %d for limit %d", len(rs), limit)
		}
		for _, f := range rs {
			ids = append(ids, f["id"].Value().(string))
		}
		if next == "" {
			return ids
		}
		if next <= after {
			t.Fatalf("next %q after %q", next, after)
		}
		after = next
	}
}

func TestUnitRulePagesAndGetRule(t *testing.T) {
	p := &fakePeer{uids: map[string]uint32{":1.root": 0, ":1.a": uidA, ":1.b": uidB}}
	_, be, o := unitServer(t, p, Options{RateLimit: -1})
	for i := range 30 {
		owner := []uint32{shared.OwnerSystem, uidA, uidB}[i%3]
		be.put(shared.Rule{ID: fmt.Sprintf("p%02d", i), Action: shared.ActionAllow, Lifetime: shared.LifetimeForever,
			Owner: owner, Enabled: true, Match: shared.Match{Exe: fmt.Sprintf("/bin/p%d", i)}})
	}
	visibleTo := func(uid uint32) []string {
		var ids []string
		for id, r := range be.rules {
			if uid == 0 || r.Owner == uid || r.Owner == shared.OwnerSystem {
				ids = append(ids, id)
			}
		}
		slices.Sort(ids)
		return ids
	}
	for _, c := range []struct {
		name godbus.Sender
		uid  uint32
	}{{":1.root", 0}, {":1.a", uidA}, {":1.b", uidB}} {
		want := visibleTo(c.uid)
		for _, limit := range []uint32{0, 1, 4, 7, 1000} {
			if got := pageAll(t, o, c.name, limit); !slices.Equal(got, want) {
				t.Errorf("%s paging by %d: %v, want %v", c.name, limit, got, want)
			}
		}
		all, e := o.ListRules(c.name)
		if e != nil || len(all) != len(want) {
			t.Errorf("%s ListRules: %d rules, %v; want %d", c.name, len(all), e, len(want))
		}
	}
	v := godbus.MakeVariant
	for _, q := range []map[string]godbus.Variant{
		{"limit": v("10")}, {"limit": v(int32(10))}, {"after": v(uint32(1))},
		{"after": v(strings.Repeat("x", dbus.MaxIDLen+1))}, {"offset": v(uint32(10))},
	} {
		if _, _, e := o.ListRulesPage(":1.a", q); errNameOf(e) != dbus.ErrorInvalidArgument {
			t.Errorf("ListRulesPage(%v): %v, want InvalidArgument", q, e)
		}
	}
	if f, e := o.GetRule(":1.a", "ra"); e != nil || f["exe"].Value() != "/usr/bin/curl" {
		t.Errorf("A GetRule(ra): %v %v", f, e)
	}
	if _, e := o.GetRule(":1.a", "sys"); e != nil {
		t.Errorf("A GetRule(sys): %v", e)
	}
	for _, id := range []string{"rb", "nope"} {
		if _, e := o.GetRule(":1.a", id); errNameOf(e) != dbus.ErrorNotFound {
			t.Errorf("A GetRule(%s): %v, want NotFound (B's rule and no rule alike)", id, e)
		}
	}
	if _, e := o.GetRule(":1.root", "rb"); e != nil {
		t.Errorf("root GetRule(rb): %v", e)
	}
	for _, id := range []string{"", strings.Repeat("x", dbus.MaxIDLen+1)} {
		if _, e := o.GetRule(":1.a", id); errNameOf(e) != dbus.ErrorInvalidArgument {
			t.Errorf("GetRule(%d bytes): %v, want InvalidArgument", len(id), e)
		}
	}
}

// More rules than one message carries: ListRules says so instead of
// sending a reply the bus would refuse (and drop the daemon for), and
// pages stop short of their byte bound yet walk them all.
func TestUnitRulesPastOneReply(t *testing.T) {
	p := &fakePeer{uids: map[string]uint32{":1.root": 0}}
	_, be, o := unitServer(t, p, Options{RateLimit: -1})
	name := strings.Repeat("n", dbus.MaxStringLen)
	n := dbus.MaxReplyBytes/dbus.MaxStringLen + 100
	for i := range n {
		be.put(shared.Rule{ID: fmt.Sprintf("big%05d", i), Name: name, Action: shared.ActionDeny, Lifetime: shared.LifetimeForever,
			Enabled: true, Match: shared.Match{Exe: "/usr/bin/x"}})
	}
	_, e := o.ListRules(":1.root")
	if errNameOf(e) != dbus.ErrorInvalidArgument || !strings.Contains(e.Error(), dbus.MethodListRulesPage) {
		t.Fatalf("ListRules of %d rules of 4 KiB: %v, want InvalidArgument naming %s", n, e, dbus.MethodListRulesPage)
	}
	rs, next, e := o.ListRulesPage(":1.root", map[string]godbus.Variant{"limit": godbus.MakeVariant(uint32(dbus.PageMax))})
	if e != nil || len(rs) >= dbus.PageMax || next == "" {
		t.Fatalf("first page: %d rules, next %q, %v; want fewer than %d (the byte bound) and a next", len(rs), next, e, dbus.PageMax)
	}
	size := 0
	for _, f := range rs {
		size += len(f["name"].Value().(string))
	}
	if size > dbus.PageBytes {
		t.Errorf("page carries %d bytes of names, bound %d", size, dbus.PageBytes)
	}
	if got := pageAll(t, o, ":1.root", dbus.PageMax); len(got) != len(be.rules) {
		t.Errorf("paged %d rules of %d", len(got), len(be.rules))
	}
	be.exportPad = strings.Repeat("#", dbus.MaxReplyBytes)
	if _, e := o.ExportRules(":1.root"); errNameOf(e) != dbus.ErrorInvalidArgument {
		t.Errorf("ExportRules of %d MiB: %v, want InvalidArgument", dbus.MaxReplyBytes>>20, e)
	}
}

// A log reply stops short of the bus's message bound: the newest entries,
// as many as fit.
func TestUnitRecentConnectionsStayWithinOneReply(t *testing.T) {
	p := &fakePeer{uids: map[string]uint32{":1.root": 0}}
	_, be, o := unitServer(t, p, Options{RateLimit: -1})
	long := strings.Repeat("c", shared.MaxProcessText)
	n := dbus.MaxReplyBytes/shared.MaxProcessText + 500
	be.log = nil
	for i := range n {
		be.log = append(be.log, shared.LogEntry{Connection: shared.Connection{ID: uint64(n - i), UID: 1000, Cmdline: long},
			Verdict: shared.Verdict{Action: shared.ActionAllow}})
	}
	out, e := o.RecentConnections(":1.root", map[string]godbus.Variant{"limit": godbus.MakeVariant(uint32(shared.MaxLogLimit))})
	if e != nil {
		t.Fatal(e)
	}
	size := 0
	for _, f := range out {
		size += len(f["cmdline"].Value().(string))
	}
	if len(out) == 0 || len(out) >= n || size > dbus.MaxReplyBytes {
		t.Fatalf("%d of %d entries, %d bytes of command lines; want fewer than all, within %d", len(out), n, size, dbus.MaxReplyBytes)
	}
	if id := out[0]["id"].Value().(uint64); id != uint64(n) {
		t.Errorf("first entry %d, want the newest (%d)", id, n)
	}
}
