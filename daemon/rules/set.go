// Package rules is Tollgate's rule matcher: given the rules in force and one
// attributed connection, it decides which rule (if any) covers it, and says
// why.
//
// It owns the matching semantics and the precedence between rules (see
// Set.Decide), and the compact form the daemon keeps its rules in: a Set is
// the one copy of every rule in memory (the rule book reads its rules back
// from it), about 80 bytes a rule plus its strings. It is pure Go: it must
// not touch the kernel, the store, D-Bus or the clock (the caller passes
// "now"). A Set is immutable once built; the daemon builds a new one
// whenever the rules change (Edit reuses the old one's compact rules) and
// swaps it in atomically, so readers never lock against writers.
package rules

import (
	"hash/maphash"
	"iter"
	"math"
	"net/netip"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/tollgate-fw/tollgate/shared"
)

// Set is an immutable, indexed collection of rules. Its methods are safe for
// concurrent use. A nil *Set is an empty set.
type Set struct {
	recs []rec

	// The shared.Rule a Decision points to and the last explanation built
	// with that rule as the winner, built when first needed and kept in a
	// bounded cache, so that repeated decisions do not allocate.
	cache []atomic.Pointer[cached]

	seed   maphash.Seed
	seed64 uint64 // for integer keys
	byID   idTable

	// Every live rule (enabled, known action) sits in exactly one bucket,
	// picked by the most selective key it has: its exact exe, exact host,
	// wildcard host's suffix, exe glob's literal last element, remote
	// prefix or single remote port (see build). Decide visits only the
	// buckets a connection can reach. index maps a bucket's key to its
	// first rule; next chains the rest (-1 ends a chain).
	index table
	next  []int32
	kinds [16]int32 // rules indexed by each kind of key
	// IPv4 prefixes of 16 bits or more are looked up only at the lengths
	// present under the connection's /16 (index, kindMask4); shorter ones
	// and IPv6 ones at every length present.
	prefixLen4 []int // lengths < 16 present
	long4      bool  // some length >= 16 present
	prefixLen6 []int
	// Unit, command-line and exe patterns are keyed by their literal
	// beginning (all of an exact one); these are the lengths present.
	litLens [3][]int // by kind - kindUnit
	rest    []int32  // live rules without such a key: port ranges, uids, units, cmdlines...

	noMatch string
}

// rec is one rule in compact form: what most rules have inline, the rest
// (and anything that does not fit the inline form) in ext. It keeps every
// field, so the shared.Rule it was made from comes back exactly (full).
type rec struct {
	strs             string // id, name, exe and host back to back (unless flagLongStrs)
	ext              *ext
	created, updated int64 // stamps, see makeStamp
	port, localPort  shared.PortRange
	priority         int32 // unless flagPrioExt
	owner            uint32
	ip4              uint32 // inline IPv4 prefix (flagIP4), big endian
	idEnd, nameEnd   uint16 // ends of id and name in strs
	exeEnd           uint16 // and of exe; host is the rest
	spec             uint16 // specificity (saturated)
	flags            uint16 // flag*
	ip4Bits          uint8  // its length
	action, lifetime uint8  // codes in actions, lifetimes; codeRaw: in ext
	direction, proto uint8  // codes in directions, protos
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
	flagLongStrs // id, name, exe, host are in ext.strs
	flagPrioExt  // the priority is ext.priority
)

// ext holds a rule's less common fields.
type ext struct {
	note, sha, cmdline, unit, iface, session, source string
	hostMatch                                        string    // host lower-cased without a trailing dot, when that differs from host (hostMatchSet)
	rawAction, rawLifetime, rawDirection, rawProto   string    // values without a code
	strs                                             [4]string // id, name, exe, host when too long for rec.strs
	uid, gid                                         int64     // -1: none
	priority                                         int
	ip, ipMatch                                      netip.Prefix
	until, lastHit                                   time.Time
	created, updated                                 time.Time // when a stamp cannot hold them exactly
	pid                                              int
	pidStart, hits                                   uint64
	cmdGlob, unitGlob, createdFull, updatedFull      bool
	hostMatchSet                                     bool
}

// A stamp is a UTC time without a location or monotonic reading, in
// nanoseconds since 1970; stampZero is the zero time.
const stampZero = math.MinInt64

func makeStamp(t time.Time) (int64, bool) {
	if t == (time.Time{}) {
		return stampZero, true
	}
	s := t.UnixNano()
	return s, s != stampZero && stampTime(s) == t
}

func stampTime(s int64) time.Time {
	if s == stampZero {
		return time.Time{}
	}
	return time.Unix(0, s).UTC()
}

const codeRaw = 0xff

var (
	actions    = []string{"", string(shared.ActionAllow), string(shared.ActionDeny), string(shared.ActionReject)}
	lifetimes  = []string{"", string(shared.LifetimeOnce), string(shared.LifetimeSession), string(shared.LifetimeProcess), string(shared.LifetimeUntil), string(shared.LifetimeForever)}
	directions = []string{"", string(shared.DirectionOut), string(shared.DirectionIn)}
	protos     = []string{"", string(shared.ProtoAny), string(shared.ProtoTCP), string(shared.ProtoUDP), string(shared.ProtoICMP)}
)

// Codes matches looks at.
var (
	lifetimeProcess, _ = code(lifetimes, string(shared.LifetimeProcess))
	lifetimeUntil, _   = code(lifetimes, string(shared.LifetimeUntil))
	protoAny, _        = code(protos, string(shared.ProtoAny))
	protoTCP, _        = code(protos, string(shared.ProtoTCP))
	protoUDP, _        = code(protos, string(shared.ProtoUDP))
	directionOut, _    = code(directions, string(shared.DirectionOut))
	directionIn, _     = code(directions, string(shared.DirectionIn))
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

func (r *rec) id() string {
	if r.flags&flagLongStrs != 0 {
		return r.ext.strs[0]
	}
	return r.strs[:r.idEnd]
}

func (r *rec) name() string {
	if r.flags&flagLongStrs != 0 {
		return r.ext.strs[1]
	}
	return r.strs[r.idEnd:r.nameEnd]
}

func (r *rec) exe() string {
	if r.flags&flagLongStrs != 0 {
		return r.ext.strs[2]
	}
	return r.strs[r.nameEnd:r.exeEnd]
}

func (r *rec) host() string {
	if r.flags&flagLongStrs != 0 {
		return r.ext.strs[3]
	}
	return r.strs[r.exeEnd:]
}

func (r *rec) prio() int {
	if r.flags&flagPrioExt != 0 {
		return r.ext.priority
	}
	return int(r.priority)
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
	return r.host()
}

// matchIP is the remote prefix the rule matches (unmapped, masked);
// invalid: any.
func (r *rec) matchIP() netip.Prefix {
	if r.flags&flagIP4 != 0 {
		return netip.PrefixFrom(netip.AddrFrom4(be4(r.ip4)), int(r.ip4Bits))
	}
	if r.ext != nil {
		return r.ext.ipMatch
	}
	return netip.Prefix{}
}

func be4(v uint32) [4]byte { return [4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)} }

func u4(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// strArena hands out strings copied into shared chunks, so that many
// rules' strings cost a few allocations, not one each. Bytes once handed
// out are never written again.
type strArena struct{ buf []byte }

const arenaChunk = 32 << 10

// concat returns the parts back to back as one string.
func (a *strArena) concat(parts ...string) string {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	if n == 0 {
		return ""
	}
	var b []byte
	if a == nil || n > arenaChunk/4 {
		b = make([]byte, 0, n)
	} else {
		if cap(a.buf)-len(a.buf) < n {
			a.buf = make([]byte, 0, arenaChunk)
		}
		b = a.buf[len(a.buf):len(a.buf):cap(a.buf)]
		a.buf = a.buf[:len(a.buf)+n]
	}
	for _, p := range parts {
		b = append(b, p...)
	}
	return unsafe.String(unsafe.SliceData(b), n)
}

// compact makes the compact form of r, its strings copied into a (nil: an
// allocation of their own).
func compact(r *shared.Rule, a *strArena) rec {
	m := &r.Match
	c := rec{
		port: m.Port, localPort: m.LocalPort,
		owner: r.Owner,
		spec:  uint16(min(m.Specificity(), 1<<16-1)),
	}
	if l1, l2, l3 := len(r.ID), len(r.ID)+len(r.Name), len(r.ID)+len(r.Name)+len(m.Exe); l3+len(m.Host) <= math.MaxUint16 {
		c.strs = a.concat(r.ID, r.Name, m.Exe, m.Host)
		c.idEnd, c.nameEnd, c.exeEnd = uint16(l1), uint16(l2), uint16(l3)
	} else {
		c.flags |= flagLongStrs
		c.x().strs = [4]string{r.ID, r.Name, m.Exe, m.Host}
	}
	if int(int32(r.Priority)) == r.Priority {
		c.priority = int32(r.Priority)
	} else {
		c.flags |= flagPrioExt
		c.x().priority = r.Priority
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
			c.ip4, c.ip4Bits = u4(p.Addr()), uint8(p.Bits())
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
		ID: c.id(), Name: c.name(),
		Action:   shared.Action(c.actionStr()),
		Lifetime: shared.Lifetime(c.lifetimeStr()),
		Owner:    c.owner, Priority: c.prio(),
		Enabled:  c.flags&flagEnabled != 0,
		ReadOnly: c.flags&flagReadOnly != 0,
		Created:  stampTime(c.created), Updated: stampTime(c.updated),
		Match: shared.Match{
			Exe: c.exe(), Host: c.host(),
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

// arenaFor returns an arena when n rules are to be compacted at once (their
// strings then share chunks), else nil: a rule added alone gets its own
// allocation, so it never keeps a chunk alive.
func arenaFor(n int) *strArena {
	if n < 64 {
		return nil
	}
	return &strArena{}
}

// NewSet builds a Set from rules, which it copies (in compact form). It
// expects rules that passed shared.Rule.Validate; it never fails on others,
// but a rule with an unknown action, a disabled rule, and a lifetime-process
// rule without a pid never match. Lifetime once and session rules match
// like any other: the caller decides which of those belong in the set and
// rebuilds it when a session ends.
func NewSet(rules []shared.Rule) *Set {
	recs := make([]rec, len(rules))
	a := arenaFor(len(rules))
	for i := range rules {
		recs[i] = compact(&rules[i], a)
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
	a := arenaFor(len(prepend) + len(add))
	for i := range prepend {
		recs = append(recs, compact(&prepend[i], a))
	}
	if s != nil {
		for i := range s.recs {
			if drop == nil || !drop(View{s: s, i: int32(i)}) {
				recs = append(recs, s.recs[i])
			}
		}
	}
	for i := range add {
		recs = append(recs, compact(&add[i], a))
	}
	return build(recs)
}

// Kinds of index keys (the low bits of a tag).
const (
	kindExe = iota + 1
	kindHost
	kindSuffix
	kindExeBase
	kindPrefix4
	kindMask4 // value: the lengths (bit l-16) of the prefixes under a /16
	kindPrefix6
	kindPort
	kindUnit    // literal beginning of a unit pattern
	kindCmdline // of a command-line pattern
	kindExeHead // of an exe glob without a literal last element
)

// cacheMax bounds the per-set cache of built rules and explanations.
const cacheMax = 4096

// build indexes recs, which the new set keeps.
func build(recs []rec) *Set {
	n := len(recs)
	s := &Set{
		recs:  recs,
		cache: make([]atomic.Pointer[cached], pow2(min(max(n, 1), cacheMax))),
		seed:  maphash.MakeSeed(),
		next:  make([]int32, n),
	}
	s.seed64 = maphash.String(s.seed, "integer keys")
	s.byID.init(n)
	for i := range recs {
		s.byID.insert(s, s.tagString(0, recs[i].id()), int32(i))
	}
	live := 0
	for i := range recs {
		if recs[i].flags&flagLive != 0 {
			live++
		}
	}
	s.index.init(live)
	var lens4 uint64    // IPv4 lengths present below 16
	var lens6 [3]uint64 // IPv6 lengths present
	var lits [3]map[int]bool
	// Walk backwards, pushing onto the chains' fronts: chains run in
	// ascending order.
	for i := n - 1; i >= 0; i-- {
		r := &recs[i]
		idx := int32(i)
		s.next[i] = -1
		if r.flags&flagLive == 0 {
			continue
		}
		host := r.matchHost()
		switch exe := r.exe(); {
		case exe != "" && r.flags&flagExeGlob == 0:
			s.push(s.tagString(kindExe, exe), idx)
		case host != "" && !strings.HasPrefix(host, "*."):
			s.push(s.tagString(kindHost, host), idx)
		case strings.HasPrefix(host, "*."):
			s.push(s.tagString(kindSuffix, host[2:]), idx)
		case literalBase(exe) != "":
			s.push(s.tagString(kindExeBase, literalBase(exe)), idx)
		case r.matchIP().IsValid():
			ip := r.matchIP()
			if a, bits := ip.Addr(), ip.Bits(); a.Is4() {
				v := u4(a)
				s.push(s.tagInt(kindPrefix4, prefixKey4(v, bits)), idx)
				if bits < 16 {
					lens4 |= 1 << bits
				} else {
					s.long4 = true
					s.index.or(s.tagInt(kindMask4, uint64(v>>16)), 1<<(bits-16))
				}
			} else {
				s.push(s.tagPrefix6(makePrefixKey6(a, bits)), idx)
				lens6[bits/64] |= 1 << (bits % 64)
			}
		case r.ext != nil && literalHead(r.ext.unit) != "":
			s.pushHead(kindUnit, literalHead(r.ext.unit), idx, &lits)
		case r.ext != nil && literalHead(r.ext.cmdline) != "":
			s.pushHead(kindCmdline, literalHead(r.ext.cmdline), idx, &lits)
		case literalHead(exe) != "":
			s.pushHead(kindExeHead, literalHead(exe), idx, &lits)
		case !r.port.IsAny() && r.port.Lo == r.port.Hi:
			s.push(s.tagInt(kindPort, uint64(r.port.Lo)), idx)
		default:
			s.rest = append(s.rest, idx)
		}
	}
	// rest was filled backwards.
	for i, j := 0, len(s.rest)-1; i < j; i, j = i+1, j-1 {
		s.rest[i], s.rest[j] = s.rest[j], s.rest[i]
	}
	for l := range 16 {
		if lens4&(1<<l) != 0 {
			s.prefixLen4 = append(s.prefixLen4, l)
		}
	}
	for l := range 129 {
		if lens6[l/64]&(1<<(l%64)) != 0 {
			s.prefixLen6 = append(s.prefixLen6, l)
		}
	}
	for k, m := range lits {
		for l := range m {
			s.litLens[k] = append(s.litLens[k], l)
		}
		slices.Sort(s.litLens[k])
	}
	s.noMatch = "no rule matched (" + strconv.Itoa(live) + " rules in force)"
	return s
}

func pow2(n int) int {
	p := 1
	for p < n {
		p <<= 1
	}
	return p
}

// push puts rule idx at the front of the chain of the key whose tag is
// given.
func (s *Set) push(tag uint32, idx int32) {
	s.kinds[tag&15]++
	head := s.index.set(tag, uint32(idx)+1)
	s.next[idx] = int32(head) - 1
}

// pushHead indexes rule idx by the literal beginning head of one of its
// patterns.
func (s *Set) pushHead(kind int, head string, idx int32, lits *[3]map[int]bool) {
	s.push(s.tagString(kind, head), idx)
	m := &lits[kind-kindUnit]
	if *m == nil {
		*m = map[int]bool{}
	}
	(*m)[len(head)] = true
}

// literalHead returns what every string a pattern (path.Match or
// shared.GlobMatch syntax) matches must begin with: the pattern up to its
// first meta character; all of it when it has none.
func literalHead(pattern string) string {
	if i := strings.IndexAny(pattern, `*?[\`); i >= 0 {
		return pattern[:i]
	}
	return pattern
}

// A tag is what the index keeps of a key: the upper half of its 64-bit
// hash, the low 4 bits replaced by the key's kind.
func mkTag(h uint64, kind int) uint32 { return uint32(h>>32)&^15 | uint32(kind&15) }

func (s *Set) tagString(kind int, v string) uint32 { return mkTag(maphash.String(s.seed, v), kind) }

func (s *Set) tagInt(kind int, v uint64) uint32 { return mkTag(mix64(v^s.seed64), kind) }

func (s *Set) tagPrefix6(k prefixKey6) uint32 {
	return mkTag(mix64(k.hi^mix64(k.lo^mix64(uint64(k.bits)^s.seed64))), kindPrefix6)
}

// mix64 is a 64-bit finalizer (splitmix64's).
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// table is an open-addressing hash table (linear probing) from a tag to a
// value, both 32 bits; a slot holds tag<<32 | value, 0 when empty (values
// are never 0). A tag's home slot is its top bits, so the table grows
// without the keys. Keys of one kind whose tags are equal share a slot:
// their chains merge, which costs matching a few more rules, never a wrong
// decision (a rule reached is matched in full).
type table struct {
	slots []uint64
	shift uint // 32 - log2(len(slots))
	n     int
}

func (t *table) init(keys int) {
	size := pow2(max(8, keys+keys/2))
	t.slots = make([]uint64, size)
	t.shift = uint(32 - log2(size))
	t.n = 0
}

func log2(p int) int {
	l := 0
	for 1<<l < p {
		l++
	}
	return l
}

// get returns the value of tag, 0 when absent.
func (t *table) get(tag uint32) uint32 {
	mask := uint32(len(t.slots) - 1)
	for i := tag >> t.shift; ; i = (i + 1) & mask {
		v := t.slots[i]
		if v == 0 {
			return 0
		}
		if uint32(v>>32) == tag {
			return uint32(v)
		}
	}
}

// slot returns tag's slot, claiming an empty one when absent.
func (t *table) slot(tag uint32) *uint64 {
	if (t.n+1)*8 > len(t.slots)*5 {
		t.grow()
	}
	mask := uint32(len(t.slots) - 1)
	for i := tag >> t.shift; ; i = (i + 1) & mask {
		v := &t.slots[i]
		if *v == 0 {
			t.n++
			*v = uint64(tag) << 32
			return v
		}
		if uint32(*v>>32) == tag {
			return v
		}
	}
}

// set gives tag the value v and returns the old one (0: none).
func (t *table) set(tag, v uint32) uint32 {
	p := t.slot(tag)
	old := uint32(*p)
	*p = uint64(tag)<<32 | uint64(v)
	return old
}

// or sets bits in tag's value.
func (t *table) or(tag, bits uint32) {
	p := t.slot(tag)
	*p |= uint64(bits)
}

func (t *table) grow() {
	old := t.slots
	t.slots = make([]uint64, len(old)*2)
	t.shift--
	mask := uint32(len(t.slots) - 1)
	for _, v := range old {
		if v == 0 {
			continue
		}
		i := uint32(v>>32) >> t.shift
		for t.slots[i] != 0 {
			i = (i + 1) & mask
		}
		t.slots[i] = v
	}
}

// idTable finds a rule by ID: slots hold tag<<32 | position+1, probed
// until the ID itself compares equal; the first rule of an ID wins.
type idTable struct{ t table }

func (d *idTable) init(n int) {
	size := pow2(max(8, n+n/6))
	d.t.slots = make([]uint64, size)
	d.t.shift = uint(32 - log2(size))
}

func (d *idTable) insert(s *Set, tag uint32, idx int32) {
	mask := uint32(len(d.t.slots) - 1)
	for i := tag >> d.t.shift; ; i = (i + 1) & mask {
		v := d.t.slots[i]
		if v == 0 {
			d.t.slots[i] = uint64(tag)<<32 | uint64(idx+1)
			return
		}
		if uint32(v>>32) == tag && s.recs[uint32(v)-1].id() == s.recs[idx].id() {
			return
		}
	}
}

func (d *idTable) find(s *Set, id string) (int32, bool) {
	if len(d.t.slots) == 0 {
		return 0, false
	}
	tag := s.tagString(0, id)
	mask := uint32(len(d.t.slots) - 1)
	for i := tag >> d.t.shift; ; i = (i + 1) & mask {
		v := d.t.slots[i]
		if v == 0 {
			return 0, false
		}
		if uint32(v>>32) == tag && s.recs[uint32(v)-1].id() == id {
			return int32(uint32(v) - 1), true
		}
	}
}

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

// matches reports whether rule r covers the connection of st. With a host
// rule, host is the index in c.Hosts of the first name that matched.
func (r *rec) matches(st *scan) (host int, ok bool) {
	c := st.c
	host = -1
	if r.owner != shared.OwnerSystem && c.UID != int64(r.owner) {
		return host, false
	}
	if r.flags&flagNeedProc != 0 && c.PID <= 0 {
		return host, false
	}
	if d := r.direction; d != 0 && (d != st.dir || d == codeRaw) && r.directionStr() != string(c.Direction) {
		return host, false
	}
	if p := r.proto; p != 0 && p != protoAny && (p != st.proto || p == codeRaw) && r.protoStr() != string(c.Proto) {
		return host, false
	}
	if !r.port.Contains(c.RemotePort) || !r.localPort.Contains(c.LocalPort) {
		return host, false
	}
	if r.flags&flagIP4 != 0 {
		if !st.remote.Is4() || (r.ip4Bits > 0 && (st.remote4^r.ip4)>>(32-r.ip4Bits) != 0) {
			return host, false
		}
	} else if r.ext != nil && r.ext.ipMatch.IsValid() && !r.ext.ipMatch.Contains(st.remote) {
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
			if !x.until.IsZero() && x.until.Before(st.now) {
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
	if exe := r.exe(); exe != "" && !matchPattern(exe, r.flags&flagExeGlob != 0, c.Exe, pathMatch) {
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

// ruleAt returns the shared.Rule of position i, built once and kept (while
// it stays in the cache).
func (s *Set) ruleAt(i int32) *shared.Rule { return &s.cached(i).rule }

// Lookup returns the position of the rule with the given id (the first,
// should ids repeat).
func (s *Set) Lookup(id string) (int, bool) {
	if s == nil {
		return 0, false
	}
	i, ok := s.byID.find(s, id)
	return int(i), ok
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
func (v View) ID() string                { return v.r().id() }
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

// cached is the built shared.Rule of one position of a set, and the last
// explanation of a decision it won.
type cached struct {
	i         int32
	rule      shared.Rule
	explained atomic.Pointer[explanation]
}

// cached returns the cache entry of position i, building it when it is not
// there. An entry lives in one of two slots (i's low bits, or those after
// a multiplicative hash); a set of up to cacheMax rules never evicts.
func (s *Set) cached(i int32) *cached {
	mask := uint32(len(s.cache) - 1)
	a := &s.cache[uint32(i)&mask]
	if c := a.Load(); c != nil && c.i == i {
		return c
	}
	b := &s.cache[(uint32(i)*0x9e3779b1>>7)&mask]
	if c := b.Load(); c != nil && c.i == i {
		return c
	}
	c := &cached{i: i, rule: s.recs[i].full()}
	switch {
	case a.CompareAndSwap(nil, c):
	case b.CompareAndSwap(nil, c):
	default:
		b.Store(c)
	}
	return c
}

// prefixKey4 is the key of the IPv4 prefix of v with the given length:
// the length above the masked address.
func prefixKey4(v uint32, bits int) uint64 {
	if bits < 32 {
		v &^= 1<<(32-bits) - 1
	}
	return uint64(bits)<<32 | uint64(v)
}

// prefixKey6 is the key of an IPv6 prefix.
type prefixKey6 struct {
	hi, lo uint64
	bits   int
}

func makePrefixKey6(a netip.Addr, bits int) prefixKey6 {
	b := a.As16()
	hi := uint64(b[0])<<56 | uint64(b[1])<<48 | uint64(b[2])<<40 | uint64(b[3])<<32 | uint64(b[4])<<24 | uint64(b[5])<<16 | uint64(b[6])<<8 | uint64(b[7])
	lo := uint64(b[8])<<56 | uint64(b[9])<<48 | uint64(b[10])<<40 | uint64(b[11])<<32 | uint64(b[12])<<24 | uint64(b[13])<<16 | uint64(b[14])<<8 | uint64(b[15])
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
