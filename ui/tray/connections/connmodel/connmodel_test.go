package connmodel

import (
	"net/netip"
	"path"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-fw/tollgate/shared"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func entry(id uint64, sec int, exe string, action shared.Action, mod func(*shared.LogEntry)) shared.LogEntry {
	e := shared.LogEntry{
		Connection: shared.Connection{ID: id, Time: t0.Add(time.Duration(sec) * time.Second), Direction: shared.DirectionOut,
			Proto: shared.ProtoTCP, RemoteIP: netip.MustParseAddr("192.0.2.7"), RemotePort: 443,
			LocalIP: netip.MustParseAddr("10.0.0.2"), LocalPort: 40000 + uint16(id), UID: 1000, User: "alice", PID: 77, Exe: exe},
		Verdict: shared.Verdict{Action: action, RuleID: "r1", Reason: "rule r1 matched"},
	}
	if mod != nil {
		mod(&e)
	}
	return e
}

func names(exe, app string) (string, bool) {
	switch {
	case app == "flatpak:org.mozilla.firefox":
		return "Firefox (Flatpak)", true
	case exe == "/usr/lib/firefox/firefox":
		return "Firefox", true
	}
	return "", false
}

func ids(l *Log) []uint64 {
	var out []uint64
	for i := range l.Len() {
		r, _ := l.Row(i)
		out = append(out, r.Entry.Connection.ID)
	}
	return out
}

func TestAddMergesDeduplicatesAndBounds(t *testing.T) {
	l := New(Options{Max: 4, AppName: names, Location: time.UTC})
	// First poll: newest first, as RecentConnections returns.
	if n := l.Add([]shared.LogEntry{
		entry(3, 3, "/usr/bin/curl", shared.ActionAllow, nil),
		entry(2, 2, "/usr/bin/curl", shared.ActionDeny, nil),
		entry(1, 2, "/usr/bin/curl", shared.ActionDeny, nil),
	}); n != 3 {
		t.Fatalf("first Add = %d new, want 3", n)
	}
	if got := ids(l); !slices.Equal(got, []uint64{3, 2, 1}) {
		t.Fatalf("rows %v", got)
	}
	if !l.Newest().Equal(t0.Add(3 * time.Second)) {
		t.Errorf("Newest = %v", l.Newest())
	}
	// Next poll with Since = Newest repeats the entries at that time.
	if n := l.Add([]shared.LogEntry{
		entry(5, 5, "/usr/bin/curl", shared.ActionAllow, nil),
		entry(4, 3, "/usr/bin/curl", shared.ActionAllow, nil),
		entry(3, 3, "/usr/bin/curl", shared.ActionAllow, nil),
	}); n != 2 {
		t.Fatalf("second Add = %d new, want 2 (3 is a repeat)", n)
	}
	// Bounded to 4: the oldest (1) is dropped, and its key forgotten.
	if got := ids(l); !slices.Equal(got, []uint64{5, 4, 3, 2}) {
		t.Fatalf("rows %v, want [5 4 3 2]", got)
	}
	if l.Total() != 4 || len(l.keys) != 4 {
		t.Errorf("Total %d, keys %d: want 4 and 4", l.Total(), len(l.keys))
	}
	if n := l.Add(nil); n != 0 {
		t.Errorf("empty Add = %d", n)
	}
	// Entries without ids are told apart by time and ends.
	a := entry(0, 9, "/usr/bin/curl", shared.ActionAllow, nil)
	b := entry(0, 9, "/usr/bin/curl", shared.ActionAllow, func(e *shared.LogEntry) { e.Connection.RemotePort = 80 })
	if n := l.Add([]shared.LogEntry{a, b, a}); n != 2 {
		t.Errorf("id-less Add = %d new, want 2", n)
	}
	if i := l.Index(KeyOf(b)); i < 0 || i > 1 {
		t.Errorf("Index of a newest id-less entry = %d", i)
	}
}

func TestFilter(t *testing.T) {
	l := New(Options{AppName: names, Location: time.UTC, Now: func() time.Time { return time.Date(2026, 3, 1, 18, 0, 0, 0, time.UTC) }})
	l.Add([]shared.LogEntry{
		entry(1, 1, "/usr/lib/firefox/firefox", shared.ActionAllow, nil),
		entry(2, 2, "/usr/bin/curl", shared.ActionDeny, nil),
		entry(3, 3, "/usr/bin/curl", shared.ActionAllow, nil),
		entry(4, 4, "/app/bin/firefox", shared.ActionReject, func(e *shared.LogEntry) { e.Connection.App = "flatpak:org.mozilla.firefox" }),
		entry(5, 5, "", shared.ActionDeny, func(e *shared.LogEntry) { e.Connection.PID = 0; e.Connection.Attribution = shared.AttributedUIDOnly }),
	})
	tests := []struct {
		name   string
		filter Filter
		want   []uint64
	}{
		{"all", Filter{}, []uint64{5, 4, 3, 2, 1}},
		{"app by desktop name", Filter{App: "Firefox"}, []uint64{1}},
		{"app by flatpak id", Filter{App: "Firefox (Flatpak)"}, []uint64{4}},
		{"app by base name", Filter{App: "curl"}, []uint64{3, 2}},
		{"app of a uid-only connection", Filter{App: "(alice)"}, []uint64{5}},
		{"verdict deny", Filter{Verdict: shared.ActionDeny}, []uint64{5, 2}},
		{"verdict reject", Filter{Verdict: shared.ActionReject}, []uint64{4}},
		{"app and verdict", Filter{App: "curl", Verdict: shared.ActionAllow}, []uint64{3}},
		{"nothing", Filter{App: "curl", Verdict: shared.ActionReject}, nil},
	}
	for _, tc := range tests {
		l.SetFilter(tc.filter)
		if got := ids(l); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	if got, want := l.Apps(), []string{"(alice)", "curl", "Firefox", "Firefox (Flatpak)"}; !slices.Equal(got, want) {
		t.Errorf("Apps = %v, want %v", got, want)
	}
	// New entries land in the filtered view too.
	l.SetFilter(Filter{Verdict: shared.ActionDeny})
	l.Add([]shared.LogEntry{entry(6, 6, "/usr/bin/wget", shared.ActionDeny, nil)})
	if got := ids(l); !slices.Equal(got, []uint64{6, 5, 2}) {
		t.Errorf("after Add with a filter: %v", got)
	}
}

func TestRowCells(t *testing.T) {
	l := New(Options{AppName: names, Location: time.UTC, Now: func() time.Time { return time.Date(2026, 3, 1, 18, 0, 0, 0, time.UTC) }})
	l.Add([]shared.LogEntry{
		entry(1, 1, "/usr/lib/firefox/firefox", shared.ActionAllow, func(e *shared.LogEntry) {
			e.Connection.Hosts, e.Connection.HostSource = []string{"www.mozilla.org"}, shared.HostFromProcess
		}),
		entry(2, 2, "", shared.ActionDeny, func(e *shared.LogEntry) {
			e.Connection.ExeClaimed = "/tmp/x"
			e.Connection.RemoteIP = netip.MustParseAddr("2001:db8::1")
			e.Connection.Proto = shared.ProtoUDP
			e.Verdict = shared.Verdict{Action: shared.ActionDeny, Unasked: true, Reason: "no rule matched and nobody can be asked: default action deny"}
		}),
		entry(3, 3, "/usr/bin/curl", shared.ActionDeny, func(e *shared.LogEntry) {
			e.Verdict = shared.Verdict{Action: shared.ActionDeny, Monitor: true, Unasked: true}
			e.Connection.Hosts, e.Connection.HostSource = []string{"evil.example"}, shared.HostFromAny
		}),
	})
	want := map[uint64]Row{
		1: {Time: "12:00:01", App: "Firefox", Exe: "/usr/lib/firefox/firefox", Remote: "www.mozilla.org:443 (192.0.2.7)",
			Proto: "tcp", Direction: "out", Verdict: "allow", Rule: "r1"},
		2: {Time: "12:00:02", App: "x?", Exe: "/tmp/x (unverified)", Remote: "[2001:db8::1]:443",
			Proto: "udp", Direction: "out", Verdict: "deny", Rule: "default", Markers: "not asked"},
		3: {Time: "12:00:03", App: "curl", Exe: "/usr/bin/curl", Remote: "evil.example:443 (192.0.2.7) [name not trusted]",
			Proto: "tcp", Direction: "out", Verdict: "deny (allowed)", Rule: "default", Markers: "not asked, monitor"},
	}
	for i := range l.Len() {
		got, _ := l.Row(i)
		w := want[got.Entry.Connection.ID]
		for c := range NumColumns {
			if got.Cell(c) != w.Cell(c) {
				t.Errorf("%d: column %s = %q, want %q", got.Entry.Connection.ID, c.Title(), got.Cell(c), w.Cell(c))
			}
		}
	}
}

func TestMarkers(t *testing.T) {
	tests := []struct {
		v    shared.Verdict
		want []string
	}{
		{shared.Verdict{Action: shared.ActionAllow, RuleID: "r1", Reason: "rule r1 matched"}, nil},
		{shared.Verdict{Action: shared.ActionDeny, Unasked: true}, []string{MarkUnasked}},
		{shared.Verdict{Action: shared.ActionAllow, Answered: true, Reason: "answered by uid 1000: allow once"}, []string{MarkAnswered}},
		{shared.Verdict{Action: shared.ActionAllow, RuleID: "r7", Answered: true, Reason: "answered by uid 1000: allow forever, scope exe-host-port (rule r7)"}, []string{MarkAnswered}},
		// The flag decides, not the wording: a reason that reads like an
		// answer without the flag is the default after a prompt.
		{shared.Verdict{Action: shared.ActionDeny, Reason: "answered by nobody"}, []string{MarkNoAnswer}},
		{shared.Verdict{Action: shared.ActionAllow, Answered: true}, []string{MarkAnswered}},
		{shared.Verdict{Action: shared.ActionDeny, Reason: "nobody answered within 30s: default action deny"}, []string{MarkNoAnswer}},
		{shared.Verdict{Action: shared.ActionDeny, RuleID: "r2", Monitor: true}, []string{MarkMonitor}},
		{shared.Verdict{Action: shared.ActionDeny, Unasked: true, Monitor: true}, []string{MarkUnasked, MarkMonitor}},
	}
	for _, tc := range tests {
		if got := Markers(tc.v); !slices.Equal(got, tc.want) {
			t.Errorf("Markers(%+v) = %v, want %v", tc.v, got, tc.want)
		}
	}
}

func TestRuleFor(t *testing.T) {
	tests := []struct {
		name string
		e    shared.LogEntry
		want shared.Rule
	}{
		{
			name: "host from its own process",
			e: entry(1, 1, "/usr/lib/firefox/firefox", shared.ActionDeny, func(e *shared.LogEntry) {
				e.Connection.Hosts, e.Connection.HostSource = []string{"www.mozilla.org", "mozilla.org"}, shared.HostFromProcess
			}),
			want: shared.Rule{Name: "Firefox to www.mozilla.org port 443", Action: shared.ActionAllow, Lifetime: shared.LifetimeForever, Enabled: true,
				Match: shared.Match{Exe: "/usr/lib/firefox/firefox", Direction: shared.DirectionOut, Proto: shared.ProtoTCP,
					Host: "www.mozilla.org", Port: shared.PortRange{Lo: 443, Hi: 443}}},
		},
		{
			name: "host from another process: the IP instead",
			e: entry(2, 1, "/usr/bin/curl", shared.ActionDeny, func(e *shared.LogEntry) {
				e.Connection.Hosts, e.Connection.HostSource = []string{"example.org"}, shared.HostFromUser
			}),
			want: shared.Rule{Name: "curl to 192.0.2.7 port 443", Action: shared.ActionAllow, Lifetime: shared.LifetimeForever, Enabled: true,
				Match: shared.Match{Exe: "/usr/bin/curl", Direction: shared.DirectionOut, Proto: shared.ProtoTCP,
					IP: netip.MustParsePrefix("192.0.2.7/32"), Port: shared.PortRange{Lo: 443, Hi: 443}}},
		},
		{
			name: "IPv4-mapped and zoned addresses are made canonical",
			e: entry(3, 1, "/usr/bin/curl", shared.ActionDeny, func(e *shared.LogEntry) {
				e.Connection.RemoteIP = netip.MustParseAddr("::ffff:192.0.2.9")
				e.Connection.Proto = shared.ProtoUDP
				e.Connection.RemotePort = 53
			}),
			want: shared.Rule{Name: "curl to 192.0.2.9 port 53", Action: shared.ActionAllow, Lifetime: shared.LifetimeForever, Enabled: true,
				Match: shared.Match{Exe: "/usr/bin/curl", Direction: shared.DirectionOut, Proto: shared.ProtoUDP,
					IP: netip.MustParsePrefix("192.0.2.9/32"), Port: shared.PortRange{Lo: 53, Hi: 53}}},
		},
		{
			name: "inbound: the local port, not the peer's",
			e: entry(4, 1, "/usr/sbin/sshd", shared.ActionDeny, func(e *shared.LogEntry) {
				e.Connection.Direction = shared.DirectionIn
				e.Connection.RemoteIP = netip.MustParseAddr("fe80::1%eth0")
				e.Connection.RemotePort = 51515
				e.Connection.LocalPort = 22
			}),
			want: shared.Rule{Name: "sshd from fe80::1 on port 22", Action: shared.ActionAllow, Lifetime: shared.LifetimeForever, Enabled: true,
				Match: shared.Match{Exe: "/usr/sbin/sshd", Direction: shared.DirectionIn, Proto: shared.ProtoTCP,
					IP: netip.MustParsePrefix("fe80::1/128"), LocalPort: shared.PortRange{Lo: 22, Hi: 22}}},
		},
		{
			name: "unverified executable and ICMP: no exe, no port",
			e: entry(5, 1, "", shared.ActionDeny, func(e *shared.LogEntry) {
				e.Connection.ExeClaimed = "/tmp/x"
				e.Connection.Proto = shared.ProtoICMP
				e.Connection.RemotePort = 0
			}),
			want: shared.Rule{Name: "any app to 192.0.2.7", Action: shared.ActionAllow, Lifetime: shared.LifetimeForever, Enabled: true,
				Match: shared.Match{Direction: shared.DirectionOut, Proto: shared.ProtoICMP, IP: netip.MustParsePrefix("192.0.2.7/32")}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := RuleFor(tc.e, names)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("RuleFor\n got %+v\nwant %+v", got, tc.want)
			}
			// What Make rule… proposes is a valid rule as it stands.
			n := got
			n.Normalize()
			if err := n.Validate(); err != nil {
				t.Errorf("proposed rule is invalid: %v", err)
			}
		})
	}
}

func TestRuleForLongNameStaysValid(t *testing.T) {
	long := strings.Repeat("a", 60) + "." + strings.Repeat("b", 60) + "." + strings.Repeat("c", 60) + "." + strings.Repeat("d", 60) + ".example"
	e := entry(1, 1, "/usr/bin/"+strings.Repeat("é", 40), shared.ActionDeny, func(e *shared.LogEntry) {
		e.Connection.Hosts, e.Connection.HostSource = []string{long}, shared.HostFromProcess
	})
	r := RuleFor(e, nil)
	r.Normalize()
	if err := r.Validate(); err != nil {
		t.Fatalf("long names make an invalid rule: %v", err)
	}
	if len(r.Name) > shared.MaxNameLen {
		t.Errorf("name of %d bytes", len(r.Name))
	}
}

func BenchmarkAdd(b *testing.B) {
	var batch []shared.LogEntry
	for i := range 50 {
		batch = append(batch, entry(uint64(i+1), i, "/usr/bin/curl", shared.ActionAllow, nil))
	}
	b.ReportAllocs()
	for b.Loop() {
		l := New(Options{Max: DefaultMax, Location: time.UTC})
		id := uint64(0)
		// 100 polls of 50 new connections: the bound is reached and kept.
		for p := range 100 {
			for i := range batch {
				id++
				batch[i].Connection.ID = id
				batch[i].Connection.Time = t0.Add(time.Duration(p*50+i) * time.Millisecond)
			}
			l.Add(batch)
		}
	}
}

func TestRuleNames(t *testing.T) {
	l := New(Options{Location: time.UTC})
	l.Add([]shared.LogEntry{
		entry(1, 1, "/usr/bin/a", shared.ActionAllow, nil), // rule r1
		entry(2, 2, "/usr/bin/b", shared.ActionAllow, func(e *shared.LogEntry) {
			e.Verdict = shared.Verdict{Action: shared.ActionAllow, Answered: true, Reason: "answered by uid 1000: allow once"}
		}),
		entry(3, 3, "/usr/bin/c", shared.ActionDeny, func(e *shared.LogEntry) {
			e.Verdict = shared.Verdict{Action: shared.ActionDeny, Reason: "nobody answered within 30s: default action deny"}
		}),
	})
	rule := func(id uint64) string {
		r, _ := l.Row(l.Index(Key{ID: id}))
		return r.Rule
	}
	if rule(1) != "r1" || rule(2) != "answer (once)" || rule(3) != "default" {
		t.Fatalf("before names: %q %q %q", rule(1), rule(2), rule(3))
	}
	if !l.AddRuleNames(map[string]string{"r1": "Firefox to Mozilla"}) || rule(1) != "Firefox to Mozilla" {
		t.Errorf("after names: %q", rule(1))
	}
	if l.AddRuleNames(map[string]string{"r1": "Firefox to Mozilla"}) {
		t.Error("the same names changed a row")
	}
	l.Add([]shared.LogEntry{entry(4, 4, "/usr/bin/d", shared.ActionAllow, func(e *shared.LogEntry) { e.Verdict.RuleID = "r9" })})
	if rule(4) != "r9" {
		t.Errorf("a rule not named yet shown as %q, want its id", rule(4))
	}
	// Names come a few at a time: the earlier ones stay.
	if !l.AddRuleNames(map[string]string{"r9": "d to anywhere"}) || rule(4) != "d to anywhere" || rule(1) != "Firefox to Mozilla" {
		t.Errorf("after more names: %q %q", rule(4), rule(1))
	}
}

func TestShortPath(t *testing.T) {
	tests := []struct {
		p    string
		n    int
		want string
	}{
		{"/usr/bin/curl", 34, "/usr/bin/curl"},
		{"/tmp/tollgate-bus-4255272505/probe", 20, "/tmp/to…272505/probe"},
		{"/opt/Some Vendor/very/long/path/bin/updater-helper-service", 34, "/opt/…h/bin/updater-helper-service"},
		{"/a/very-long-file-name-indeed-and-longer", 10, "…/very-long-file-name-indeed-and-longer"},
		{"/ä/ö/ü/ß/é/è/à/file", 12, "/ä/…è/à/file"},
	}
	for _, tc := range tests {
		got := ShortPath(tc.p, tc.n)
		if got != tc.want {
			t.Errorf("ShortPath(%q, %d) = %q, want %q", tc.p, tc.n, got, tc.want)
		}
		if !strings.HasSuffix(got, path.Base(tc.p)) {
			t.Errorf("ShortPath(%q) lost the file name: %q", tc.p, got)
		}
	}
}

func TestTimeColumn(t *testing.T) {
	now := time.Date(2026, 3, 1, 18, 0, 0, 0, time.UTC)
	l := New(Options{Location: time.UTC, Now: func() time.Time { return now }})
	for i, tc := range []struct {
		t    time.Time
		want string
	}{
		{time.Date(2026, 3, 1, 9, 5, 7, 0, time.UTC), "09:05:07"},
		{time.Date(2026, 2, 27, 9, 5, 7, 0, time.UTC), "27 Feb 09:05"},
		{time.Date(2025, 2, 27, 9, 5, 7, 0, time.UTC), "2025-02-27 09:05"},
	} {
		e := entry(uint64(i+1), i, "/usr/bin/a", shared.ActionAllow, func(e *shared.LogEntry) { e.Connection.Time = tc.t })
		l.Add([]shared.LogEntry{e})
		if r, _ := l.Row(l.Index(KeyOf(e))); r.Time != tc.want {
			t.Errorf("time %v shown %q, want %q", tc.t, r.Time, tc.want)
		}
	}
}
