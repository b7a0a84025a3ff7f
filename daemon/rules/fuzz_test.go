package rules

import (
	"fmt"
	"net/netip"
	"path"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-fw/tollgate/shared"
)

// picker draws choices from fuzz bytes; past the end it yields zeros.
type picker struct{ data []byte }

func (p *picker) n(k int) int {
	if len(p.data) == 0 {
		return 0
	}
	b := p.data[0]
	p.data = p.data[1:]
	return int(b) % k
}

func pick[T any](p *picker, xs ...T) T { return xs[p.n(len(xs))] }

// Vocabularies small enough that rules and connections often meet.
var (
	fzExes      = []string{"", "", "/usr/bin/curl", "/usr/bin/ssh", "/usr/*/curl", "/usr/bin/*", "/opt/[a-z]*/app", "/opt/*/app"}
	fzConnExes  = []string{"/usr/bin/curl", "/usr/bin/ssh", "/opt/x/app", "/usr/local/bin/curl", ""}
	fzHosts     = []string{"", "", "example.org", "*.example.org", "www.example.org", "*.org", "*.www.example.org", "Example.ORG."}
	fzConnHosts = [][]string{nil, {"www.example.org"}, {"WWW.Example.ORG."}, {"a.b.example.org", "example.org"}, {"other.net"}, {"x.org", "www.example.org"}}
	fzIPs       = []string{"", "", "10.0.0.1/32", "10.0.0.0/8", "10.0.0.0/24", "2001:db8::/32", "2001:db8::1/128", "0.0.0.0/0", "::/0", "::ffff:10.0.0.0/104"}
	fzRemotes   = []string{"10.0.0.1", "10.0.1.5", "2001:db8::1", "::ffff:10.0.0.1", "", "fe80::1%eth0", "192.0.2.1"}
	fzPorts     = []shared.PortRange{{}, {}, {Lo: 443, Hi: 443}, {Lo: 22, Hi: 22}, {Lo: 1, Hi: 1024}, {Lo: 400, Hi: 500}}
	fzConnPorts = []uint16{443, 22, 8080, 0}
	fzCmdlines  = []string{"", "", "curl *", "curl https://example.org/x", "ssh *"}
	fzConnCmds  = []string{"curl https://example.org/x", "ssh host", ""}
	fzUnits     = []string{"", "", "user@1000.service", "*.service", "sshd.service"}
	fzConnUnits = []string{"user@1000.service", "sshd.service", ""}
	fzSHA       = []string{"", "", strings.Repeat("a", 64), strings.Repeat("b", 64)}
	fzConnSHA   = []string{strings.Repeat("a", 64), strings.Repeat("A", 64), strings.Repeat("b", 64), ""}
	fzUIDs      = []*uint32{nil, nil, u32(0), u32(1000)}
	fzConnUIDs  = []int64{0, 1000, 1001, -1}
	fzIfaces    = []string{"", "", "eth0", "lo"}
	fzDirs      = []shared.Direction{"", "", shared.DirectionOut, shared.DirectionIn}
	fzProtos    = []shared.Proto{"", "", shared.ProtoTCP, shared.ProtoUDP, shared.ProtoAny, shared.ProtoICMP}
	fzActions   = []shared.Action{shared.ActionAllow, shared.ActionDeny, shared.ActionReject, "bogus"}
	fzFuzzNow   = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
)

func prefixOrZero(s string) netip.Prefix {
	if s == "" {
		return netip.Prefix{}
	}
	return netip.MustParsePrefix(s)
}

func fuzzRule(p *picker, i int) shared.Rule {
	r := shared.Rule{
		ID:       pick(p, fmt.Sprintf("r%d", i), fmt.Sprintf("r%d", i), "dup"),
		Action:   fzActions[p.n(len(fzActions))],
		Lifetime: shared.LifetimeForever,
		Enabled:  p.n(8) != 0,
		Priority: pick(p, 0, 0, 0, 1, -1),
		Owner:    pick(p, uint32(0), uint32(0), uint32(1000), uint32(1001)),
	}
	// Each match field is given one time in three, so that rules often
	// match together and tie on specificity.
	m := &r.Match
	sometimes := func(set func()) {
		if p.n(3) == 0 {
			set()
		}
	}
	sometimes(func() { m.Exe = pick(p, fzExes...) })
	sometimes(func() { m.ExeSHA256 = pick(p, fzSHA...) })
	sometimes(func() { m.Cmdline = pick(p, fzCmdlines...) })
	sometimes(func() { m.Unit = pick(p, fzUnits...) })
	sometimes(func() { m.UID = pick(p, fzUIDs...) })
	sometimes(func() { m.GID = pick(p, fzUIDs...) })
	sometimes(func() { m.Direction = pick(p, fzDirs...) })
	sometimes(func() { m.Proto = pick(p, fzProtos...) })
	sometimes(func() { m.Host = pick(p, fzHosts...) })
	sometimes(func() { m.IP = prefixOrZero(pick(p, fzIPs...)) })
	sometimes(func() { m.Port = pick(p, fzPorts...) })
	sometimes(func() { m.LocalPort = pick(p, fzPorts...) })
	sometimes(func() { m.Iface = pick(p, fzIfaces...) })
	switch p.n(5) {
	case 1:
		r.Lifetime, r.Until = shared.LifetimeUntil, fzFuzzNow.Add(time.Duration(p.n(3)-1)*time.Hour)
	case 2:
		r.Lifetime, r.PID, r.PIDStart = shared.LifetimeProcess, pick(p, 0, 42, 43), uint64(pick(p, 7, 8))
	case 3:
		r.Lifetime = shared.LifetimeOnce
	}
	return r
}

func fuzzConn(p *picker) *shared.Connection {
	c := &shared.Connection{
		Direction: pick(p, shared.DirectionOut, shared.DirectionIn),
		Proto:     pick(p, shared.ProtoTCP, shared.ProtoUDP, shared.ProtoICMP),
		LocalPort: pick(p, fzConnPorts...), RemotePort: pick(p, fzConnPorts...),
		Iface: pick(p, "eth0", "lo", ""), UID: pick(p, fzConnUIDs...), GID: pick(p, fzConnUIDs...),
		PID: pick(p, 42, 43, 0), PIDStart: uint64(pick(p, 7, 8)),
		Exe: pick(p, fzConnExes...), ExeSHA256: pick(p, fzConnSHA...), Cmdline: pick(p, fzConnCmds...),
		Unit: pick(p, fzConnUnits...), Hosts: pick(p, fzConnHosts...),
	}
	if s := pick(p, fzRemotes...); s != "" {
		c.RemoteIP = netip.MustParseAddr(s)
	}
	return c
}

// refMatches is the reference: DESIGN.md's rule semantics written as
// plainly as possible, with no index and no precomputation.
func refMatches(r *shared.Rule, c *shared.Connection, now time.Time) (bool, string) {
	m := &r.Match
	if !r.Enabled || !r.Action.Known() {
		return false, ""
	}
	if r.Lifetime == shared.LifetimeUntil && r.Until.Before(now) {
		return false, ""
	}
	if r.Lifetime == shared.LifetimeProcess && (r.PID == 0 || c.PID != r.PID || c.PIDStart != r.PIDStart) {
		return false, ""
	}
	if r.Owner != shared.OwnerSystem && c.UID != int64(r.Owner) {
		return false, ""
	}
	namesProcess := m.Exe != "" || m.ExeSHA256 != "" || m.Cmdline != "" || m.Unit != ""
	if namesProcess && c.PID == 0 {
		return false, ""
	}
	glob := func(pattern, s string) bool {
		ok, err := path.Match(pattern, s)
		return s != "" && err == nil && ok
	}
	if m.Exe != "" && !glob(m.Exe, c.Exe) {
		return false, ""
	}
	if m.ExeSHA256 != "" && (c.ExeSHA256 == "" || strings.ToLower(c.ExeSHA256) != m.ExeSHA256) {
		return false, ""
	}
	if m.Cmdline != "" && (c.Cmdline == "" || !shared.GlobMatch(m.Cmdline, c.Cmdline)) {
		return false, ""
	}
	if m.Unit != "" && !glob(m.Unit, c.Unit) {
		return false, ""
	}
	if m.UID != nil && c.UID != int64(*m.UID) || m.GID != nil && c.GID != int64(*m.GID) {
		return false, ""
	}
	if m.Direction != "" && m.Direction != c.Direction {
		return false, ""
	}
	if m.Proto != "" && m.Proto != shared.ProtoAny && m.Proto != c.Proto {
		return false, ""
	}
	if m.IP.IsValid() {
		ip := m.IP
		if ip.Addr().Is4In6() {
			ip = netip.PrefixFrom(ip.Addr().Unmap(), ip.Bits()-96)
		}
		if !ip.Contains(c.RemoteIP.Unmap().WithZone("")) {
			return false, ""
		}
	}
	if !m.Port.IsAny() && (c.RemotePort < m.Port.Lo || c.RemotePort > m.Port.Hi) {
		return false, ""
	}
	if !m.LocalPort.IsAny() && (c.LocalPort < m.LocalPort.Lo || c.LocalPort > m.LocalPort.Hi) {
		return false, ""
	}
	if m.Iface != "" && m.Iface != c.Iface {
		return false, ""
	}
	if m.Host != "" {
		if c.HostSource == shared.HostFromAny {
			return false, ""
		}
		for _, h := range c.Hosts {
			if shared.HostMatches(m.Host, h) {
				return true, h
			}
		}
		return false, ""
	}
	return true, ""
}

// refOrder ranks matching rules (by index into rules) as DESIGN.md says:
// priority, then specificity, then deny/reject over allow, then id, then
// position.
func refOrder(rules []shared.Rule, idx []int) {
	blocks := func(a shared.Action) int {
		if a == shared.ActionAllow {
			return 0
		}
		return 1
	}
	slices.SortFunc(idx, func(i, j int) int {
		a, b := &rules[i], &rules[j]
		if a.Priority != b.Priority {
			return b.Priority - a.Priority
		}
		if sa, sb := a.Match.Specificity(), b.Match.Specificity(); sa != sb {
			return sb - sa
		}
		if ba, bb := blocks(a.Action), blocks(b.Action); ba != bb {
			return bb - ba
		}
		if c := strings.Compare(a.ID, b.ID); c != 0 {
			return c
		}
		return i - j
	})
}

func checkAgainstReference(t *testing.T, rules []shared.Rule, c *shared.Connection) {
	t.Helper()
	s := NewSet(rules)
	var want []int
	hosts := map[int]string{}
	for i := range rules {
		if ok, h := refMatches(&rules[i], c, fzFuzzNow); ok {
			want = append(want, i)
			hosts[i] = h
		}
	}
	refOrder(rules, want)
	indexOf := func(r *shared.Rule) int { return int(s.indexOf(r)) }
	d := s.Decide(c, fzFuzzNow)
	if len(want) == 0 {
		if d.Rule != nil {
			t.Fatalf("Decide picked %d (%s), reference: no match\nconn %+v", indexOf(d.Rule), d.Explanation, c)
		}
	} else {
		if got := indexOf(d.Rule); got != want[0] {
			t.Fatalf("Decide picked %d, reference %d\nrules %+v\nconn %+v\n%s", got, want[0], rules, c, d.Explanation)
		}
		if d.HostMatched != hosts[want[0]] || d.Action != rules[want[0]].Action {
			t.Fatalf("host %q action %q, reference %q %q", d.HostMatched, d.Action, hosts[want[0]], rules[want[0]].Action)
		}
		if len(want) > 1 && indexOf(d.RunnerUp) != want[1] {
			t.Fatalf("runner-up %d, reference %d", indexOf(d.RunnerUp), want[1])
		}
		if len(want) == 1 && d.RunnerUp != nil {
			t.Fatalf("runner-up %d with a single match", indexOf(d.RunnerUp))
		}
	}
	ex := s.Explain(c, fzFuzzNow)
	if len(ex) != len(want) {
		t.Fatalf("Explain lists %d, reference %d", len(ex), len(want))
	}
	for k := range ex {
		if i := indexOf(ex[k].Rule); i != want[k] || ex[k].HostMatched != hosts[i] {
			t.Fatalf("Explain[%d] = rule %d host %q, reference %d %q", k, i, ex[k].HostMatched, want[k], hosts[want[k]])
		}
	}
}

func FuzzDecide(f *testing.F) {
	f.Add([]byte{3, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20})
	f.Add([]byte("\x07tollgate decides connections by rules; this seed is just varied bytes"))
	f.Add([]byte{5, 0, 2, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 1, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 3, 2})
	f.Fuzz(func(t *testing.T, data []byte) {
		p := &picker{data: data}
		n := 1 + p.n(8)
		rules := make([]shared.Rule, n)
		for i := range rules {
			rules[i] = fuzzRule(p, i)
		}
		checkAgainstReference(t, rules, fuzzConn(p))
	})
}

// TestDecideMatchesReference runs the fuzz property over many seeded
// random cases, so plain `go test` covers it too.
func TestDecideMatchesReference(t *testing.T) {
	state := uint64(1)
	next := func() byte {
		state = state*6364136223846793005 + 1442695040888963407
		return byte(state >> 56)
	}
	for range 3000 {
		data := make([]byte, 300)
		for i := range data {
			data[i] = next()
		}
		p := &picker{data: data}
		rules := make([]shared.Rule, 1+p.n(8))
		for i := range rules {
			rules[i] = fuzzRule(p, i)
		}
		checkAgainstReference(t, rules, fuzzConn(p))
	}
}
