package rules

import (
	"math"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/tollgate-fw/tollgate/shared"
)

// oddRules are rules of every shape the compact form must give back
// exactly: every field set, values without a code, times with a zone or
// a monotonic reading, unmasked and mapped prefixes, hosts that need
// normalizing.
func oddRules() []shared.Rule {
	u := func(v uint32) *uint32 { return &v }
	berlin := time.FixedZone("CET", 3600)
	return []shared.Rule{
		{},
		{ID: "plain", Name: "n", Action: shared.ActionAllow, Lifetime: shared.LifetimeForever, Enabled: true, Source: "store",
			Created: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC), Updated: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
			Match: shared.Match{Exe: "/usr/bin/a", Proto: shared.ProtoTCP, Port: shared.PortRange{Lo: 443, Hi: 443}, IP: netip.MustParsePrefix("10.1.0.0/16")}},
		{ID: "full", Name: "everything", Action: shared.ActionReject, Lifetime: shared.LifetimeUntil, Until: time.Date(2030, 5, 6, 7, 8, 9, 10, time.UTC),
			Owner: 1000, Enabled: false, Priority: math.MinInt32, Note: "note", PID: 7, PIDStart: 1 << 50, Session: ":1.4",
			Source: "rules.d/x.toml", ReadOnly: true, Created: time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Nanosecond),
			Updated: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC), Hits: math.MaxUint64, LastHit: time.Date(2026, 3, 1, 0, 0, 0, 0, berlin),
			Match: shared.Match{Exe: "/opt/*/bin/x", ExeSHA256: strings.Repeat("ab", 32), Cmdline: "x *", Unit: "x-*.service", UID: u(0), GID: u(math.MaxUint32),
				Direction: shared.DirectionIn, Proto: shared.ProtoAny, Host: "*.Example.ORG.", IP: netip.MustParsePrefix("::ffff:10.1.2.3/104"),
				Port: shared.PortRange{Lo: 1, Hi: 65535}, LocalPort: shared.PortRange{Lo: 22, Hi: 22}, Iface: "eth0"}},
		{ID: "raw", Action: "maybe", Lifetime: "sometimes", Match: shared.Match{Direction: "sideways", Proto: "sctp", Host: ".", IP: netip.MustParsePrefix("10.1.2.3/8")}},
		{ID: "zone", Created: time.Date(2026, 1, 2, 3, 4, 5, 0, berlin), Updated: time.Now(), Match: shared.Match{IP: netip.MustParsePrefix("2001:db8::1/128")}},
		{ID: "v4", Match: shared.Match{IP: netip.MustParsePrefix("192.0.2.7/32"), Host: "Example.org"}},
		{ID: "big", Priority: math.MaxInt64},
	}
}

func TestCompactGivesRulesBack(t *testing.T) {
	in := oddRules()
	s := NewSet(in)
	for i := range in {
		if got := s.At(i); !reflect.DeepEqual(got, in[i]) {
			t.Errorf("rule %d:\n got  %+v\n want %+v", i, got, in[i])
		}
		if p, ok := s.Rule(in[i].ID); ok && i > 0 && !reflect.DeepEqual(*p, in[i]) {
			t.Errorf("Rule(%q) = %+v", in[i].ID, *p)
		}
		if v := s.View(i); v.ID() != in[i].ID || v.Owner() != in[i].Owner || v.ReadOnly() != in[i].ReadOnly ||
			v.Lifetime() != in[i].Lifetime || v.Session() != in[i].Session || !reflect.DeepEqual(v.Rule(), in[i]) {
			t.Errorf("View(%d) disagrees with %+v", i, in[i])
		}
	}
	var all []shared.Rule
	for r := range s.All() {
		all = append(all, *r)
	}
	if !reflect.DeepEqual(all, in) {
		t.Error("All does not give the rules back")
	}
}

// TestCompactMatchesLikeTheRule: the normalized host and prefix are what is
// matched, the given ones what is given back.
func TestCompactMatchesLikeTheRule(t *testing.T) {
	s := NewSet([]shared.Rule{
		allowR("wild", shared.Match{Host: "*.Example.ORG."}),
		allowR("mapped", shared.Match{IP: netip.MustParsePrefix("::ffff:10.1.2.3/104")}),
		allowR("dot", shared.Match{Host: ".", Port: shared.PortRange{Lo: 7, Hi: 7}}),
	})
	c := conn()
	c.Hosts = []string{"a.example.org"}
	if d := s.Decide(c, now); d.Rule == nil || d.Rule.ID != "wild" || d.Rule.Match.Host != "*.Example.ORG." {
		t.Errorf("host: %+v", d)
	}
	c = conn()
	c.RemoteIP = netip.MustParseAddr("10.200.0.1")
	if d := s.Decide(c, now); d.Rule == nil || d.Rule.ID != "mapped" {
		t.Errorf("mapped prefix: %+v", d)
	}
	c = conn()
	c.RemotePort = 7
	if d := s.Decide(c, now); d.Rule == nil || d.Rule.ID != "dot" {
		t.Errorf(`host ".": %+v`, d)
	}
}

func TestLookupAndEdit(t *testing.T) {
	in := []shared.Rule{allowR("a", shared.Match{}), allowR("b", shared.Match{Port: shared.PortRange{Lo: 1, Hi: 1}}), allowR("a", shared.Match{UID: u32(5)})}
	s := NewSet(in)
	if i, ok := s.Lookup("a"); !ok || i != 0 {
		t.Errorf("Lookup(a) = %d, %v: want the first", i, ok)
	}
	if _, ok := s.Lookup("zz"); ok {
		t.Error("Lookup(zz) found")
	}
	f := allowR("f:x", shared.Match{})
	f.ReadOnly = true
	e := s.Edit(func(v View) bool { return v.ID() == "b" }, []shared.Rule{f}, []shared.Rule{allowR("c", shared.Match{})})
	var ids []string
	for i := range e.Len() {
		ids = append(ids, e.View(i).ID())
	}
	if !slices.Equal(ids, []string{"f:x", "a", "a", "c"}) {
		t.Errorf("Edit gave %v", ids)
	}
	if i, ok := e.Lookup("c"); !ok || i != 3 {
		t.Errorf("Lookup(c) after Edit = %d, %v", i, ok)
	}
	// The old set is untouched.
	if s.Len() != 3 || s.View(1).ID() != "b" {
		t.Error("Edit changed its receiver")
	}
	c := conn()
	c.RemotePort = 1
	if d := e.Decide(c, now); d.Rule == nil || d.Rule.ID == "b" {
		t.Errorf("dropped rule still decides: %+v", d)
	}
	var nilSet *Set
	if n := nilSet.Edit(nil, nil, in); n.Len() != 3 {
		t.Errorf("Edit of a nil set: %d rules", n.Len())
	}
}

// TestSetSize keeps the compact form compact: a typical rule (exe, proto,
// port, times, source) needs no ext.
func TestSetSize(t *testing.T) {
	r := oddRules()[1]
	c := compact(&r, nil)
	if c.ext != nil {
		t.Errorf("a plain rule needs an ext: %+v", *c.ext)
	}
	if n := unsafe.Sizeof(c); unsafe.Sizeof(uintptr(0)) == 8 && n > 80 {
		t.Errorf("a compact rule takes %d bytes, want at most 80", n)
	}
}
