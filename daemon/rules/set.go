// Package rules is Tollgate's rule matcher: given the rules in force and one
// attributed connection, it decides which rule (if any) covers it, and says
// why.
//
// It owns the matching semantics and the precedence between rules (see
// Set.Decide), and the compact form the daemon keeps its rules in: a Set is
// the one copy of every rule in memory (the rule book reads its rules back
// from it), about a quarter of the size of a shared.Rule per rule. It is
// pure Go: it must not touch the kernel, the store, D-Bus or the clock (the
// caller passes "now"). A Set is immutable once built; the daemon builds a
// new one whenever the rules change (Edit reuses the old one's compact rules)
// and swaps it in atomically, so readers never lock against writers.
package rules

import (
	"encoding/binary"
	"hash/maphash"
	"iter"
	"net/netip"
	"path"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tollgate-fw/tollgate/shared"
)

// Set is an immutable, indexed collection of rules. Its methods are safe for
// concurrent use. A nil *Set is an empty set.
type Set struct {
	recs []rec
	// Lazily built per rule: the shared.Rule a Decision points to, and the
	// last explanation built with the rule as the winner, so that repeated
	// decisions do not allocate.
	full      []atomic.Pointer[shared.Rule]
	explained []atomic.Pointer[explanation]

	seed   maphash.Seed
	byID   map[uint64]int32 // first rule whose ID hashes so; chained by nextID
	nextID []int32

	// Every live rule (enabled, known action) sits in exactly one bucket,
	// picked by the most selective key it has. Decide visits only the
	// buckets a connection can reach. A map holds a bucket's first rule;
	// next chains the rest (-1 ends a chain). Strings are keyed by their
	// hash; a rule's own fields are compared when it is matched.
	next       []int32
	byExe      map[uint64]int32     // exact exe path
	byHost     map[uint64]int32     // exact host (lower case)
	bySuffix   map[uint64]int32     // "*.example.org" under "example.org"
	byExeBase  map[uint64]int32     // exe glob whose last element is literal ("/opt/*/bin/app" under "app")
	byPrefix4  map[uint64]int32     // remote IPv4 address or CIDR, by prefixKey4
	byPrefix6  map[prefixKey6]int32 // remote IPv6 address or CIDR
	prefixLen4 []int                // prefix lengths present in byPrefix4
	prefixLen6 []int                // and in byPrefix6
	byPort     map[uint16]int32     // a single remote port
	rest       []int32              // everything else: ports, uids, units, cmdlines...

	noMatch string
}

// rec is one rule in compact form: what most rules have inline, the rest
// (and anything that does not fit the inline form) in ext. It keeps every
// field, so the shared.Rule it was made from comes back exactly (full).
type rec struct {
	id, name, exe, host string
	ext                 *ext
	created, updated    stamp
	port, localPort     shared.PortRange
	priority            int
	owner               uint32
	ip4                 [4]byte // inline IPv4 prefix (flagIP4)
	ip4Bits             uint8
	action, lifetime    uint8 // codes in actions, lifetimes; codeRaw: in ext
	direction, proto    uint8 // codes in directions, protos
	spec                uint16
	flags               uint16
}

const (
	flagEnabled  = 1 << iota
	flagReadOnly // Rule.ReadOnly
	flagStore    // Source "store" (otherwise ext.source)
	flagIP4      // the rule's IP is ip4/ip4Bits, as given and as matched
	flagExeGlob
	flagLive     // enabled, known action, and a pid when bound to a process
	flagNeedProc // names exe, exe_sha256, cmdline or unit
	flagSevere   // deny or reject
)

// ext holds a rule's less common fields.
type ext struct {
	note, sha, cmdline, unit, iface, session, source string
	hostMatch                                        string // host lower-cased without a trailing dot, when that differs from host (hostMatchSet)
	rawAction, rawLifetime, rawDirection, rawProto   string // values without a code
	uid, gid                                         int64  // -1: none
	ip, ipMatch                                      netip.Prefix
	until, lastHit                                   time.Time
	created, updated                                 time.Time // when a stamp cannot hold them exactly
	pid                                              int
	pidStart, hits                                   uint64
	cmdGlob, unitGlob, createdFull, updatedFull      bool
	hostMatchSet                                     bool
}

// stamp is a UTC time without a location or monotonic reading.
type stamp struct {
	sec  int64
	nsec int32
}

func makeStamp(t time.Time) (stamp, bool) {
	s := stamp{sec: t.Unix(), nsec: int32(t.Nanosecond())}
	return s, s.time() == t
}

func (s stamp) time() time.Time { return time.Unix(s.sec, int64(s.nsec)).UTC() }

const codeRaw = 0xff

var (
	actions    = []string{"", string(shared.ActionAllow), string(shared.ActionDeny), string(shared.ActionReject)}
	lifetimes  = []string{"", string(shared.LifetimeOnce), string(shared.LifetimeSession), string(shared.LifetimeProcess), string(shared.LifetimeUntil), string(shared.LifetimeForever)}
	directions = []string{"", string(shared.DirectionOut), string(shared.DirectionIn)}
	protos     = []string{"", string(shared.ProtoAny), string(shared.ProtoTCP), string(shared.ProtoUDP), string(shared.ProtoICMP)}
)

func code(vals []string, s string) (uint8, bool) {
	for i, v := range vals {
		if v == s {
			return uint8(i), true
		}
	}
	return codeRaw, false
}

func (r *rec) x() *ext {
	if r.ext == nil {
		r.ext = &ext{uid: -1, gid: -1}
	}
	return r.ext
}

func (r *rec) actionStr() string {
	if r.action == codeRaw {
		return r.ext.rawAction
	}
	return actions[r.action]
}

func (r *rec) lifetimeStr() string {
	if r.lifetime == codeRaw {
		return r.ext.rawLifetime
	}
	return lifetimes[r.lifetime]
}

func (r *rec) directionStr() string {
	if r.direction == codeRaw {
		return r.ext.rawDirection
	}
	return directions[r.direction]
}

func (r *rec) protoStr() string {
	if r.proto == codeRaw {
		return r.ext.rawProto
	}
	return protos[r.proto]
}

// matchHost is the host the rule matches: lower case, no trailing dot.
func (r *rec) matchHost() string {
	if r.ext != nil && r.ext.hostMatchSet {
		return r.ext.hostMatch
	}
	return r.host
}

// matchIP is the remote prefix the rule matches (unmapped, masked);
// invalid: any.
func (r *rec) matchIP() netip.Prefix {
	if r.flags&flagIP4 != 0 {
		return netip.PrefixFrom(netip.AddrFrom4(r.ip4), int(r.ip4Bits))
	}
	if r.ext != nil {
		return r.ext.ipMatch
	}
	return netip.Prefix{}
}

// compact makes the compact form of r.
func compact(r *shared.Rule) rec {
	m := &r.Match
	c := rec{
		id: r.ID, name: r.Name, exe: m.Exe, host: m.Host,
		port: m.Port, localPort: m.LocalPort,
		priority: r.Priority, owner: r.Owner,
		spec: uint16(min(m.Specificity(), 1<<16-1)),
	}
	var ok bool
	if c.action, ok = code(actions, string(r.Action)); !ok {
		c.x().rawAction = string(r.Action)
	}
	if c.lifetime, ok = code(lifetimes, string(r.Lifetime)); !ok {
		c.x().rawLifetime = string(r.Lifetime)
	}
	if c.direction, ok = code(directions, string(m.Direction)); !ok {
		c.x().rawDirection = string(m.Direction)
	}
	if c.proto, ok = code(protos, string(m.Proto)); !ok {
		c.x().rawProto = string(m.Proto)
	}
	if c.created, ok = makeStamp(r.Created); !ok {
		c.x().created, c.ext.createdFull = r.Created, true
	}
	if c.updated, ok = makeStamp(r.Updated); !ok {
		c.x().updated, c.ext.updatedFull = r.Updated, true
	}
	if r.Enabled {
		c.flags |= flagEnabled
	}
	if r.ReadOnly {
		c.flags |= flagReadOnly
	}
	if r.Source == "store" {
		c.flags |= flagStore
	} else if r.Source != "" {
		c.x().source = r.Source
	}
	if shared.IsGlob(m.Exe) {
		c.flags |= flagExeGlob
	}
	if r.Action == shared.ActionDeny || r.Action == shared.ActionReject {
		c.flags |= flagSevere
	}
	if m.Exe != "" || m.ExeSHA256 != "" || m.Cmdline != "" || m.Unit != "" {
		c.flags |= flagNeedProc
	}
	if h := strings.ToLower(strings.TrimSuffix(m.Host, ".")); h != m.Host {
		c.x().hostMatch, c.ext.hostMatchSet = h, true // "." matches like no host at all
	}
	if m.IP.IsValid() {
		p := m.IP
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		p = p.Masked()
		if p.Addr().Is4() && p == m.IP {
			c.flags |= flagIP4
			c.ip4, c.ip4Bits = p.Addr().As4(), uint8(p.Bits())
		} else {
			c.x().ip, c.ext.ipMatch = m.IP, p
		}
	}
	setStr := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	if m.ExeSHA256 != "" || m.Cmdline != "" || m.Unit != "" || m.Iface != "" || r.Note != "" || r.Session != "" {
		x := c.x()
		setStr(&x.sha, m.ExeSHA256)
		setStr(&x.cmdline, m.Cmdline)
		setStr(&x.unit, m.Unit)
		setStr(&x.iface, m.Iface)
		setStr(&x.note, r.Note)
		setStr(&x.session, r.Session)
		x.cmdGlob, x.unitGlob = shared.IsGlob(m.Cmdline), shared.IsGlob(m.Unit)
	}
	if m.UID != nil {
		c.x().uid = int64(*m.UID)
	}
	if m.GID != nil {
		c.x().gid = int64(*m.GID)
	}
	if !r.Until.IsZero() || !r.LastHit.IsZero() || r.PID != 0 || r.PIDStart != 0 || r.Hits != 0 {
		x := c.x()
		x.until, x.lastHit, x.pid, x.pidStart, x.hits = r.Until, r.LastHit, r.PID, r.PIDStart, r.Hits
	}
	if r.Enabled && r.Action.Known() && (r.Lifetime != shared.LifetimeProcess || r.PID > 0) {
		c.flags |= flagLive
	}
	return c
}

// full rebuilds the shared.Rule c was made from.
func (c *rec) full() shared.Rule {
	r := shared.Rule{
		ID: c.id, Name: c.name,
		Action:   shared.Action(c.actionStr()),
		Lifetime: shared.Lifetime(c.lifetimeStr()),
		Owner:    c.owner, Priority: c.priority,
		Enabled:  c.flags&flagEnabled != 0,
		ReadOnly: c.flags&flagReadOnly != 0,
		Created:  c.created.time(), Updated: c.updated.time(),
		Match: shared.Match{
			Exe: c.exe, Host: c.host,
			Direction: shared.Direction(c.directionStr()),
			Proto:     shared.Proto(c.protoStr()),
			Port:      c.port, LocalPort: c.localPort,
		},
	}
	if c.flags&flagStore != 0 {
		r.Source = "store"
	}
	if c.flags&flagIP4 != 0 {
		r.Match.IP = c.matchIP()
	}
	x := c.ext
	if x == nil {
		return r
	}
	if x.source != "" {
		r.Source = x.source
	}
	if x.createdFull {
		r.Created = x.created
	}
	if x.updatedFull {
		r.Updated = x.updated
	}
	if c.flags&flagIP4 == 0 {
		r.Match.IP = x.ip
	}
	r.Note, r.Session = x.note, x.session
	r.Match.ExeSHA256, r.Match.Cmdline, r.Match.Unit, r.Match.Iface = x.sha, x.cmdline, x.unit, x.iface
	if x.uid >= 0 {
		uid := uint32(x.uid)
		r.Match.UID = &uid
	}
	if x.gid >= 0 {
		gid := uint32(x.gid)
		r.Match.GID = &gid
	}
	r.Until, r.LastHit, r.PID, r.PIDStart, r.Hits = x.until, x.lastHit, x.pid, x.pidStart, x.hits
	return r
}

// NewSet builds a Set from rules, which it copies (in compact form). It
// expects rules that passed shared.Rule.Validate; it never fails on others,
// but a rule with an unknown action, a disabled rule, and a lifetime-process
// rule without a pid never match. Lifetime once and session rules match
// like any other: the caller decides which of those belong in the set and
// rebuilds it when a session ends.
func NewSet(rules []shared.Rule) *Set {
	recs := make([]rec, len(rules))
	for i := range rules {
		recs[i] = compact(&rules[i])
	}
	return build(recs)
}

// Edit returns a new set holding, in order: prepend, s's rules that drop
// does not want dropped (drop may be nil), then add. Kept rules are reused
// as they are, so an edit costs an index rebuild, not a copy of every rule.
func (s *Set) Edit(drop func(v View) bool, prepend, add []shared.Rule) *Set {
	n := len(prepend) + len(add)
	if s != nil {
		n += len(s.recs)
	}
	recs := make([]rec, 0, n)
	for i := range prepend {
		recs = append(recs, compact(&prepend[i]))
	}
	if s != nil {
		for i := range s.recs {
			if drop == nil || !drop(View{s: s, i: int32(i)}) {
				recs = append(recs, s.recs[i])
			}
		}
	}
	for i := range add {
		recs = append(recs, compact(&add[i]))
	}
	return build(recs)
}

// build indexes recs, which the new set keeps.
func build(recs []rec) *Set {
	n := len(recs)
	s := &Set{
		recs:      recs,
		full:      make([]atomic.Pointer[shared.Rule], n),
		explained: make([]atomic.Pointer[explanation], n),
		seed:      maphash.MakeSeed(),
		byID:      make(map[uint64]int32, n),
		nextID:    make([]int32, n),
		next:      make([]int32, n),
		byExe:     make(map[uint64]int32),
		byHost:    make(map[uint64]int32),
		bySuffix:  make(map[uint64]int32),
		byExeBase: make(map[uint64]int32),
		byPrefix4: make(map[uint64]int32),
		byPrefix6: make(map[prefixKey6]int32),
		byPort:    make(map[uint16]int32),
	}
	lens4 := map[int]bool{}
	lens6 := map[int]bool{}
	live := 0
	// Walk backwards, pushing onto the chains' fronts: chains run in
	// ascending order, and the first rule of an ID is its chain's head.
	for i := n - 1; i >= 0; i-- {
		r := &recs[i]
		idx := int32(i)
		push(s.byID, s.nextID, s.hash(r.id), idx)
		if r.flags&flagLive == 0 {
			s.next[i] = -1
			continue
		}
		live++
		host := r.matchHost()
		switch ip := r.matchIP(); {
		case r.exe != "" && r.flags&flagExeGlob == 0:
			push(s.byExe, s.next, s.hash(r.exe), idx)
		case host != "" && !strings.HasPrefix(host, "*."):
			push(s.byHost, s.next, s.hash(host), idx)
		case strings.HasPrefix(host, "*."):
			push(s.bySuffix, s.next, s.hash(host[2:]), idx)
		case literalBase(r.exe) != "":
			push(s.byExeBase, s.next, s.hash(literalBase(r.exe)), idx)
		case ip.IsValid():
			if a, bits := ip.Addr(), ip.Bits(); a.Is4() {
				push(s.byPrefix4, s.next, prefixKey4(a, bits), idx)
				lens4[bits] = true
			} else {
				push(s.byPrefix6, s.next, makePrefixKey6(a, bits), idx)
				lens6[bits] = true
			}
		case !r.port.IsAny() && r.port.Lo == r.port.Hi:
			push(s.byPort, s.next, r.port.Lo, idx)
		default:
			s.next[i] = -1
			s.rest = append(s.rest, idx)
		}
	}
	for l := range lens4 {
		s.prefixLen4 = append(s.prefixLen4, l)
	}
	for l := range lens6 {
		s.prefixLen6 = append(s.prefixLen6, l)
	}
	s.noMatch = "no rule matched (" + strconv.Itoa(live) + " rules in force)"
	return s
}

// push puts rule idx at the front of key's chain.
func push[K comparable](m map[K]int32, next []int32, key K, idx int32) {
	if head, ok := m[key]; ok {
		next[idx] = head
	} else {
		next[idx] = -1
	}
	m[key] = idx
}

func (s *Set) hash(v string) uint64 { return maphash.String(s.seed, v) }

// literalBase returns the last element of an exe glob when every path it
// matches must end in exactly that element, else "". Only '*' and '?' may
// appear (they never match '/'); classes and escapes could hide a slash.
func literalBase(pattern string) string {
	if !strings.HasPrefix(pattern, "/") || strings.ContainsAny(pattern, `[\`) {
		return ""
	}
	i := strings.LastIndexByte(pattern, '/')
	base := pattern[i+1:]
	if base == "" || strings.ContainsAny(base, "*?") {
		return ""
	}
	return base
}

// matches reports whether rule r covers connection c, whose remote address
// (unmapped) is remote. With a host rule, host is the index in c.Hosts of
// the first name that matched.
func (r *rec) matches(c *shared.Connection, remote netip.Addr, now time.Time) (host int, ok bool) {
	host = -1
	if r.owner != shared.OwnerSystem && c.UID != int64(r.owner) {
		return host, false
	}
	if r.flags&flagNeedProc != 0 && c.PID <= 0 {
		return host, false
	}
	if r.direction != 0 && r.directionStr() != string(c.Direction) {
		return host, false
	}
	if p := r.protoStr(); p != "" && p != string(shared.ProtoAny) && p != string(c.Proto) {
		return host, false
	}
	if !r.port.Contains(c.RemotePort) || !r.localPort.Contains(c.LocalPort) {
		return host, false
	}
	if ip := r.matchIP(); ip.IsValid() && !ip.Contains(remote) {
		return host, false
	}
	if x := r.ext; x != nil {
		if (x.uid >= 0 && c.UID != x.uid) || (x.gid >= 0 && c.GID != x.gid) {
			return host, false
		}
		if x.iface != "" && x.iface != c.Iface {
			return host, false
		}
		switch r.lifetime {
		case lifetimeProcess:
			if c.PID != x.pid || c.PIDStart != x.pidStart {
				return host, false
			}
		case lifetimeUntil:
			if !x.until.IsZero() && x.until.Before(now) {
				return host, false
			}
		}
		if x.sha != "" && !strings.EqualFold(x.sha, c.ExeSHA256) {
			return host, false
		}
		if x.cmdline != "" && !matchPattern(x.cmdline, x.cmdGlob, c.Cmdline, globMatch) {
			return host, false
		}
		if x.unit != "" && !matchPattern(x.unit, x.unitGlob, c.Unit, pathMatch) {
			return host, false
		}
	}
	if r.exe != "" && !matchPattern(r.exe, r.flags&flagExeGlob != 0, c.Exe, pathMatch) {
		return host, false
	}
	if h := r.matchHost(); h != "" {
		if c.HostSource == shared.HostFromAny {
			return host, false // names another user's process learned are not trusted
		}
		for i, name := range c.Hosts {
			if shared.HostMatches(h, name) {
				return i, true
			}
		}
		return host, false
	}
	return host, true
}

// Codes of the lifetimes matches looks at.
var (
	lifetimeProcess, _ = code(lifetimes, string(shared.LifetimeProcess))
	lifetimeUntil, _   = code(lifetimes, string(shared.LifetimeUntil))
)

var pathMatch = path.Match

func globMatch(pattern, name string) (bool, error) { return shared.GlobMatch(pattern, name), nil }

func matchPattern(pattern string, glob bool, s string, match func(pattern, name string) (bool, error)) bool {
	if s == "" {
		return false
	}
	if !glob {
		return pattern == s
	}
	ok, err := match(pattern, s)
	return ok && err == nil
}

// Len is the number of rules in the set, disabled ones included.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return len(s.recs)
}

// All yields the set's rules in the order NewSet got them, each as a new
// copy: walking a large set this way costs an allocation per rule.
func (s *Set) All() iter.Seq[*shared.Rule] {
	return func(yield func(*shared.Rule) bool) {
		if s == nil {
			return
		}
		for i := range s.recs {
			r := s.recs[i].full()
			if !yield(&r) {
				return
			}
		}
	}
}

// Rule returns the rule with the given id (the first, should ids repeat).
// It belongs to the set: do not modify it.
func (s *Set) Rule(id string) (*shared.Rule, bool) {
	i, ok := s.Lookup(id)
	if !ok {
		return nil, false
	}
	return s.ruleAt(int32(i)), true
}

// Lookup returns the position of the rule with the given id (the first,
// should ids repeat).
func (s *Set) Lookup(id string) (int, bool) {
	if s == nil {
		return 0, false
	}
	i, ok := s.byID[s.hash(id)]
	for ok && i >= 0 {
		if s.recs[i].id == id {
			return int(i), true
		}
		i = s.nextID[i]
	}
	return 0, false
}

// At returns a copy of the rule at position i (0 <= i < Len).
func (s *Set) At(i int) shared.Rule { return s.recs[i].full() }

// View returns a cheap view of the rule at position i (0 <= i < Len).
func (s *Set) View(i int) View { return View{s: s, i: int32(i)} }

// View shows a few fields of one rule of a set without copying the rule.
type View struct {
	s *Set
	i int32
}

func (v View) r() *rec                   { return &v.s.recs[v.i] }
func (v View) Index() int                { return int(v.i) }
func (v View) ID() string                { return v.r().id }
func (v View) Owner() uint32             { return v.r().owner }
func (v View) ReadOnly() bool            { return v.r().flags&flagReadOnly != 0 }
func (v View) Lifetime() shared.Lifetime { return shared.Lifetime(v.r().lifetimeStr()) }

// Session is the agent session of a session rule.
func (v View) Session() string {
	if x := v.r().ext; x != nil {
		return x.session
	}
	return ""
}

// Rule returns a copy of the whole rule.
func (v View) Rule() shared.Rule { return v.r().full() }

// ruleAt returns the shared.Rule of position i, built once and kept.
func (s *Set) ruleAt(i int32) *shared.Rule {
	if r := s.full[i].Load(); r != nil {
		return r
	}
	r := s.recs[i].full()
	if s.full[i].CompareAndSwap(nil, &r) {
		return &r
	}
	return s.full[i].Load()
}

// prefixKey4 is the map key of the IPv4 prefix of a with the given
// length: the length above the masked address.
func prefixKey4(a netip.Addr, bits int) uint64 {
	b := a.As4()
	v := binary.BigEndian.Uint32(b[:])
	if bits < 32 {
		v &^= 1<<(32-bits) - 1
	}
	return uint64(bits)<<32 | uint64(v)
}

// prefixKey6 is the map key of an IPv6 prefix.
type prefixKey6 struct {
	hi, lo uint64
	bits   int
}

func makePrefixKey6(a netip.Addr, bits int) prefixKey6 {
	b := a.As16()
	hi, lo := binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
	switch {
	case bits <= 0:
		hi, lo = 0, 0
	case bits < 64:
		hi &^= 1<<(64-bits) - 1
		lo = 0
	case bits == 64:
		lo = 0
	case bits < 128:
		lo &^= 1<<(128-bits) - 1
	}
	return prefixKey6{hi: hi, lo: lo, bits: bits}
}
