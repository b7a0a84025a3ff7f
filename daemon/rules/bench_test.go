package rules

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/tollgate-fw/tollgate/shared"
)

// benchRules makes a realistic rule set of n rules: mostly per-application
// rules (exact exe, often with a host or port), some exe globs, host rules
// (exact and wildcard, as from a blocklist), CIDR rules, single-port rules,
// and a fixed handful of generic rules (port ranges, uids, units, a
// catch-all) as people write them by hand. The rules benchConns hits are
// spread through the set, never first.
func benchRules(n int) []shared.Rule {
	rng := rand.New(rand.NewPCG(1, 2))
	apps := max(n/5, 1)
	rules := make([]shared.Rule, 0, n+8)
	add := func(action shared.Action, m shared.Match) {
		rules = append(rules, shared.Rule{
			ID: fmt.Sprintf("%d", len(rules)+1), Action: action, Lifetime: shared.LifetimeForever,
			Enabled: true, Match: m,
		})
	}
	act := func() shared.Action {
		if rng.IntN(3) == 0 {
			return shared.ActionDeny
		}
		return shared.ActionAllow
	}
	const generic = 12
	for len(rules) < n-generic {
		app := rng.IntN(apps)
		switch k := rng.IntN(20); {
		case k < 9:
			m := shared.Match{Exe: fmt.Sprintf("/usr/bin/app%d", app)}
			switch rng.IntN(3) {
			case 0:
				m.Port = shared.PortRange{Lo: 443, Hi: 443}
			case 1:
				m.Host = fmt.Sprintf("*.svc%d.example.com", rng.IntN(apps))
			}
			add(act(), m)
		case k < 11:
			if rng.IntN(2) == 0 {
				add(act(), shared.Match{Exe: fmt.Sprintf("/opt/app%d/*/bin/app%d", app, app)})
			} else {
				add(act(), shared.Match{Exe: fmt.Sprintf("/usr/lib/app%d-*/run", app), Direction: shared.DirectionOut})
			}
		case k < 14:
			if rng.IntN(2) == 0 {
				add(shared.ActionDeny, shared.Match{Host: fmt.Sprintf("ads%d.tracker%d.net", rng.IntN(1000), app)})
			} else {
				add(shared.ActionDeny, shared.Match{Host: fmt.Sprintf("*.tracker%d.net", app)})
			}
		case k < 16:
			a := netip.AddrFrom4([4]byte{byte(11 + rng.IntN(200)), byte(rng.IntN(256)), byte(rng.IntN(256)), 0})
			p, _ := a.Prefix(16 + rng.IntN(17))
			add(shared.ActionDeny, shared.Match{IP: p})
		default:
			add(act(), shared.Match{Proto: shared.ProtoTCP, Port: shared.PortRange{Lo: uint16(1 + rng.IntN(10000)), Hi: 0}})
			rules[len(rules)-1].Match.Port.Hi = rules[len(rules)-1].Match.Port.Lo
		}
	}
	// Generic hand-written rules.
	add(shared.ActionAllow, shared.Match{Proto: shared.ProtoUDP, Port: shared.PortRange{Lo: 53, Hi: 53}})
	add(shared.ActionAllow, shared.Match{Direction: shared.DirectionOut, Port: shared.PortRange{Lo: 1, Hi: 1023}})
	add(shared.ActionDeny, shared.Match{Direction: shared.DirectionIn})
	add(shared.ActionAllow, shared.Match{UID: u32(0)})
	add(shared.ActionAllow, shared.Match{Unit: "systemd-*.service"})
	add(shared.ActionReject, shared.Match{Cmdline: "nc *"})
	add(shared.ActionAllow, shared.Match{Iface: "lo"})
	add(shared.ActionDeny, shared.Match{Port: shared.PortRange{Lo: 6000, Hi: 6063}})
	add(shared.ActionAllow, shared.Match{IP: pfx("192.0.2.0/24"), LocalPort: shared.PortRange{Lo: 22, Hi: 22}})
	add(shared.ActionDeny, shared.Match{Host: "*.svc1.example.com", Proto: shared.ProtoTCP})
	add(shared.ActionAllow, shared.Match{Exe: "/usr/bin/app1", Host: "api.svc1.example.com", Port: shared.PortRange{Lo: 443, Hi: 443}})
	rules = append(rules, shared.Rule{ID: "catch-all", Action: shared.ActionDeny, Lifetime: shared.LifetimeForever, Enabled: true, Priority: -1})
	// Small sets keep the last n: the rules the benchmark connections hit.
	return rules[len(rules)-n:]
}

// benchConns are the connections the benchmark decides: an application
// with several rules of its own, one matching only host and CIDR rules, a
// uid-only one, and one that reaches only the catch-all.
func benchConns() []*shared.Connection {
	base := func() *shared.Connection {
		return &shared.Connection{
			Direction: shared.DirectionOut, Proto: shared.ProtoTCP, LocalIP: netip.MustParseAddr("10.0.0.2"),
			LocalPort: 40000, RemoteIP: netip.MustParseAddr("93.184.216.34"), RemotePort: 443, Iface: "eth0",
			UID: 1000, GID: 1000, PID: 4242, PIDStart: 7, Attribution: shared.AttributedProcess,
		}
	}
	app := base()
	app.Exe, app.Cmdline, app.Hosts = "/usr/bin/app1", "app1 --sync", []string{"api.svc1.example.com"}
	tracker := base()
	tracker.Exe, tracker.Hosts = "/opt/app3/x86_64/bin/app3", []string{"ads7.tracker3.net", "cdn.tracker3.net"}
	tracker.RemoteIP = netip.MustParseAddr("42.42.1.1")
	uidOnly := base()
	uidOnly.PID, uidOnly.Attribution, uidOnly.RemotePort = 0, shared.AttributedUIDOnly, 8443
	uidOnly.RemoteIP = netip.MustParseAddr("2001:db8::1")
	none := base()
	none.Exe, none.RemotePort, none.Hosts = "/home/me/unknown", 65000, []string{"nowhere.invalid"}
	return []*shared.Connection{app, tracker, uidOnly, none}
}

func BenchmarkDecide(b *testing.B) {
	for _, n := range []int{10, 1000, 100000} {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			s := NewSet(benchRules(n))
			conns := benchConns()
			for _, c := range conns {
				s.Decide(c, now)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				s.Decide(conns[i%len(conns)], now)
				i++
			}
		})
	}
}

func BenchmarkNewSet(b *testing.B) {
	for _, n := range []int{1000, 100000} {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			rules := benchRules(n)
			b.ReportAllocs()
			for b.Loop() {
				NewSet(rules)
			}
		})
	}
}

// TestBenchRulesAreExercised keeps the benchmark honest: its connections
// must reach competing rules, not a trivially empty path.
func TestBenchRulesAreExercised(t *testing.T) {
	s := NewSet(benchRules(1000))
	conns := benchConns()
	for i, want := range []string{"multi", "multi", "some", "catch-all"} {
		d := s.Decide(conns[i], now)
		ex := s.Explain(conns[i], now)
		if d.Rule == nil {
			t.Fatalf("conn %d: no rule: %s", i, d.Explanation)
		}
		switch want {
		case "multi":
			if len(ex) < 3 || d.RunnerUp == nil {
				t.Errorf("conn %d: only %d candidates", i, len(ex))
			}
		case "catch-all":
			if d.Rule.ID != "catch-all" {
				t.Errorf("conn %d: won by %s, want the catch-all", i, d.Rule.ID)
			}
		}
		if idx, _ := s.Lookup(d.Rule.ID); idx == 0 {
			t.Errorf("conn %d: the winner is the first rule", i)
		}
		t.Logf("conn %d: %d candidates; %s", i, len(ex), d.Explanation)
	}
}

// BenchmarkDecidePatterns: the benchmark's rules with one in a hundred
// replaced by a unit glob and one in a hundred by a command-line glob, as
// in tgbench's mix: rules no exe, host, address or port narrows.
func BenchmarkDecidePatterns(b *testing.B) {
	for _, n := range []int{1000, 100000} {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			rs := benchRules(n)
			for i := 0; i+1 < len(rs)-12; i += 100 {
				rs[i].Match = shared.Match{Unit: fmt.Sprintf("batch%d-*.service", i)}
				rs[i+1].Match = shared.Match{Cmdline: fmt.Sprintf("worker%d --queue *", i)}
			}
			s := NewSet(rs)
			conns := benchConns()
			for _, c := range conns {
				c.Unit = "session-2.scope"
				s.Decide(c, now)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				s.Decide(conns[i%len(conns)], now)
				i++
			}
		})
	}
}
