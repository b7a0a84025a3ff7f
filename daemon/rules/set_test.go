package rules

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-fw/tollgate/shared"
)

var (
	now    = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	shaA   = strings.Repeat("a1", 32)
	shaB   = strings.Repeat("b2", 32)
	pfx    = netip.MustParsePrefix
	u32    = func(n uint32) *uint32 { return &n }
	allowR = func(id string, m shared.Match) shared.Rule {
		return shared.Rule{ID: id, Action: shared.ActionAllow, Lifetime: shared.LifetimeForever, Enabled: true, Match: m}
	}
)

// conn is an outgoing HTTPS connection of curl run by uid 1000.
func conn() *shared.Connection {
	return &shared.Connection{
		ID: 1, Time: now, Direction: shared.DirectionOut, Proto: shared.ProtoTCP, ProtoNum: 6,
		LocalIP: netip.MustParseAddr("10.0.0.2"), LocalPort: 40000,
		RemoteIP: netip.MustParseAddr("93.184.216.34"), RemotePort: 443, Iface: "eth0",
		UID: 1000, GID: 1000, PID: 4242, PIDStart: 777,
		Exe: "/usr/bin/curl", ExeSHA256: strings.ToUpper(shaA), Cmdline: "curl https://example.org/x",
		Unit: "user@1000.service", User: "me", Attribution: shared.AttributedProcess,
		Hosts: []string{"www.Example.org"},
	}
}

func TestDecideFields(t *testing.T) {
	uidOnly := func(c *shared.Connection) {
		c.PID, c.PIDStart, c.Exe, c.ExeSHA256, c.Cmdline, c.Unit = 0, 0, "", "", "", ""
		c.Attribution = shared.AttributedUIDOnly
	}
	tests := []struct {
		name  string
		rule  func(*shared.Rule)
		conn  func(*shared.Connection)
		match bool
		host  string // HostMatched when it matches
	}{
		{name: "catch-all", match: true},
		{name: "catch-all, uid-only connection", conn: uidOnly, match: true},
		{name: "disabled", rule: func(r *shared.Rule) { r.Enabled = false }},
		{name: "unknown action", rule: func(r *shared.Rule) { r.Action = "accept" }},

		{name: "exe exact", rule: func(r *shared.Rule) { r.Match.Exe = "/usr/bin/curl" }, match: true},
		{name: "exe other", rule: func(r *shared.Rule) { r.Match.Exe = "/usr/bin/wget" }},
		{name: "exe glob dir", rule: func(r *shared.Rule) { r.Match.Exe = "/usr/*/curl" }, match: true},
		{name: "exe glob base", rule: func(r *shared.Rule) { r.Match.Exe = "/usr/bin/c?rl" }, match: true},
		{name: "exe glob class", rule: func(r *shared.Rule) { r.Match.Exe = "/usr/bin/[a-c]url" }, match: true},
		{name: "exe glob does not cross /", rule: func(r *shared.Rule) { r.Match.Exe = "/usr/*" }},
		{name: "exe glob other base", rule: func(r *shared.Rule) { r.Match.Exe = "/usr/*/wget" }},
		{name: "exe, uid-only connection", rule: func(r *shared.Rule) { r.Match.Exe = "/usr/bin/curl" },
			conn: func(c *shared.Connection) { c.PID = 0; c.Attribution = shared.AttributedUIDOnly }},
		{name: "exe glob, uid-only connection", rule: func(r *shared.Rule) { r.Match.Exe = "/usr/*/curl" }, conn: uidOnly},

		{name: "sha256 (case-insensitive)", rule: func(r *shared.Rule) { r.Match.ExeSHA256 = shaA }, match: true},
		{name: "sha256 other", rule: func(r *shared.Rule) { r.Match.ExeSHA256 = shaB }},
		{name: "sha256 unknown", rule: func(r *shared.Rule) { r.Match.ExeSHA256 = shaA },
			conn: func(c *shared.Connection) { c.ExeSHA256 = "" }},
		{name: "sha256, uid-only", rule: func(r *shared.Rule) { r.Match.ExeSHA256 = shaA },
			conn: func(c *shared.Connection) { c.PID = 0 }},

		{name: "cmdline exact", rule: func(r *shared.Rule) { r.Match.Cmdline = "curl https://example.org/x" }, match: true},
		{name: "cmdline glob crosses /", rule: func(r *shared.Rule) { r.Match.Cmdline = "curl *" }, match: true},
		{name: "cmdline other", rule: func(r *shared.Rule) { r.Match.Cmdline = "wget *" }},
		{name: "cmdline, uid-only", rule: func(r *shared.Rule) { r.Match.Cmdline = "*" }, conn: uidOnly},

		{name: "unit exact", rule: func(r *shared.Rule) { r.Match.Unit = "user@1000.service" }, match: true},
		{name: "unit glob", rule: func(r *shared.Rule) { r.Match.Unit = "user@*.service" }, match: true},
		{name: "unit other", rule: func(r *shared.Rule) { r.Match.Unit = "sshd.service" }},
		{name: "unit, uid-only", rule: func(r *shared.Rule) { r.Match.Unit = "*" }, conn: uidOnly},

		{name: "uid", rule: func(r *shared.Rule) { r.Match.UID = u32(1000) }, match: true},
		{name: "uid, uid-only connection", rule: func(r *shared.Rule) { r.Match.UID = u32(1000) }, conn: uidOnly, match: true},
		{name: "uid other", rule: func(r *shared.Rule) { r.Match.UID = u32(0) }},
		{name: "uid unknown", rule: func(r *shared.Rule) { r.Match.UID = u32(1000) }, conn: func(c *shared.Connection) { c.UID = -1 }},
		{name: "gid", rule: func(r *shared.Rule) { r.Match.GID = u32(1000) }, match: true},
		{name: "gid other", rule: func(r *shared.Rule) { r.Match.GID = u32(27) }},
		{name: "gid unknown", rule: func(r *shared.Rule) { r.Match.GID = u32(1000) }, conn: func(c *shared.Connection) { c.GID = -1 }},

		{name: "direction out", rule: func(r *shared.Rule) { r.Match.Direction = shared.DirectionOut }, match: true},
		{name: "direction in", rule: func(r *shared.Rule) { r.Match.Direction = shared.DirectionIn }},
		{name: "proto tcp", rule: func(r *shared.Rule) { r.Match.Proto = shared.ProtoTCP }, match: true},
		{name: "proto any", rule: func(r *shared.Rule) { r.Match.Proto = shared.ProtoAny }, match: true},
		{name: "proto udp", rule: func(r *shared.Rule) { r.Match.Proto = shared.ProtoUDP }},

		{name: "host exact, other case", rule: func(r *shared.Rule) { r.Match.Host = "www.example.org" }, match: true, host: "www.Example.org"},
		{name: "host wildcard", rule: func(r *shared.Rule) { r.Match.Host = "*.example.org" }, match: true, host: "www.Example.org"},
		{name: "host wildcard tld", rule: func(r *shared.Rule) { r.Match.Host = "*.org" }, match: true, host: "www.Example.org"},
		{name: "host parent", rule: func(r *shared.Rule) { r.Match.Host = "example.org" }},
		{name: "host wildcard is not the apex", rule: func(r *shared.Rule) { r.Match.Host = "*.www.example.org" }},
		{name: "host with no names known", rule: func(r *shared.Rule) { r.Match.Host = "*.example.org" },
			conn: func(c *shared.Connection) { c.Hosts = nil }},
		{name: "host second name", rule: func(r *shared.Rule) { r.Match.Host = "cdn.example.net" },
			conn: func(c *shared.Connection) { c.Hosts = []string{"a.example.org", "CDN.example.net."} }, match: true, host: "CDN.example.net."},
		{name: "host wildcard second name", rule: func(r *shared.Rule) { r.Match.Host = "*.example.net" },
			conn: func(c *shared.Connection) { c.Hosts = []string{"a.example.org", "x.cdn.example.net"} }, match: true, host: "x.cdn.example.net"},
		{name: "host named by another user's lookup", rule: func(r *shared.Rule) { r.Match.Host = "*.example.org" },
			conn: func(c *shared.Connection) { c.HostSource = shared.HostFromAny }},
		{name: "host named by the same user's lookup", rule: func(r *shared.Rule) { r.Match.Host = "*.example.org" },
			conn: func(c *shared.Connection) { c.HostSource = shared.HostFromUser }, match: true, host: "www.Example.org"},
		{name: "host, name too long", rule: func(r *shared.Rule) { r.Match.Host = "*.org" },
			conn: func(c *shared.Connection) { c.Hosts = []string{strings.Repeat("a.", 200) + "org"} }},

		{name: "ip single", rule: func(r *shared.Rule) { r.Match.IP = pfx("93.184.216.34/32") }, match: true},
		{name: "ip cidr", rule: func(r *shared.Rule) { r.Match.IP = pfx("93.184.0.0/16") }, match: true},
		{name: "ip everything v4", rule: func(r *shared.Rule) { r.Match.IP = pfx("0.0.0.0/0") }, match: true},
		{name: "ip other", rule: func(r *shared.Rule) { r.Match.IP = pfx("10.0.0.0/8") }},
		{name: "ip v6 rule, v4 connection", rule: func(r *shared.Rule) { r.Match.IP = pfx("::/0") }},
		{name: "ip v4 rule, mapped connection", rule: func(r *shared.Rule) { r.Match.IP = pfx("93.184.216.0/24") },
			conn: func(c *shared.Connection) { c.RemoteIP = netip.MustParseAddr("::ffff:93.184.216.34") }, match: true},
		{name: "ip v6", rule: func(r *shared.Rule) { r.Match.IP = pfx("2001:db8::/32") },
			conn: func(c *shared.Connection) { c.RemoteIP = netip.MustParseAddr("2001:db8::7") }, match: true},
		{name: "ip, address unknown", rule: func(r *shared.Rule) { r.Match.IP = pfx("0.0.0.0/0") },
			conn: func(c *shared.Connection) { c.RemoteIP = netip.Addr{} }},

		{name: "port", rule: func(r *shared.Rule) { r.Match.Port = shared.PortRange{Lo: 443, Hi: 443} }, match: true},
		{name: "port range", rule: func(r *shared.Rule) { r.Match.Port = shared.PortRange{Lo: 400, Hi: 500} }, match: true},
		{name: "port other", rule: func(r *shared.Rule) { r.Match.Port = shared.PortRange{Lo: 80, Hi: 80} }},
		{name: "port, icmp", rule: func(r *shared.Rule) { r.Match.Port = shared.PortRange{Lo: 1, Hi: 65535} },
			conn: func(c *shared.Connection) { c.Proto, c.RemotePort, c.LocalPort = shared.ProtoICMP, 0, 0 }},
		{name: "local port", rule: func(r *shared.Rule) { r.Match.LocalPort = shared.PortRange{Lo: 32768, Hi: 60999} }, match: true},
		{name: "local port other", rule: func(r *shared.Rule) { r.Match.LocalPort = shared.PortRange{Lo: 443, Hi: 443} }},

		{name: "iface", rule: func(r *shared.Rule) { r.Match.Iface = "eth0" }, match: true},
		{name: "iface other", rule: func(r *shared.Rule) { r.Match.Iface = "wlan0" }},

		{name: "owner system", rule: func(r *shared.Rule) { r.Owner = shared.OwnerSystem },
			conn: func(c *shared.Connection) { c.UID = -1 }, match: true},
		{name: "owner same uid", rule: func(r *shared.Rule) { r.Owner = 1000 }, match: true},
		{name: "owner same uid, uid-only", rule: func(r *shared.Rule) { r.Owner = 1000 }, conn: uidOnly, match: true},
		{name: "owner other uid", rule: func(r *shared.Rule) { r.Owner = 1001 }},
		{name: "owner, uid unknown", rule: func(r *shared.Rule) { r.Owner = 1000 }, conn: func(c *shared.Connection) { c.UID = -1 }},

		{name: "until later", rule: func(r *shared.Rule) { r.Lifetime, r.Until = shared.LifetimeUntil, now.Add(time.Second) }, match: true},
		{name: "until now", rule: func(r *shared.Rule) { r.Lifetime, r.Until = shared.LifetimeUntil, now }, match: true},
		{name: "until passed", rule: func(r *shared.Rule) { r.Lifetime, r.Until = shared.LifetimeUntil, now.Add(-time.Nanosecond) }},
		{name: "process same", rule: func(r *shared.Rule) { r.Lifetime, r.PID, r.PIDStart = shared.LifetimeProcess, 4242, 777 }, match: true},
		{name: "process reused pid", rule: func(r *shared.Rule) { r.Lifetime, r.PID, r.PIDStart = shared.LifetimeProcess, 4242, 776 }},
		{name: "process other pid", rule: func(r *shared.Rule) { r.Lifetime, r.PID, r.PIDStart = shared.LifetimeProcess, 4243, 777 }},
		{name: "process without pid", rule: func(r *shared.Rule) { r.Lifetime = shared.LifetimeProcess }, conn: uidOnly},
		{name: "session", rule: func(r *shared.Rule) { r.Lifetime, r.Session = shared.LifetimeSession, ":1.5" }, match: true},
		{name: "once", rule: func(r *shared.Rule) { r.Lifetime = shared.LifetimeOnce }, match: true},

		{name: "all fields", rule: func(r *shared.Rule) {
			r.Owner = 1000
			r.Match = shared.Match{Exe: "/usr/bin/curl", ExeSHA256: shaA, Cmdline: "curl *", Unit: "user@*",
				UID: u32(1000), GID: u32(1000), Direction: shared.DirectionOut, Proto: shared.ProtoTCP,
				Host: "*.example.org", IP: pfx("93.184.216.0/24"), Port: shared.PortRange{Lo: 443, Hi: 443},
				LocalPort: shared.PortRange{Lo: 1024, Hi: 65535}, Iface: "eth0"}
		}, match: true, host: "www.Example.org"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := allowR("r1", shared.Match{})
			if tt.rule != nil {
				tt.rule(&r)
			}
			c := conn()
			if tt.conn != nil {
				tt.conn(c)
			}
			s := NewSet([]shared.Rule{r})
			d := s.Decide(c, now)
			if got := d.Rule != nil; got != tt.match {
				t.Fatalf("matched %v, want %v (%s)", got, tt.match, d.Explanation)
			}
			if !tt.match {
				if d.Action != "" || d.HostMatched != "" || !strings.HasPrefix(d.Explanation, "no rule matched") {
					t.Errorf("no-match decision %+v", d)
				}
				if ex := s.Explain(c, now); len(ex) != 0 {
					t.Errorf("Explain lists %d candidates", len(ex))
				}
				return
			}
			if d.Rule.ID != "r1" || d.Action != r.Action || d.HostMatched != tt.host {
				t.Errorf("decision %+v, want rule r1, host %q", d, tt.host)
			}
			if d.RunnerUp != nil || d.WonBy != ByNothing || !strings.Contains(d.Explanation, "no other rule matched") {
				t.Errorf("single match decision %+v", d)
			}
			if ex := s.Explain(c, now); len(ex) != 1 || ex[0].Rule != d.Rule || ex[0].HostMatched != tt.host {
				t.Errorf("Explain = %+v", ex)
			}
		})
	}
}

func TestDecidePrecedence(t *testing.T) {
	deny := func(r shared.Rule) shared.Rule { r.Action = shared.ActionDeny; return r }
	reject := func(r shared.Rule) shared.Rule { r.Action = shared.ActionReject; return r }
	prio := func(p int, r shared.Rule) shared.Rule { r.Priority = p; return r }
	named := func(n string, r shared.Rule) shared.Rule { r.Name = n; return r }
	exe := shared.Match{Exe: "/usr/bin/curl"}
	exePort := shared.Match{Exe: "/usr/bin/curl", Port: shared.PortRange{Lo: 443, Hi: 443}}
	tests := []struct {
		name   string
		rules  []shared.Rule
		winner string
		runner string
		by     Reason
		expl   []string // substrings of the explanation
	}{
		{
			name:   "more specific wins",
			rules:  []shared.Rule{deny(allowR("generic", shared.Match{Port: shared.PortRange{Lo: 443, Hi: 443}})), allowR("app", exePort)},
			winner: "app", runner: "generic", by: BySpecificity,
			expl: []string{`rule app: allow, priority 0, specificity 60; beat rule generic (deny, priority 0, specificity 20) by specificity`},
		},
		{
			name:   "more specific deny wins over app allow",
			rules:  []shared.Rule{allowR("app", exe), named("curl-https", deny(allowR("12", exePort)))},
			winner: "12", runner: "app", by: BySpecificity,
			expl: []string{`rule 12 "curl-https": deny, priority 0, specificity 60; beat rule app (allow`, "by specificity"},
		},
		{
			name:   "priority beats specificity",
			rules:  []shared.Rule{deny(allowR("specific", exePort)), prio(1, allowR("broad", shared.Match{}))},
			winner: "broad", runner: "specific", by: ByPriority,
			expl: []string{"priority 1", "by priority"},
		},
		{
			name:   "negative priority loses to catch-all",
			rules:  []shared.Rule{prio(-1, deny(allowR("low", exePort))), allowR("all", shared.Match{})},
			winner: "all", runner: "low", by: ByPriority,
		},
		{
			name:   "deny beats allow at equal specificity",
			rules:  []shared.Rule{allowR("a", exe), deny(allowR("b", exe))},
			winner: "b", runner: "a", by: ByAction,
			expl: []string{"by action"},
		},
		{
			name:   "reject beats allow at equal specificity",
			rules:  []shared.Rule{reject(allowR("b", exe)), allowR("a", exe)},
			winner: "b", runner: "a", by: ByAction,
		},
		{
			name:   "deny and reject tie: lower id",
			rules:  []shared.Rule{reject(allowR("y", exe)), deny(allowR("x", exe))},
			winner: "x", runner: "y", by: ByID,
			expl: []string{"by id"},
		},
		{
			name:   "allow tie: lower id",
			rules:  []shared.Rule{allowR("b", exe), allowR("a", exe)},
			winner: "a", runner: "b", by: ByID,
		},
		{
			name:   "same id: earlier rule",
			rules:  []shared.Rule{named("first", allowR("same", exe)), named("second", allowR("same", exe))},
			winner: "same", runner: "same", by: ByID,
			expl: []string{`rule same "first"`, `beat rule same "second"`},
		},
		{
			name: "three rules: runner-up is the best loser",
			rules: []shared.Rule{allowR("catch", shared.Match{}), allowR("exe", exe),
				deny(allowR("exe-port", exePort)), allowR("dir", shared.Match{Direction: shared.DirectionOut})},
			winner: "exe-port", runner: "exe", by: BySpecificity,
		},
		{
			name:   "exact host beats wildcard",
			rules:  []shared.Rule{deny(allowR("wild", shared.Match{Host: "*.example.org"})), allowR("exact", shared.Match{Host: "www.example.org"})},
			winner: "exact", runner: "wild", by: BySpecificity,
		},
		{
			name:   "narrow cidr beats wide",
			rules:  []shared.Rule{deny(allowR("wide", shared.Match{IP: pfx("93.0.0.0/8")})), allowR("narrow", shared.Match{IP: pfx("93.184.216.0/24")})},
			winner: "narrow", runner: "wide", by: BySpecificity,
		},
		{
			name:   "exact exe beats glob",
			rules:  []shared.Rule{deny(allowR("glob", shared.Match{Exe: "/usr/bin/*"})), allowR("exact", exe)},
			winner: "exact", runner: "glob", by: BySpecificity,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The order rules are given in must not matter (except for
			// the same-id tie, which is about order).
			orders := [][]shared.Rule{tt.rules}
			if tt.name != "same id: earlier rule" {
				rev := slices.Clone(tt.rules)
				slices.Reverse(rev)
				orders = append(orders, rev)
			}
			for _, rules := range orders {
				s := NewSet(rules)
				d := s.Decide(conn(), now)
				if d.Rule == nil || d.Rule.ID != tt.winner {
					t.Fatalf("winner %v, want %s: %s", d.Rule, tt.winner, d.Explanation)
				}
				if d.RunnerUp == nil || d.RunnerUp.ID != tt.runner || d.WonBy != tt.by {
					t.Errorf("runner-up %v by %v, want %s by %v", d.RunnerUp, d.WonBy, tt.runner, tt.by)
				}
				if tt.name == "same id: earlier rule" && d.Rule.Name != "first" {
					t.Errorf("same-id tie went to %q", d.Rule.Name)
				}
				for _, sub := range tt.expl {
					if !strings.Contains(d.Explanation, sub) {
						t.Errorf("explanation %q lacks %q", d.Explanation, sub)
					}
				}
				ex := s.Explain(conn(), now)
				if len(ex) == 0 || ex[0].Rule != d.Rule || ex[0].LostBy != ByNothing {
					t.Fatalf("Explain winner %+v, Decide %v", ex, d.Rule.ID)
				}
				if len(ex) < 2 || ex[1].Rule != d.RunnerUp || ex[1].LostBy != tt.by {
					t.Errorf("Explain second %+v, want %s by %v", ex[1], tt.runner, tt.by)
				}
				// Explain is in strict precedence order.
				for i := 1; i < len(ex); i++ {
					if ok, _ := better(s, s.indexOf(ex[i].Rule), s.indexOf(ex[i-1].Rule)); ok {
						t.Errorf("Explain out of order at %d", i)
					}
				}
			}
		})
	}
}

// indexOf finds a rule the set returned by pointer (tests only); -1 when
// it is not the set's.
func (s *Set) indexOf(r *shared.Rule) int32 {
	for i := range s.recs {
		if s.ruleAt(int32(i)) == r {
			return int32(i)
		}
	}
	return -1
}

func TestExplainDeduplicatesNames(t *testing.T) {
	s := NewSet([]shared.Rule{
		allowR("wild", shared.Match{Host: "*.example.org"}),
		allowR("all", shared.Match{}),
	})
	c := conn()
	c.Hosts = []string{"a.example.org", "b.example.org", "A.EXAMPLE.ORG"}
	ex := s.Explain(c, now)
	if len(ex) != 2 || ex[0].Rule.ID != "wild" || ex[0].HostMatched != "a.example.org" || ex[1].Rule.ID != "all" {
		t.Fatalf("Explain = %+v", ex)
	}
	d := s.Decide(c, now)
	if d.Rule.ID != "wild" || d.RunnerUp == nil || d.RunnerUp.ID != "all" || d.HostMatched != "a.example.org" {
		t.Errorf("Decide = %+v", d)
	}
}

func TestSetAccessors(t *testing.T) {
	var nilSet *Set
	if nilSet.Len() != 0 || nilSet.Decide(conn(), now).Rule != nil || nilSet.Explain(conn(), now) != nil {
		t.Error("nil set is not empty")
	}
	if _, ok := nilSet.Rule("x"); ok {
		t.Error("nil set has a rule")
	}
	for range nilSet.All() {
		t.Error("nil set yields rules")
	}

	in := []shared.Rule{allowR("a", shared.Match{UID: u32(1000)}), allowR("b", shared.Match{}), allowR("c", shared.Match{})}
	in[2].Enabled = false
	s := NewSet(in)
	if s.Len() != 3 {
		t.Errorf("Len = %d", s.Len())
	}
	var ids []string
	for r := range s.All() {
		ids = append(ids, r.ID)
	}
	if !slices.Equal(ids, []string{"a", "b", "c"}) {
		t.Errorf("All yields %v", ids)
	}
	if r, ok := s.Rule("b"); !ok || r.ID != "b" {
		t.Errorf("Rule(b) = %v, %v", r, ok)
	}
	if _, ok := s.Rule("zz"); ok {
		t.Error("Rule(zz) found")
	}
	// The set owns copies: changing the input afterwards changes nothing.
	*in[0].Match.UID = 0
	in[0].ID = "changed"
	if d := s.Decide(conn(), now); d.Rule == nil || d.Rule.ID != "a" {
		t.Errorf("decision after mutating input: %+v", d)
	}
	if d := NewSet(nil).Decide(conn(), now); d.Rule != nil || d.Explanation != "no rule matched (0 rules in force)" {
		t.Errorf("empty set: %+v", d)
	}
	if d := s.Decide(nil, now); d.Rule != nil {
		t.Errorf("nil connection decided: %+v", d)
	}
	if !strings.Contains(s.Decide(&shared.Connection{UID: -1, GID: -1}, now).Explanation, "rule") {
		t.Error("bare connection has no explanation")
	}
}

func TestDecideDoesNotAllocate(t *testing.T) {
	s := NewSet(benchRules(1000))
	for _, c := range benchConns() {
		s.Decide(c, now) // warm the explanation cache
		if n := testing.AllocsPerRun(50, func() { s.Decide(c, now) }); n != 0 {
			t.Errorf("Decide(%s) allocates %v times per call", c.Exe, n)
		}
	}
	// Names that need lower-casing are hashed from a buffer on the stack.
	c := benchConns()[1]
	lower := len(s.Explain(c, now))
	c.Hosts = []string{"ADS7.Tracker3.NET.", "cdn.TRACKER3.net"}
	if upper := len(s.Explain(c, now)); upper != lower || lower < 3 {
		t.Errorf("upper-case names: %d candidates, lower-case %d", upper, lower)
	}
	if n := testing.AllocsPerRun(50, func() { s.Decide(c, now) }); n != 0 {
		t.Errorf("Decide with upper-case names allocates %v times per call", n)
	}
}

// TestDecideManyWinners: in a set larger than the cache of built rules,
// every winner comes back as its own rule, however often the cache evicts.
func TestDecideManyWinners(t *testing.T) {
	const n = 3 * cacheMax
	rs := make([]shared.Rule, n)
	for i := range rs {
		rs[i] = allowR(fmt.Sprintf("r%d", i), shared.Match{Port: shared.PortRange{Lo: uint16(1 + i), Hi: uint16(1 + i)}})
	}
	s := NewSet(rs)
	c := conn()
	for round := range 2 {
		for i := range n {
			c.RemotePort = uint16(1 + (i*7919)%n)
			d := s.Decide(c, now)
			want := fmt.Sprintf("r%d", c.RemotePort-1)
			if d.Rule == nil || d.Rule.ID != want || !strings.Contains(d.Explanation, want) {
				t.Fatalf("round %d port %d: %+v, want %s", round, c.RemotePort, d, want)
			}
		}
	}
}

// TestDecidePrefixLengths: IPv4 prefixes of every length, many under one
// /16 and others elsewhere, are found at their own lengths only.
func TestDecidePrefixLengths(t *testing.T) {
	var rs []shared.Rule
	for bits := 0; bits <= 32; bits++ {
		p := netip.PrefixFrom(netip.MustParseAddr("10.1.2.3"), bits).Masked()
		rs = append(rs, allowR(fmt.Sprintf("in%d", bits), shared.Match{IP: p}))
		q := netip.PrefixFrom(netip.MustParseAddr("172.16.9.9"), bits).Masked()
		rs = append(rs, allowR(fmt.Sprintf("out%d", bits), shared.Match{IP: q, Port: shared.PortRange{Lo: 1, Hi: 1}}))
	}
	s := NewSet(rs)
	for _, tt := range []struct {
		ip   string
		want int // how many "in" rules match
	}{{"10.1.2.3", 33}, {"10.1.2.4", 30}, {"10.1.3.3", 24}, {"10.2.2.3", 15}, {"11.1.2.3", 8}, {"200.1.2.3", 1}} {
		c := conn()
		c.RemoteIP = netip.MustParseAddr(tt.ip)
		ex := s.Explain(c, now)
		if len(ex) != tt.want {
			t.Errorf("%s: %d candidates, want %d", tt.ip, len(ex), tt.want)
		}
		for _, e := range ex {
			if !e.Rule.Match.IP.Contains(c.RemoteIP) || strings.HasPrefix(e.Rule.ID, "out") {
				t.Errorf("%s: %s matched", tt.ip, e.Rule.ID)
			}
		}
	}
}

// TestTableMergesEqualTags: keys whose tags are equal share one chain, and
// the table keeps every tag through growth.
func TestTableMergesEqualTags(t *testing.T) {
	var tb table
	tb.init(1)
	for i := uint32(1); i <= 1000; i++ {
		tb.set(i<<4|kindPort, i)
	}
	if old := tb.set(7<<4|kindPort, 5000); old != 7 {
		t.Errorf("set of an equal tag gave %d, want the old value 7", old)
	}
	tb.or(3<<4|kindMask4, 1)
	tb.or(3<<4|kindMask4, 4)
	for i := uint32(1); i <= 1000; i++ {
		if got, want := tb.get(i<<4|kindPort), i; got != want && i != 7 {
			t.Fatalf("get(%d) = %d", i, got)
		}
	}
	if tb.get(3<<4|kindMask4) != 5 || tb.get(3<<4|kindHost) != 0 || tb.get(2000<<4|kindPort) != 0 {
		t.Error("masks or absent keys wrong")
	}
}

// TestDecideConcurrent: decisions from many goroutines (sharing the
// explanation caches) agree with sequential ones. Run with -race.
func TestDecideConcurrent(t *testing.T) {
	s := NewSet(benchRules(1000))
	conns := benchConns()
	want := make([]Decision, len(conns))
	for i, c := range conns {
		want[i] = s.Decide(c, now)
	}
	errs := make(chan string, 8)
	done := make(chan struct{})
	for g := range 8 {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range 500 {
				k := (i + g) % len(conns)
				if d := s.Decide(conns[k], now); d != want[k] {
					errs <- fmt.Sprintf("goroutine %d: conn %d decided %+v, want %+v", g, k, d, want[k])
					return
				}
			}
		}()
	}
	for range 8 {
		<-done
	}
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
