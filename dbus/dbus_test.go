package dbus

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/xml"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/introspect"
	"github.com/tollgate-fw/tollgate/shared"
)

// wire sends body through the D-Bus wire format and back, as the bus does.
func wire(t testing.TB, body ...any) []any {
	t.Helper()
	msg := callMessage(body...)
	var buf bytes.Buffer
	if err := msg.EncodeTo(&buf, binary.LittleEndian); err != nil {
		t.Fatalf("encode: %v", err)
	}
	got, err := godbus.DecodeMessage(&buf)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	return got.Body
}

func callMessage(body ...any) *godbus.Message {
	return &godbus.Message{
		Type: godbus.TypeMethodCall,
		Headers: map[godbus.HeaderField]godbus.Variant{
			godbus.FieldPath:        godbus.MakeVariant(ObjectPath),
			godbus.FieldInterface:   godbus.MakeVariant(Interface),
			godbus.FieldMember:      godbus.MakeVariant(MethodAddRule),
			godbus.FieldDestination: godbus.MakeVariant(BusName),
			godbus.FieldSignature:   godbus.MakeVariant(godbus.SignatureOf(body...)),
		},
		Body: body,
	}
}

func TestErrorNamesRoundTrip(t *testing.T) {
	for _, n := range errorNames {
		sent := ToDBusError(fmt.Errorf("doing a thing: %w", n.err))
		if sent.Name != n.name {
			t.Errorf("%v sent as %s, want %s", n.err, sent.Name, n.name)
		}
		got := FromDBusError(*sent)
		if !errors.Is(got, n.err) {
			t.Errorf("%s did not come back as %v: %v", n.name, n.err, got)
		}
		if got.Error() != "doing a thing: "+n.err.Error() {
			t.Errorf("message %q lost", got.Error())
		}
		if p := FromDBusError(sent); !errors.Is(p, n.err) {
			t.Errorf("pointer form of %s: %v", n.name, p)
		}
	}
	if e := ToDBusError(errors.New("disk full")); e.Name != ErrorFailed {
		t.Errorf("plain error sent as %s", e.Name)
	}
	other := FromDBusError(godbus.Error{Name: "org.freedesktop.DBus.Error.AccessDenied", Body: []any{"no"}})
	for _, n := range errorNames {
		if errors.Is(other, n.err) {
			t.Errorf("AccessDenied became %v", n.err)
		}
	}
	if ToDBusError(nil) != nil {
		t.Error("nil error made a D-Bus error")
	}
}

func TestXMLNamesTheConstants(t *testing.T) {
	var n introspect.Node
	if err := xml.Unmarshal([]byte(IntrospectionXML), &n); err != nil {
		t.Fatal(err)
	}
	if n.Interfaces[0].Name != Interface {
		t.Fatalf("first interface %s", n.Interfaces[0].Name)
	}
	if len(n.Interfaces[0].Methods) != 16 || len(n.Interfaces[0].Signals) != 4 {
		t.Fatalf("%d methods, %d signals", len(n.Interfaces[0].Methods), len(n.Interfaces[0].Signals))
	}
}

func TestRuleRoundTripsOverTheWire(t *testing.T) {
	uid := uint32(1000)
	r := shared.Rule{
		ID: "abc", Name: "curl", Action: shared.ActionAllow, Lifetime: shared.LifetimeUntil,
		Until: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC), Owner: 1000, Enabled: true, Priority: -3,
		Match: shared.Match{Exe: "/usr/bin/curl", UID: &uid, Proto: shared.ProtoTCP, Host: "*.example.org",
			IP: netip.MustParsePrefix("10.0.0.0/8"), Port: shared.PortRange{Lo: 8000, Hi: 8100}},
		Hits: 7,
	}
	body := wire(t, Variants(r.Fields()))
	f, err := Fields(body[0].(map[string]godbus.Variant))
	if err != nil {
		t.Fatal(err)
	}
	got, err := shared.RuleFromFields(f)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, r) {
		t.Fatalf("round trip:\n got  %+v\n want %+v", got, r)
	}
}

func TestRecordsRoundTripOverTheWire(t *testing.T) {
	c := shared.Connection{
		ID: 9, Time: time.Date(2026, 11, 21, 5, 0, 0, 123, time.UTC), Direction: shared.DirectionOut,
		Proto: shared.ProtoTCP, ProtoNum: 6, LocalIP: netip.MustParseAddr("192.0.2.1"), LocalPort: 40000,
		RemoteIP: netip.MustParseAddr("2001:db8::1"), RemotePort: 443, Iface: "eth0", UID: 1000, GID: -1,
		PID: 42, PIDStart: 99, PPID: 1, Exe: "/usr/bin/curl", Cmdline: "curl x", Unit: "user@1000.service",
		App: "flatpak:org.x", User: "alice", Attribution: shared.AttributedProcess, Hosts: []string{"a.example", "b.example"},
	}
	p := shared.Pending{ID: 5, Connection: c, Count: 3, Since: c.Time, Deadline: c.Time.Add(30 * time.Second)}
	body := wire(t, VariantsList([]map[string]any{p.Fields()}))
	fs, err := FieldsList(body[0].([]map[string]godbus.Variant))
	if err != nil {
		t.Fatal(err)
	}
	gotP, err := shared.PendingFromFields(fs[0])
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(gotP, p) {
		t.Fatalf("pending:\n got  %+v\n want %+v", gotP, p)
	}

	e := shared.LogEntry{Connection: c, Verdict: shared.Verdict{Action: shared.ActionDeny, RuleID: "r1", Reason: "because", Monitor: true}}
	body = wire(t, Variants(e.Fields()))
	f, err := Fields(body[0].(map[string]godbus.Variant))
	if err != nil {
		t.Fatal(err)
	}
	gotE, err := shared.LogEntryFromFields(f)
	if err != nil || !reflect.DeepEqual(gotE, e) {
		t.Fatalf("log entry: %v\n got  %+v\n want %+v", err, gotE, e)
	}

	st := shared.Status{Mode: "monitor", Version: "1.0", DefaultAction: shared.ActionDeny, Rules: 4, Pending: 1, Agents: 2,
		QueueWaiting: 3, QueueDropped: 4, QueueUserDropped: 5, Decided: 6, Allowed: 7, Denied: 8}
	body = wire(t, Variants(st.Fields()))
	f, err = Fields(body[0].(map[string]godbus.Variant))
	if err != nil {
		t.Fatal(err)
	}
	gotS, err := shared.StatusFromFields(f)
	if err != nil || gotS != st {
		t.Fatalf("status: %v %+v", err, gotS)
	}

	u := uint32(7)
	lf := shared.LogFilter{Limit: 10, Since: c.Time, Action: shared.ActionAllow, Exe: "/x", Host: "h", UID: &u}
	body = wire(t, Variants(lf.Fields()))
	f, err = Fields(body[0].(map[string]godbus.Variant))
	if err != nil {
		t.Fatal(err)
	}
	gotF, err := shared.LogFilterFromFields(f)
	if err != nil || !reflect.DeepEqual(gotF, lf) {
		t.Fatalf("filter: %v %+v", err, gotF)
	}

	a := shared.Answer{PendingID: 1, Action: shared.ActionAllow, Lifetime: shared.LifetimeUntil, Scope: shared.ScopeAnyExeHost, Until: c.Time, System: true}
	body = wire(t, Variants(a.Options()))
	f, err = Fields(body[0].(map[string]godbus.Variant))
	if err != nil {
		t.Fatal(err)
	}
	gotA, err := shared.ParseAnswer(1, "allow", "until", "any-exe-host", f)
	if err != nil || gotA != a {
		t.Fatalf("answer: %v %+v", err, gotA)
	}
}

func TestParseSignal(t *testing.T) {
	st := shared.Status{Mode: "enforcing"}
	for _, tc := range []struct {
		sig  *godbus.Signal
		ok   bool
		name string
	}{
		{&godbus.Signal{Path: ObjectPath, Name: Interface + ".StatusChanged", Body: []any{Variants(st.Fields())}}, true, SignalStatusChanged},
		{&godbus.Signal{Path: ObjectPath, Name: Interface + ".PendingResolved", Body: []any{uint64(3), "deny"}}, true, SignalPendingResolved},
		{&godbus.Signal{Path: ObjectPath, Name: Interface + ".RulesChanged"}, true, SignalRulesChanged},
		{&godbus.Signal{Path: ObjectPath, Name: Interface + ".PendingResolved", Body: []any{"3", "deny"}}, false, ""},
		{&godbus.Signal{Path: ObjectPath, Name: Interface + ".ConnectionPending", Body: []any{"x"}}, false, ""},
		{&godbus.Signal{Path: "/other", Name: Interface + ".RulesChanged"}, false, ""},
		{&godbus.Signal{Path: ObjectPath, Name: "org.other.RulesChanged"}, false, ""},
		{nil, false, ""},
		{&godbus.Signal{Name: "org.freedesktop.DBus.NameOwnerChanged", Body: []any{BusName, ":1.4", ""}}, true, SignalDaemonChanged},
		{&godbus.Signal{Name: "org.freedesktop.DBus.NameOwnerChanged", Body: []any{"org.other", "", ":1.5"}}, false, ""},
	} {
		s, ok := ParseSignal(tc.sig)
		if ok != tc.ok || s.Name != tc.name {
			t.Errorf("%+v: %+v %v", tc.sig, s, ok)
		}
	}
}

func TestFieldsBounds(t *testing.T) {
	v := godbus.MakeVariant
	deep := map[string]godbus.Variant{"x": v("y")}
	for range MaxDepth {
		deep = map[string]godbus.Variant{"n": v(deep)}
	}
	for name, f := range map[string]map[string]godbus.Variant{
		"deep":        deep,
		"empty key":   {"": v("x")},
		"long string": {"k": v(string(make([]byte, MaxStringLen+1)))},
		"fd":          {"k": v(godbus.UnixFDIndex(0))},
		"signature":   {"k": v(godbus.SignatureOf("x"))},
		"long list":   {"k": v(make([]string, MaxListLen+1))},
	} {
		if _, err := Fields(f); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%s: %v, want ErrInvalidArgument", name, err)
		}
	}
}

// FuzzFields decodes arbitrary bytes as a D-Bus message and reads its
// first argument as a rule the way the daemon does: bytes → message →
// Fields (unwrap, bounds) → RuleFromFields → Validate. Nothing may panic,
// and a rule that is accepted must survive its own encoding unchanged.
func FuzzFields(f *testing.F) {
	uid := uint32(5)
	for _, r := range []shared.Rule{
		{Action: shared.ActionAllow, Enabled: true, Match: shared.Match{Exe: "/usr/bin/curl", Host: "example.org", Port: shared.PortRange{Lo: 443, Hi: 443}}},
		{Action: shared.ActionDeny, Lifetime: shared.LifetimeForever, Owner: 1000, Match: shared.Match{UID: &uid, IP: netip.MustParsePrefix("10.0.0.0/8")}},
	} {
		var buf bytes.Buffer
		if err := callMessage(Variants(r.Fields())).EncodeTo(&buf, binary.LittleEndian); err != nil {
			f.Fatal(err)
		}
		f.Add(buf.Bytes())
	}
	var buf bytes.Buffer
	nested := map[string]any{"connection": map[string]any{"uid": int64(1)}, "hosts": []string{"a"}}
	if err := callMessage(Variants(nested)).EncodeTo(&buf, binary.BigEndian); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		msg, err := godbus.DecodeMessage(bytes.NewReader(data))
		if err != nil || len(msg.Body) == 0 {
			return
		}
		raw, ok := msg.Body[0].(map[string]godbus.Variant)
		if !ok {
			return
		}
		fields, err := Fields(raw)
		if err != nil {
			if !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("Fields error without ErrInvalidArgument: %v", err)
			}
			return
		}
		// The other records decode without panicking too.
		_, _ = shared.PendingFromFields(fields)
		_, _ = shared.LogEntryFromFields(fields)
		_, _ = shared.StatusFromFields(fields)
		_, _ = shared.LogFilterFromFields(fields)
		r, err := shared.RuleFromFields(fields)
		if err != nil {
			return
		}
		r.Normalize()
		if r.Validate() != nil {
			return
		}
		back, err := Fields(Variants(r.Fields()))
		if err != nil {
			t.Fatalf("an accepted rule does not pass its own bounds: %v", err)
		}
		again, err := shared.RuleFromFields(back)
		if err != nil {
			t.Fatalf("an accepted rule does not decode from its own fields: %v", err)
		}
		again.Normalize()
		if !reflect.DeepEqual(again, r) {
			t.Fatalf("rule changed by its own encoding:\n%+v\n%+v", r, again)
		}
	})
}

// BenchmarkRuleFromWire is the daemon's cost of reading one AddRule
// argument: unwrap the variants, bound them, decode the rule.
func BenchmarkRuleFromWire(b *testing.B) {
	r := shared.Rule{Action: shared.ActionAllow, Lifetime: shared.LifetimeForever, Enabled: true,
		Match: shared.Match{Exe: "/usr/bin/curl", Host: "example.org", Proto: shared.ProtoTCP, Port: shared.PortRange{Lo: 443, Hi: 443}}}
	raw := wire(b, Variants(r.Fields()))[0].(map[string]godbus.Variant)
	b.ReportAllocs()
	for b.Loop() {
		f, err := Fields(raw)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := shared.RuleFromFields(f); err != nil {
			b.Fatal(err)
		}
	}
}

func TestDialGivesUpWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Dial(ctx, "unix:path=/nonexistent/tollgate-test.sock"); err == nil {
		t.Fatal("Dial to nothing succeeded")
	}
	if _, err := Dial(context.Background(), "unix:path=/nonexistent/tollgate-test.sock"); err == nil || !strings.Contains(err.Error(), "/nonexistent/tollgate-test.sock") {
		t.Fatalf("Dial error does not name the address: %v", err)
	}
}

func TestAnswerAndFilterRefuseBadInput(t *testing.T) {
	for name, f := range map[string]func() error{
		"bad action":   func() error { _, err := shared.ParseAnswer(1, "maybe", "once", "", nil); return err },
		"bad lifetime": func() error { _, err := shared.ParseAnswer(1, "allow", "always", "", nil); return err },
		"bad scope":    func() error { _, err := shared.ParseAnswer(1, "allow", "once", "everything", nil); return err },
		"unknown opt": func() error {
			_, err := shared.ParseAnswer(1, "allow", "once", "", map[string]any{"x": true})
			return err
		},
		"until no time": func() error { _, err := shared.ParseAnswer(1, "allow", "until", "", nil); return err },
		"time no until": func() error {
			_, err := shared.ParseAnswer(1, "allow", "once", "", map[string]any{"until": "2030-01-01T00:00:00Z"})
			return err
		},
		"filter unknown": func() error { _, err := shared.LogFilterFromFields(map[string]any{"colour": "red"}); return err },
		"filter limit": func() error {
			_, err := shared.LogFilterFromFields(map[string]any{"limit": uint32(shared.MaxLogLimit + 1)})
			return err
		},
	} {
		if f() == nil {
			t.Errorf("%s accepted", name)
		}
	}
	a, err := shared.ParseAnswer(1, "deny", "forever", "", nil)
	if err != nil || a.Scope != shared.ScopeExeHostPort {
		t.Fatalf("default scope: %+v %v", a, err)
	}
}

// WireSize bounds what the encoder writes for every kind of record, and
// not wildly: a reply sized by it is refused for being big only when it is.
func TestWireSizeBoundsTheEncoding(t *testing.T) {
	c := shared.Connection{ID: 9, Time: time.Date(2026, 11, 21, 5, 0, 0, 123, time.UTC), Direction: shared.DirectionOut,
		Proto: shared.ProtoTCP, LocalIP: netip.MustParseAddr("192.0.2.1"), RemoteIP: netip.MustParseAddr("2001:db8::1"),
		RemotePort: 443, UID: 1000, PID: 42, Exe: "/usr/bin/curl", Cmdline: strings.Repeat("c", 3000),
		Hosts: []string{"a.example", "b.example", strings.Repeat("h", 200)}}
	records := []map[string]any{
		{},
		{"a": "", "b": uint32(1), "c": true, "d": []string{}, "e": int64(-1)},
		(shared.Rule{ID: "r", Name: "n", Action: shared.ActionAllow, Lifetime: shared.LifetimeForever, Enabled: true,
			Match: shared.Match{Exe: "/usr/bin/x", Host: "*.example.org", Port: shared.PortRange{Lo: 1, Hi: 2}}}).Fields(),
		(shared.Pending{ID: 5, Connection: c, Count: 3}).Fields(),
		(shared.LogEntry{Connection: c, Verdict: shared.Verdict{Action: shared.ActionDeny, Reason: "r"}}).Fields(),
	}
	for i, f := range records {
		// Each against the same container empty: the difference (plus the
		// array header WireSize counts) is the record's.
		for _, pair := range [][2]any{
			{Variants(f), Variants(map[string]any{})},
			{VariantsList([]map[string]any{f, f, f}), VariantsList(nil)},
		} {
			body, none := pair[0], pair[1]
			var empty, buf bytes.Buffer
			if err := callMessage(none).EncodeTo(&empty, binary.LittleEndian); err != nil {
				t.Fatal(err)
			}
			if err := callMessage(body).EncodeTo(&buf, binary.LittleEndian); err != nil {
				t.Fatal(err)
			}
			got := buf.Len() - empty.Len() + 8
			want := WireSize(f)
			if _, list := body.([]map[string]godbus.Variant); list {
				want = 8 + 3*(8+WireSize(f))
			}
			if got > want || want > 2*got+64 {
				t.Errorf("record %d (%T): encoded %d bytes, WireSize says %d", i, body, got, want)
			}
		}
	}
}
