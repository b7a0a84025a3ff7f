// Package rules is Tollgate's rule matcher: given the rules in force and one
// attributed connection, it decides which rule (if any) covers it, and says
// why.
//
// It owns the matching semantics and the precedence between rules (see
// Set.Decide). It is pure Go: it must not touch the kernel, the store, D-Bus
// or the clock (the caller passes "now"). A Set is immutable once built; the
// daemon builds a new one whenever the rules change and swaps it in
// atomically, so readers never lock against writers.
package rules

import (
	"encoding/binary"
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
	rules   []shared.Rule
	entries []entry // entries[i] is rules[i] prepared for matching
	byID    map[string]int32

	// Every live rule (enabled, known action) sits in exactly one bucket,
	// picked by the most selective key it has. Decide visits only the
	// buckets a connection can reach.
	byExe      map[string][]int32     // exact exe path
	byHost     map[string][]int32     // exact host (lower case)
	bySuffix   map[string][]int32     // "*.example.org" under "example.org"
	byExeBase  map[string][]int32     // exe glob whose last element is literal ("/opt/*/bin/app" under "app")
	byPrefix4  map[uint64][]int32     // remote IPv4 address or CIDR, by prefixKey4
	byPrefix6  map[prefixKey6][]int32 // remote IPv6 address or CIDR
	prefixLen4 []int                  // prefix lengths present in byPrefix4
	prefixLen6 []int                  // and in byPrefix6
	byPort     map[uint16][]int32     // a single remote port
	rest       []int32                // everything else: ports, uids, units, cmdlines...

	noMatch string
}

// entry is a rule prepared for matching: normalized patterns and
// precomputed precedence.
type entry struct {
	rule     *shared.Rule
	idx      int32
	priority int
	spec     int
	severity int // 1 deny/reject, 0 allow

	owner    int64 // -1: system rule, applies to every uid
	needProc bool  // names exe, exe_sha256, cmdline or unit: never matches a uid-only connection

	exe       string
	exeGlob   bool
	sha       string
	cmdline   string
	cmdGlob   bool
	unit      string
	unitGlob  bool
	uid, gid  int64 // -1: any
	direction shared.Direction
	proto     shared.Proto // "" for any
	host      string       // lower case, no trailing dot
	ip        netip.Prefix // invalid: any
	port      shared.PortRange
	localPort shared.PortRange
	iface     string

	process  bool // lifetime process: bound to pid and pidStart
	pid      int
	pidStart uint64
	until    time.Time // zero: no expiry

	// explained caches the last explanation built with this entry as the
	// winner, so that repeated decisions do not allocate.
	explained atomic.Pointer[explanation]
}

type explanation struct {
	runnerUp int32 // -1: no runner-up
	text     string
}

// NewSet builds a Set from rules, which it copies. It expects rules that
// passed shared.Rule.Validate; it never fails on others, but a rule with an
// unknown action, a disabled rule, and a lifetime-process rule without a
// pid never match. Lifetime once and session rules match like any other:
// the caller decides which of those belong in the set and rebuilds it when
// a session ends.
func NewSet(rules []shared.Rule) *Set {
	s := &Set{
		rules:     make([]shared.Rule, len(rules)),
		entries:   make([]entry, len(rules)),
		byID:      make(map[string]int32, len(rules)),
		byExe:     make(map[string][]int32),
		byHost:    make(map[string][]int32),
		bySuffix:  make(map[string][]int32),
		byExeBase: make(map[string][]int32),
		byPrefix4: make(map[uint64][]int32),
		byPrefix6: make(map[prefixKey6][]int32),
		byPort:    make(map[uint16][]int32),
	}
	lens4 := map[int]bool{}
	lens6 := map[int]bool{}
	live := 0
	for i := range rules {
		r := &s.rules[i]
		*r = rules[i]
		if r.Match.UID != nil {
			uid := *r.Match.UID
			r.Match.UID = &uid
		}
		if r.Match.GID != nil {
			gid := *r.Match.GID
			r.Match.GID = &gid
		}
		if _, dup := s.byID[r.ID]; !dup {
			s.byID[r.ID] = int32(i)
		}
		e := &s.entries[i]
		prepare(e, r, int32(i))
		if !r.Enabled || !r.Action.Known() || (e.process && e.pid <= 0) {
			continue
		}
		live++
		idx := int32(i)
		switch {
		case e.exe != "" && !e.exeGlob:
			s.byExe[e.exe] = append(s.byExe[e.exe], idx)
		case e.host != "" && !strings.HasPrefix(e.host, "*."):
			s.byHost[e.host] = append(s.byHost[e.host], idx)
		case strings.HasPrefix(e.host, "*."):
			s.bySuffix[e.host[2:]] = append(s.bySuffix[e.host[2:]], idx)
		case literalBase(e.exe) != "":
			base := literalBase(e.exe)
			s.byExeBase[base] = append(s.byExeBase[base], idx)
		case e.ip.IsValid():
			if a, bits := e.ip.Addr(), e.ip.Bits(); a.Is4() {
				k := prefixKey4(a, bits)
				s.byPrefix4[k] = append(s.byPrefix4[k], idx)
				lens4[bits] = true
			} else {
				k := makePrefixKey6(a, bits)
				s.byPrefix6[k] = append(s.byPrefix6[k], idx)
				lens6[bits] = true
			}
		case !e.port.IsAny() && e.port.Lo == e.port.Hi:
			s.byPort[e.port.Lo] = append(s.byPort[e.port.Lo], idx)
		default:
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

func prepare(e *entry, r *shared.Rule, idx int32) {
	m := &r.Match
	*e = entry{
		rule:      r,
		idx:       idx,
		priority:  r.Priority,
		spec:      m.Specificity(),
		owner:     -1,
		exe:       m.Exe,
		exeGlob:   shared.IsGlob(m.Exe),
		sha:       m.ExeSHA256,
		cmdline:   m.Cmdline,
		cmdGlob:   shared.IsGlob(m.Cmdline),
		unit:      m.Unit,
		unitGlob:  shared.IsGlob(m.Unit),
		uid:       -1,
		gid:       -1,
		direction: m.Direction,
		proto:     m.Proto,
		host:      strings.ToLower(strings.TrimSuffix(m.Host, ".")),
		ip:        m.IP,
		port:      m.Port,
		localPort: m.LocalPort,
		iface:     m.Iface,
	}
	if r.Action == shared.ActionDeny || r.Action == shared.ActionReject {
		e.severity = 1
	}
	if r.Owner != shared.OwnerSystem {
		e.owner = int64(r.Owner)
	}
	e.needProc = e.exe != "" || e.sha != "" || e.cmdline != "" || e.unit != ""
	if m.UID != nil {
		e.uid = int64(*m.UID)
	}
	if m.GID != nil {
		e.gid = int64(*m.GID)
	}
	if e.proto == shared.ProtoAny {
		e.proto = ""
	}
	if e.ip.IsValid() {
		if a := e.ip.Addr(); a.Is4In6() && e.ip.Bits() >= 96 {
			e.ip = netip.PrefixFrom(a.Unmap(), e.ip.Bits()-96)
		}
		e.ip = e.ip.Masked()
	}
	switch r.Lifetime {
	case shared.LifetimeProcess:
		e.process, e.pid, e.pidStart = true, r.PID, r.PIDStart
	case shared.LifetimeUntil:
		e.until = r.Until
	}
}

// matches reports whether e covers connection c, whose remote address
// (unmapped) is remote. With a host rule, host is the index in c.Hosts of
// the first name that matched.
func (e *entry) matches(c *shared.Connection, remote netip.Addr, now time.Time) (host int, ok bool) {
	host = -1
	if e.owner >= 0 && c.UID != e.owner {
		return host, false
	}
	if e.needProc && c.PID <= 0 {
		return host, false
	}
	if e.direction != "" && e.direction != c.Direction {
		return host, false
	}
	if e.proto != "" && e.proto != c.Proto {
		return host, false
	}
	if !e.port.Contains(c.RemotePort) || !e.localPort.Contains(c.LocalPort) {
		return host, false
	}
	if e.ip.IsValid() && !e.ip.Contains(remote) {
		return host, false
	}
	if (e.uid >= 0 && c.UID != e.uid) || (e.gid >= 0 && c.GID != e.gid) {
		return host, false
	}
	if e.iface != "" && e.iface != c.Iface {
		return host, false
	}
	if e.process && (c.PID != e.pid || c.PIDStart != e.pidStart) {
		return host, false
	}
	if !e.until.IsZero() && e.until.Before(now) {
		return host, false
	}
	if e.exe != "" && !matchPattern(e.exe, e.exeGlob, c.Exe, path.Match) {
		return host, false
	}
	if e.sha != "" && !strings.EqualFold(e.sha, c.ExeSHA256) {
		return host, false
	}
	if e.cmdline != "" && !matchPattern(e.cmdline, e.cmdGlob, c.Cmdline, globMatch) {
		return host, false
	}
	if e.unit != "" && !matchPattern(e.unit, e.unitGlob, c.Unit, path.Match) {
		return host, false
	}
	if e.host != "" {
		if c.HostSource == shared.HostFromAny {
			return host, false // names another user's process learned are not trusted
		}
		for i, h := range c.Hosts {
			if shared.HostMatches(e.host, h) {
				return i, true
			}
		}
		return host, false
	}
	return host, true
}

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
	return len(s.rules)
}

// All yields the set's rules in the order NewSet got them. The rules belong
// to the set: do not modify them.
func (s *Set) All() iter.Seq[*shared.Rule] {
	return func(yield func(*shared.Rule) bool) {
		if s == nil {
			return
		}
		for i := range s.rules {
			if !yield(&s.rules[i]) {
				return
			}
		}
	}
}

// Rule returns the rule with the given id (the first, should ids repeat).
// It belongs to the set: do not modify it.
func (s *Set) Rule(id string) (*shared.Rule, bool) {
	if s == nil {
		return nil, false
	}
	i, ok := s.byID[id]
	if !ok {
		return nil, false
	}
	return &s.rules[i], true
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
