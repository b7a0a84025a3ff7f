package rulemodel

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-fw/tollgate/shared"
)

const me = 1000

// testNow is the table's "now": the day of the rules' last hits.
var testNow = time.Date(2026, 3, 1, 18, 0, 0, 0, time.UTC)

func testRules() []shared.Rule {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	return []shared.Rule{
		{ID: "r1", Name: "firefox web", Action: shared.ActionAllow, Lifetime: shared.LifetimeForever, Owner: me, Enabled: true,
			Match: shared.Match{Exe: "/usr/lib/firefox/firefox", Host: "*.mozilla.org", Port: shared.PortRange{Lo: 443, Hi: 443}, Proto: shared.ProtoTCP},
			Hits:  50, LastHit: t0.Add(time.Hour)},
		{ID: "r2", Name: "curl deny", Action: shared.ActionDeny, Lifetime: shared.LifetimeSession, Owner: me, Enabled: false,
			Match: shared.Match{Exe: "/usr/bin/curl", IP: netip.MustParsePrefix("192.0.2.0/24"), Port: shared.PortRange{Lo: 8000, Hi: 8100}},
			Hits:  3, LastHit: t0},
		{ID: "r3", Name: "ntp", Action: shared.ActionAllow, Lifetime: shared.LifetimeForever, Owner: shared.OwnerSystem, Enabled: true,
			Match: shared.Match{Exe: "/usr/sbin/chronyd", Port: shared.PortRange{Lo: 123, Hi: 123}, Proto: shared.ProtoUDP},
			Hits:  1000, Source: "rules.d/base.toml", ReadOnly: true},
		{ID: "r4", Name: "block tracker", Action: shared.ActionReject, Lifetime: shared.LifetimeForever, Owner: shared.OwnerSystem, Enabled: true,
			Match: shared.Match{Host: "tracker.example"}},
		{ID: "r5", Name: "", Action: shared.ActionAllow, Lifetime: shared.LifetimeForever, Owner: 1001, Enabled: true,
			Match: shared.Match{Exe: "/usr/bin/ssh", Port: shared.PortRange{Lo: 22, Hi: 22}, Direction: shared.DirectionOut}},
	}
}

// names knows Firefox only, as a desktop-entry index would.
func names(exe, app string) (string, bool) {
	if exe == "/usr/lib/firefox/firefox" {
		return "Firefox Web Browser", true
	}
	return "", false
}

func newTable() *Table {
	t := New(Options{UID: me, AppName: names, Location: time.UTC, Now: func() time.Time { return testNow }})
	t.SetRules(testRules())
	return t
}

func ids(t *Table) []string {
	var out []string
	for i := range t.Len() {
		r, _ := t.Row(i)
		out = append(out, r.Rule.ID)
	}
	return out
}

func TestFilter(t *testing.T) {
	tests := []struct {
		name   string
		filter Filter
		want   []string // sorted by name, ascending (the default)
	}{
		{"all", Filter{}, []string{"r4", "r2", "r1", "r3", "r5"}},
		{"search name", Filter{Search: "FIREFOX"}, []string{"r1"}},
		{"search shown app name", Filter{Search: "web browser"}, []string{"r1"}},
		{"search host", Filter{Search: "tracker"}, []string{"r4"}},
		{"search ip", Filter{Search: "192.0.2"}, []string{"r2"}},
		{"search port", Filter{Search: "8000"}, []string{"r2"}},
		{"search id", Filter{Search: "r5"}, []string{"r5"}},
		{"search blank", Filter{Search: "   "}, []string{"r4", "r2", "r1", "r3", "r5"}},
		{"search nothing", Filter{Search: "nope"}, nil},
		{"app by desktop name", Filter{App: "Firefox Web Browser"}, []string{"r1"}},
		{"app by base name", Filter{App: "curl"}, []string{"r2"}},
		{"app any", Filter{App: "any app"}, []string{"r4"}},
		{"action allow", Filter{Action: shared.ActionAllow}, []string{"r1", "r3", "r5"}},
		{"action reject", Filter{Action: shared.ActionReject}, []string{"r4"}},
		{"owner mine", Filter{Owner: OwnerMine}, []string{"r2", "r1"}},
		{"owner system", Filter{Owner: OwnerSystem}, []string{"r4", "r3"}},
		{"enabled", Filter{Enabled: EnabledOn}, []string{"r4", "r1", "r3", "r5"}},
		{"disabled", Filter{Enabled: EnabledOff}, []string{"r2"}},
		{"combined", Filter{Action: shared.ActionAllow, Owner: OwnerSystem, Search: "ntp"}, []string{"r3"}},
		{"combined none", Filter{Action: shared.ActionDeny, Owner: OwnerSystem}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tb := newTable()
			tb.SetFilter(tc.filter)
			if got := ids(tb); !slices.Equal(got, tc.want) {
				t.Errorf("view = %v, want %v", got, tc.want)
			}
			if tb.Total() != 5 {
				t.Errorf("Total = %d, want 5 whatever the filter", tb.Total())
			}
		})
	}
}

func TestSort(t *testing.T) {
	tests := []struct {
		col  Column
		desc bool
		want []string
	}{
		{ColName, false, []string{"r4", "r2", "r1", "r3", "r5"}},
		{ColName, true, []string{"r5", "r3", "r1", "r2", "r4"}},
		{ColHits, false, []string{"r4", "r5", "r2", "r1", "r3"}},     // numeric, not "1000" < "3"
		{ColHits, true, []string{"r3", "r1", "r2", "r4", "r5"}},      // ties by id
		{ColPort, false, []string{"r4", "r5", "r3", "r1", "r2"}},     // any first, then 22 < 123 < 443 < 8000
		{ColLastHit, false, []string{"r3", "r4", "r5", "r2", "r1"}},  // never first, by time
		{ColOwner, false, []string{"r3", "r4", "r1", "r2", "r5"}},    // by uid
		{ColEnabled, false, []string{"r2", "r1", "r3", "r4", "r5"}},  // off first
		{ColApp, false, []string{"r4", "r3", "r2", "r1", "r5"}},      // any app, chronyd, curl, Firefox, ssh: case-insensitive
		{ColAction, false, []string{"r1", "r3", "r5", "r2", "r4"}},   // allow, deny, reject
		{ColRemote, false, []string{"r1", "r3", "r5", "r2", "r4"}},   // *.mozilla.org < any < 192.0.2.0/24 ... by text
		{ColLifetime, false, []string{"r1", "r3", "r4", "r5", "r2"}}, // forever < session
	}
	for _, tc := range tests {
		tb := newTable()
		tb.SetSort(tc.col, tc.desc)
		got := ids(tb)
		if tc.col == ColRemote {
			// Plain text order: compute it from the column to keep the
			// test honest about what it checks.
			var rows []Row
			for i := range tb.Len() {
				r, _ := tb.Row(i)
				rows = append(rows, r)
			}
			if !slices.IsSortedFunc(rows, func(a, b Row) int { return strings.Compare(strings.ToLower(a.Remote), strings.ToLower(b.Remote)) }) {
				t.Errorf("sort by remote: %v not in text order", got)
			}
			continue
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("sort by %s desc=%v = %v, want %v", tc.col.Title(), tc.desc, got, tc.want)
		}
	}
}

func TestToggleSortAndFilterKeepsSort(t *testing.T) {
	tb := newTable()
	tb.ToggleSort(ColHits)
	if c, d := tb.Sort(); c != ColHits || d {
		t.Fatalf("first toggle: %v %v, want hits ascending", c, d)
	}
	tb.ToggleSort(ColHits)
	if c, d := tb.Sort(); c != ColHits || !d {
		t.Fatalf("second toggle: %v %v, want hits descending", c, d)
	}
	tb.SetFilter(Filter{Action: shared.ActionAllow})
	if got, want := ids(tb), []string{"r3", "r1", "r5"}; !slices.Equal(got, want) {
		t.Errorf("filtered and sorted = %v, want %v", got, want)
	}
	// New rules arrive (RulesChanged): filter and sort still apply.
	rules := testRules()
	rules[4].Hits = 5000
	tb.SetRules(rules)
	if got, want := ids(tb), []string{"r5", "r3", "r1"}; !slices.Equal(got, want) {
		t.Errorf("after SetRules = %v, want %v", got, want)
	}
	if tb.Index("r3") != 1 || tb.Index("r2") != -1 {
		t.Errorf("Index(r3)=%d Index(r2)=%d, want 1 and -1", tb.Index("r3"), tb.Index("r2"))
	}
	if _, ok := tb.Find("r2"); !ok {
		t.Error("Find(r2): filtered-out rules are still found")
	}
}

func TestRowCells(t *testing.T) {
	tb := newTable()
	want := map[string]Row{
		"r1": {Enabled: "✓", Name: "firefox web", App: "Firefox Web Browser", Remote: "*.mozilla.org", Port: "443", Proto: "tcp",
			Action: "allow", Lifetime: "forever", Owner: "me", Hits: "50", LastHit: "13:00", Editable: true},
		"r2": {Name: "curl deny", App: "curl", Remote: "192.0.2.0/24", Port: "8000-8100", Proto: "any",
			Action: "deny", Lifetime: "session", Owner: "me", Hits: "3", LastHit: "12:00", Editable: true},
		"r3": {Enabled: "✓", Name: "ntp", App: "chronyd", Remote: "any", Port: "123", Proto: "udp", Action: "allow",
			Lifetime: "forever", Owner: "system", Hits: "1000", LastHit: "never"},
		"r4": {Enabled: "✓", Name: "block tracker", App: "any app", Remote: "tracker.example", Port: "any", Proto: "any",
			Action: "reject", Lifetime: "forever", Owner: "system", Hits: "0", LastHit: "never"},
		"r5": {Enabled: "✓", Name: "ssh to any, port 22", App: "ssh", Remote: "any", Port: "22", Proto: "any", Action: "allow",
			Lifetime: "forever", Owner: "uid 1001", Hits: "0", LastHit: "never"},
	}
	for id, w := range want {
		got, ok := tb.Find(id)
		if !ok {
			t.Fatalf("rule %s missing", id)
		}
		for c := range NumColumns {
			if got.Cell(c) != w.Cell(c) {
				t.Errorf("%s: column %s = %q, want %q", id, c.Title(), got.Cell(c), w.Cell(c))
			}
		}
		if got.Editable != w.Editable {
			t.Errorf("%s: Editable = %v, want %v (%s)", id, got.Editable, w.Editable, got.ReadOnly)
		}
		if !got.Editable && got.ReadOnly == "" {
			t.Errorf("%s: read-only without a reason", id)
		}
	}
	if r, _ := tb.Find("r3"); !strings.Contains(r.ReadOnly, "rules.d/base.toml") {
		t.Errorf("r3 read-only reason %q does not name its file", r.ReadOnly)
	}
	if got, want := tb.Apps(), []string{"any app", "chronyd", "curl", "Firefox Web Browser", "ssh"}; !slices.Equal(got, want) {
		t.Errorf("Apps = %v, want %v", got, want)
	}
}

func TestRowFlags(t *testing.T) {
	rules := append(testRules(), shared.Rule{ID: "p1", Action: shared.ActionAllow, Lifetime: shared.LifetimeProcess,
		Owner: me, Enabled: true, PID: 42, Match: shared.Match{Exe: "/usr/bin/curl"}})
	tb := New(Options{UID: me, Location: time.UTC})
	tb.SetRules(rules)
	tests := []struct {
		id                                 string
		named, editable, admin, toggleable bool
	}{
		{"r1", true, true, false, true},
		{"r3", true, false, false, false}, // from a file: nobody edits it here
		{"r4", true, false, true, false},  // system: an administrator may
		{"r5", false, false, true, false}, // another user's
		{"p1", false, true, false, false}, // bound to a process: delete or change its lifetime
	}
	for _, tc := range tests {
		r, ok := tb.Find(tc.id)
		if !ok {
			t.Fatalf("%s missing", tc.id)
		}
		if r.Named != tc.named || r.Editable != tc.editable || r.AdminEditable != tc.admin || r.Toggleable != tc.toggleable {
			t.Errorf("%s: named %v editable %v admin %v toggleable %v, want %v %v %v %v", tc.id,
				r.Named, r.Editable, r.AdminEditable, r.Toggleable, tc.named, tc.editable, tc.admin, tc.toggleable)
		}
	}
}

func TestSummary(t *testing.T) {
	tests := []struct{ app, remote, port, proto, want string }{
		{"ssh", "any", "22", "tcp", "ssh to any, port 22/tcp"},
		{"curl", "example.org", "any", "any", "curl to example.org"},
		{"any app", "10.0.0.0/8", "any", "udp", "any app to 10.0.0.0/8, udp"},
		{"nc", "from 10.0.0.1", "8000-8100", "any", "nc from 10.0.0.1, port 8000-8100"},
	}
	for _, tc := range tests {
		if got := Summary(tc.app, tc.remote, tc.port, tc.proto); got != tc.want {
			t.Errorf("Summary(%q, %q, %q, %q) = %q, want %q", tc.app, tc.remote, tc.port, tc.proto, got, tc.want)
		}
	}
}

func TestShortTime(t *testing.T) {
	berlin := time.FixedZone("CET", 3600)
	now := time.Date(2026, 3, 1, 23, 30, 0, 0, time.UTC) // 00:30 on 2 March in Berlin
	tests := []struct {
		tm   time.Time
		want string
	}{
		{time.Date(2026, 3, 1, 10, 50, 0, 0, time.UTC), "10:50"},
		{time.Date(2026, 2, 28, 10, 50, 0, 0, time.UTC), "28 Feb 10:50"},
		{time.Date(2025, 12, 31, 23, 59, 0, 0, time.UTC), "2025-12-31 23:59"},
		{time.Date(2026, 3, 2, 0, 10, 0, 0, berlin), "00:10"},       // the same day where the time is shown
		{time.Date(2026, 3, 1, 23, 0, 0, 0, berlin), "1 Mar 23:00"}, // the day before, there
	}
	for _, tc := range tests {
		if got := ShortTime(tc.tm, now); got != tc.want {
			t.Errorf("ShortTime(%v) = %q, want %q", tc.tm, got, tc.want)
		}
	}
}

func TestRootMayEditSystemRulesButNotReadOnly(t *testing.T) {
	tb := New(Options{UID: 0, Location: time.UTC})
	tb.SetRules(testRules())
	for id, want := range map[string]bool{"r1": true, "r3": false, "r4": true, "r5": true} {
		if r, _ := tb.Find(id); r.Editable != want {
			t.Errorf("root: %s Editable = %v, want %v", id, r.Editable, want)
		}
	}
}

func TestInboundRemote(t *testing.T) {
	tb := New(Options{UID: me, Location: time.UTC})
	tb.SetRules([]shared.Rule{{ID: "in", Action: shared.ActionAllow, Lifetime: shared.LifetimeForever, Owner: me,
		Match: shared.Match{Direction: shared.DirectionIn, IP: netip.MustParsePrefix("10.0.0.0/8")}}})
	if r, _ := tb.Find("in"); r.Remote != "from 10.0.0.0/8" {
		t.Errorf("inbound remote = %q", r.Remote)
	}
}

func BenchmarkSetRules(b *testing.B) {
	var rules []shared.Rule
	base := testRules()
	for i := range 2000 {
		r := base[i%len(base)]
		r.ID = "r" + strings.Repeat("x", i%7) + string(rune('a'+i%26))
		r.Hits = uint64(i * 7919 % 1000)
		rules = append(rules, r)
	}
	tb := New(Options{UID: me, AppName: names, Location: time.UTC})
	tb.SetSort(ColHits, true)
	tb.SetFilter(Filter{Search: "e"})
	b.ReportAllocs()
	for b.Loop() {
		tb.SetRules(rules)
	}
}

func TestDetails(t *testing.T) {
	tb := newTable()
	r3, _ := tb.Find("r3")
	d := Details(r3)
	for _, want := range []string{"Rule r3", "/usr/sbin/chronyd", "from rules.d/base.toml", "read-only"} {
		if !strings.Contains(d, want) {
			t.Errorf("details of r3 %q lack %q", d, want)
		}
	}
	r5, _ := tb.Find("r5")
	if d := Details(r5); !strings.Contains(d, "/usr/bin/ssh") || !strings.Contains(d, "direction out") || strings.Contains(d, "“") {
		t.Errorf("details of unnamed r5: %q", d)
	}
	r1, _ := tb.Find("r1")
	if d := Details(r1); strings.Contains(d, "\n") || !strings.Contains(d, "*.mozilla.org") {
		t.Errorf("details of an editable rule: %q", d)
	}
}
