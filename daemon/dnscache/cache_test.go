package dnscache

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tollgate-fw/tollgate/shared"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newTestCache(opts Options) (*Cache, *clock) {
	clk := &clock{t: time.Unix(1_700_000_000, 0)}
	opts.Now = clk.now
	return New(opts), clk
}

var (
	ip1 = netip.MustParseAddr("10.0.0.1")
	ip2 = netip.MustParseAddr("10.0.0.2")
	ip6 = netip.MustParseAddr("2001:db8::1")
	p   = Owner{PID: 100, Start: 5000, UID: 1000} // the process that asked
	p2  = Owner{PID: 101, Start: 5001, UID: 1000} // another process of the same user
	q   = Owner{PID: 200, Start: 6000, UID: 1001} // another user's process
)

func a(name string, ttl uint32, ip netip.Addr) Record {
	k := KindA
	if ip.Is6() {
		k = KindAAAA
	}
	return Record{Name: name, Kind: k, TTL: ttl, Addr: ip}
}

func cname(name string, ttl uint32, target string) Record {
	return Record{Name: name, Kind: KindCNAME, TTL: ttl, Target: target}
}

func TestChain(t *testing.T) {
	tests := []struct {
		name  string
		qname string
		recs  []Record
		want  map[netip.Addr]Named
	}{
		{"plain", "a.test", []Record{a("a.test", 60, ip1), a("a.test", 30, ip6)},
			map[netip.Addr]Named{ip1: {[]string{"a.test"}, 60}, ip6: {[]string{"a.test"}, 30}}},
		{"cname chain: every name on the way, asked name first, smallest ttl",
			"www.a.test", []Record{cname("www.a.test", 300, "cdn.b.test"), cname("cdn.b.test", 10, "edge.c.test"), a("edge.c.test", 60, ip1)},
			map[netip.Addr]Named{ip1: {[]string{"www.a.test", "cdn.b.test", "edge.c.test"}, 10}}},
		{"records off the chain are ignored", "www.a.test",
			[]Record{a("evil.test", 60, ip2), cname("www.a.test", 60, "cdn.b.test"), a("cdn.b.test", 60, ip1), a("www.other.test", 60, ip2)},
			map[netip.Addr]Named{ip1: {[]string{"www.a.test", "cdn.b.test"}, 60}}},
		{"cname loop ends", "x.test",
			[]Record{cname("x.test", 60, "y.test"), cname("y.test", 60, "x.test"), a("y.test", 60, ip1)},
			map[netip.Addr]Named{ip1: {[]string{"x.test", "y.test"}, 60}}},
		{"records out of order", "www.a.test",
			[]Record{a("cdn.b.test", 60, ip1), cname("www.a.test", 60, "cdn.b.test")},
			map[netip.Addr]Named{ip1: {[]string{"www.a.test", "cdn.b.test"}, 60}}},
		{"no answer", "a.test", nil, map[netip.Addr]Named{}},
		{"empty qname", "", []Record{a("a.test", 60, ip1)}, map[netip.Addr]Named{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Chain(tt.qname, tt.recs, DefaultMaxChain)
			if len(got) != len(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			for ip, w := range tt.want {
				g := got[ip]
				if !slices.Equal(g.Names, w.Names) || g.TTL != w.TTL {
					t.Errorf("%v: got %+v, want %+v", ip, g, w)
				}
			}
		})
	}
}

func TestChainLengthIsBounded(t *testing.T) {
	var recs []Record
	for i := 0; i < 50; i++ {
		recs = append(recs, cname(fmt.Sprintf("n%d.test", i), 60, fmt.Sprintf("n%d.test", i+1)))
	}
	recs = append(recs, a("n50.test", 60, ip1))
	if got := Chain("n0.test", recs, 8); len(got) != 0 {
		t.Errorf("a 50-link chain named %v; want nothing past 8 links", got)
	}
}

func TestLookupPrefersTheProcessThenUserThenAny(t *testing.T) {
	c, _ := newTestCache(Options{})
	// P asked www.allowed.test, Q asked blocked.test: the same address.
	c.Insert(p, "www.allowed.test", []Record{a("www.allowed.test", 60, ip1)})
	c.Insert(q, "blocked.test", []Record{a("blocked.test", 60, ip1)})

	tests := []struct {
		name  string
		o     Owner
		ip    netip.Addr
		names []string
		src   Source
	}{
		{"P's own answer", p, ip1, []string{"www.allowed.test"}, SourceProcess},
		{"Q's own answer, not P's", q, ip1, []string{"blocked.test"}, SourceProcess},
		{"P's user's other process", p2, ip1, []string{"www.allowed.test"}, SourceUser},
		{"a reused pid is another process", Owner{PID: 100, Start: 9999, UID: 1000}, ip1, []string{"www.allowed.test"}, SourceUser},
		{"a stranger: anyone's, newest first", Owner{PID: 300, Start: 1, UID: 1002}, ip1, []string{"blocked.test", "www.allowed.test"}, SourceAny},
		{"unknown process and user", Owner{UID: -1}, ip1, []string{"blocked.test", "www.allowed.test"}, SourceAny},
		{"uid-only connection of P's user", Owner{UID: 1000}, ip1, []string{"www.allowed.test"}, SourceUser},
		{"unnamed address", p, ip2, nil, SourceNone},
		{"v4-mapped address is the v4 one", p, netip.MustParseAddr("::ffff:10.0.0.1"), []string{"www.allowed.test"}, SourceProcess},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			names, src := c.Lookup(tt.o, tt.ip)
			if !slices.Equal(names, tt.names) || src != tt.src {
				t.Errorf("Lookup = %q %q, want %q %q", names, src, tt.names, tt.src)
			}
		})
	}
}

func TestLookupCNAMEChainCarriesAllNamesAskedFirst(t *testing.T) {
	c, _ := newTestCache(Options{})
	c.Insert(p, "www.a.test", []Record{cname("www.a.test", 60, "cdn.b.test"), a("cdn.b.test", 60, ip1)})
	c.Insert(p, "img.a.test", []Record{cname("img.a.test", 60, "cdn.b.test"), a("cdn.b.test", 60, ip1)})
	names, src := c.Lookup(p, ip1)
	// The newest answer first, its asked name before its target; the
	// target is not repeated.
	if want := []string{"img.a.test", "cdn.b.test", "www.a.test"}; !slices.Equal(names, want) || src != SourceProcess {
		t.Errorf("Lookup = %q %q, want %q process", names, src, want)
	}
}

func TestTTLIsClampedAndExpires(t *testing.T) {
	c, clk := newTestCache(Options{MinTTL: time.Minute, MaxTTL: time.Hour})
	c.Insert(p, "short.test", []Record{a("short.test", 1, ip1)})     // 1s: lives a minute
	c.Insert(p, "long.test", []Record{a("long.test", 86400*7, ip2)}) // a week: lives an hour
	clk.add(59 * time.Second)
	if n, _ := c.Lookup(p, ip1); !slices.Equal(n, []string{"short.test"}) {
		t.Errorf("a 1s answer is gone before the minimum TTL: %q", n)
	}
	clk.add(2 * time.Second)
	if n, src := c.Lookup(p, ip1); n != nil || src != SourceNone {
		t.Errorf("expired name still given: %q %q", n, src)
	}
	clk.add(58 * time.Minute)
	if n, _ := c.Lookup(p, ip2); n == nil {
		t.Error("a long answer is gone before the maximum TTL")
	}
	clk.add(2 * time.Minute)
	if n, _ := c.Lookup(p, ip2); n != nil {
		t.Errorf("a week-long answer outlived the maximum TTL: %q", n)
	}
}

func TestReinsertRefreshesWithoutDuplicates(t *testing.T) {
	c, clk := newTestCache(Options{MinTTL: time.Minute})
	for i := 0; i < 10; i++ {
		c.Insert(p, "a.test", []Record{a("a.test", 60, ip1)})
		clk.add(30 * time.Second)
	}
	if c.Len() != 1 {
		t.Errorf("10 identical answers hold %d records, want 1", c.Len())
	}
	if n, _ := c.Lookup(p, ip1); !slices.Equal(n, []string{"a.test"}) {
		t.Errorf("refreshed name expired: %q", n)
	}
}

func TestMemoryIsBounded(t *testing.T) {
	c, _ := newTestCache(Options{MaxRecords: 100, MaxPerAddr: 4})
	for i := 0; i < 1000; i++ {
		ip := netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})
		c.Insert(p, fmt.Sprintf("h%d.test", i), []Record{a(fmt.Sprintf("h%d.test", i), 60, ip)})
		if c.Len() > 100 {
			t.Fatalf("after %d inserts the cache holds %d records, bound 100", i+1, c.Len())
		}
	}
	st := c.Stats()
	if st.Records != 100 || st.Addresses != 100 || st.Evicted != 900 {
		t.Errorf("stats %+v, want 100 records on 100 addresses and 900 evicted", st)
	}
	// The least recently used went first: the newest are there.
	if n, _ := c.Lookup(p, netip.AddrFrom4([4]byte{10, 1, 3, 231})); !slices.Equal(n, []string{"h999.test"}) {
		t.Errorf("newest name evicted: %q", n)
	}
	if n, _ := c.Lookup(p, netip.AddrFrom4([4]byte{10, 1, 0, 0})); n != nil {
		t.Errorf("oldest name kept: %q", n)
	}
}

func TestLookupKeepsAnAddressFromEviction(t *testing.T) {
	c, _ := newTestCache(Options{MaxRecords: 3})
	ips := []netip.Addr{ip1, ip2, ip6}
	for i, ip := range ips {
		c.Insert(p, fmt.Sprintf("h%d.test", i), []Record{a(fmt.Sprintf("h%d.test", i), 60, ip)})
	}
	c.Lookup(p, ip1) // ip1 is now the most recently used; ip2 the least
	c.Insert(p, "new.test", []Record{a("new.test", 60, netip.MustParseAddr("10.9.9.9"))})
	if n, _ := c.Lookup(p, ip1); n == nil {
		t.Error("a recently looked-up address was evicted")
	}
	if n, _ := c.Lookup(p, ip2); n != nil {
		t.Errorf("the least recently used address was kept: %q", n)
	}
}

func TestOneProcessCannotFloodAnotherOutOfAnAddress(t *testing.T) {
	c, _ := newTestCache(Options{MaxPerAddr: 4})
	c.Insert(p, "www.allowed.test", []Record{a("www.allowed.test", 60, ip1)})
	for i := 0; i < 100; i++ {
		n := fmt.Sprintf("junk%d.test", i)
		c.Insert(q, n, []Record{a(n, 60, ip1)})
	}
	if n, src := c.Lookup(p, ip1); !slices.Equal(n, []string{"www.allowed.test"}) || src != SourceProcess {
		t.Errorf("P's name was pushed out by Q's flood: %q %q", n, src)
	}
	if c.Len() > 4 {
		t.Errorf("address holds %d records, bound 4", c.Len())
	}
	if n, _ := c.Lookup(q, ip1); len(n) != 3 || n[0] != "junk99.test" {
		t.Errorf("Q keeps its newest names: %q", n)
	}
}

func TestLookupBoundsNames(t *testing.T) {
	c, _ := newTestCache(Options{MaxNames: 3})
	for i := 0; i < 10; i++ {
		n := fmt.Sprintf("n%d.test", i)
		c.Insert(p, n, []Record{a(n, 60, ip1)})
	}
	if n, _ := c.Lookup(p, ip1); !slices.Equal(n, []string{"n9.test", "n8.test", "n7.test"}) {
		t.Errorf("Lookup = %q, want the 3 newest", n)
	}
}

func TestNameFillsOutgoingConnections(t *testing.T) {
	c, _ := newTestCache(Options{})
	c.Insert(p, "www.allowed.test", []Record{a("www.allowed.test", 60, ip1)})
	out := shared.Connection{Direction: shared.DirectionOut, RemoteIP: ip1, PID: p.PID, PIDStart: p.Start, UID: p.UID}
	c.Name(&out)
	if !slices.Equal(out.Hosts, []string{"www.allowed.test"}) || out.HostSource != "process" {
		t.Errorf("outgoing: %q %q", out.Hosts, out.HostSource)
	}
	in := shared.Connection{Direction: shared.DirectionIn, RemoteIP: ip1, PID: p.PID, PIDStart: p.Start, UID: p.UID}
	c.Name(&in)
	if in.Hosts != nil || in.HostSource != "" {
		t.Errorf("incoming connection named: %q %q", in.Hosts, in.HostSource)
	}
	none := shared.Connection{Direction: shared.DirectionOut, RemoteIP: ip2, UID: 5}
	c.Name(&none)
	if none.Hosts != nil || none.HostSource != "" {
		t.Errorf("unnamed address named: %q %q", none.Hosts, none.HostSource)
	}
}

func TestConcurrentUse(t *testing.T) {
	// Roomy: every name just inserted is found. Tight: eviction runs all
	// the time; a lookup may miss but never gives another process's name.
	for _, tc := range []struct {
		bound    int
		mustFind bool
	}{{1 << 20, true}, {500, false}} {
		t.Run(fmt.Sprint(tc.bound), func(t *testing.T) {
			c, _ := newTestCache(Options{MaxRecords: tc.bound})
			var wg sync.WaitGroup
			for g := 0; g < 8; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					o := Owner{PID: 10 + g, Start: 1, UID: int64(g)}
					for i := 0; i < 2000; i++ {
						ip := netip.AddrFrom4([4]byte{10, byte(g), byte(i >> 8), byte(i)})
						n := fmt.Sprintf("h%d.g%d.test", i, g)
						c.Insert(o, n, []Record{a(n, 60, ip)})
						names, src := c.Lookup(o, ip)
						if (tc.mustFind || names != nil) && (!slices.Equal(names, []string{n}) || src != SourceProcess) {
							t.Errorf("just inserted %s for %v, got %q %q", n, ip, names, src)
							return
						}
					}
				}()
			}
			wg.Wait()
			if c.Len() > tc.bound {
				t.Errorf("%d records over the bound %d", c.Len(), tc.bound)
			}
		})
	}
}

// fill makes a cache of n records: n/4 processes of 16 users, one name each
// per address.
func fill(b *testing.B, n int) (*Cache, []netip.Addr) {
	c := New(Options{MaxRecords: n})
	ips := make([]netip.Addr, n)
	for i := range n {
		ips[i] = netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		name := fmt.Sprintf("host%d.example.org", i)
		c.Insert(Owner{PID: 1000 + i%(n/4+1), Start: 1, UID: int64(i % 16)}, name, []Record{a(name, 300, ips[i])})
	}
	if c.Len() != n {
		b.Fatalf("filled %d records, want %d", c.Len(), n)
	}
	return c, ips
}

func BenchmarkInsert(b *testing.B) {
	c, _ := fill(b, 100_000)
	recs := make([][]Record, 4096)
	names := make([]string, len(recs))
	for i := range recs {
		names[i] = fmt.Sprintf("www%d.a.test", i)
		recs[i] = []Record{cname(names[i], 60, "cdn.b.test"), a("cdn.b.test", 60, netip.AddrFrom4([4]byte{172, 16, byte(i >> 8), byte(i)}))}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		k := i % len(recs)
		c.Insert(Owner{PID: 42, Start: 1, UID: 1000}, names[k], recs[k])
	}
}

func BenchmarkLookup(b *testing.B) {
	for _, tc := range []struct {
		name string
		o    func(i int) Owner
	}{
		{"process", func(i int) Owner { return Owner{PID: 1000 + i%25001, Start: 1, UID: int64(i % 16)} }},
		{"user", func(i int) Owner { return Owner{PID: 99999, Start: 1, UID: int64(i % 16)} }},
		{"any", func(i int) Owner { return Owner{PID: 99999, Start: 1, UID: 99} }},
	} {
		b.Run(tc.name+"/100k", func(b *testing.B) {
			c, ips := fill(b, 100_000)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				k := (i * 7919) % len(ips)
				if names, _ := c.Lookup(tc.o(k), ips[k]); names == nil {
					b.Fatalf("no name for %v", ips[k])
				}
			}
		})
	}
	b.Run("miss/100k", func(b *testing.B) {
		c, _ := fill(b, 100_000)
		miss := netip.MustParseAddr("192.0.2.1")
		b.ReportAllocs()
		for b.Loop() {
			c.Lookup(p, miss)
		}
	})
}
