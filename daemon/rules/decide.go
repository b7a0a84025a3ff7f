package rules

import (
	"fmt"
	"math/bits"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unsafe"

	"github.com/tollgate-fw/tollgate/shared"
)

// Decision is the outcome of Set.Decide.
type Decision struct {
	Rule        *shared.Rule  // the winning rule; nil when no rule matched. It belongs to the Set: do not modify it.
	Action      shared.Action // the winning rule's action; "" when no rule matched
	Explanation string        // which rule won and why, or that none matched
	HostMatched string        // for a host rule, the name of the connection (from Connection.Hosts) it matched

	Specificity int          // the winning rule's specificity
	RunnerUp    *shared.Rule // the best rule among the losers; nil when one or no rule matched
	WonBy       Reason       // how Rule beat RunnerUp
}

// Reason says which step of the precedence decided between two rules.
type Reason uint8

const (
	ByNothing     Reason = iota // no contest: a single matching rule
	ByPriority                  // the higher priority
	BySpecificity               // equal priority, the higher specificity
	ByAction                    // equal priority and specificity, deny or reject over allow
	ByID                        // all equal: the lower id (then the earlier rule)
)

func (r Reason) String() string {
	switch r {
	case ByNothing:
		return "no other rule matched"
	case ByPriority:
		return "priority"
	case BySpecificity:
		return "specificity"
	case ByAction:
		return "action (deny and reject beat allow at equal specificity)"
	case ByID:
		return "id (all else equal, the lower id wins)"
	}
	return "reason(" + strconv.Itoa(int(r)) + ")"
}

// Candidate is one matching rule, as Explain lists them.
type Candidate struct {
	Rule        *shared.Rule // belongs to the Set: do not modify it
	Specificity int
	HostMatched string
	// LostBy says how the candidate before this one beat it; ByNothing for
	// the first (the winner).
	LostBy Reason
}

// better reports whether a takes precedence over b, and by which step.
//
// Precedence: the higher Priority wins outright; at equal priority the
// higher specificity (shared.Match.Specificity); at equal specificity deny
// and reject beat allow; the remaining ties go to the lexically smaller
// rule ID, then to the rule given to NewSet first, so the outcome never
// depends on map order or timing.
func better(s *Set, ai, bi int32) (bool, Reason) {
	a, b := &s.recs[ai], &s.recs[bi]
	switch pa, pb, sa, sb := a.prio(), b.prio(), a.flags&flagSevere, b.flags&flagSevere; {
	case pa != pb:
		return pa > pb, ByPriority
	case a.spec != b.spec:
		return a.spec > b.spec, BySpecificity
	case sa != sb:
		return sa > sb, ByAction
	}
	switch ia, ib := a.id(), b.id(); {
	case ia != ib:
		return ia < ib, ByID
	default:
		return ai < bi, ByID
	}
}

// scan holds the state of one pass over the candidate rules of a
// connection: the best two matches for Decide, or every match for Explain.
type scan struct {
	c       *shared.Connection
	remote  netip.Addr // c.RemoteIP unmapped, without a zone
	remote4 uint32     // remote as a number, when it is IPv4
	now     time.Time
	dir     uint8 // c.Direction's code
	proto   uint8 // c.Proto's code

	best, second int32 // -1: none
	bestHost     int   // the name (index in c.Hosts) the best rule matched; -1: none

	collect bool    // Explain: gather every match into found
	found   []int32 // may repeat
}

// Decide finds the rule that covers connection c at time now.
//
// A rule matches when it is enabled, not expired (lifetime until with Until
// before now), and every field it gives holds:
//   - owner: a rule whose Owner is not OwnerSystem applies only to
//     connections of that uid;
//   - lifetime process: only while c.PID and c.PIDStart are the rule's;
//   - exe (exact or path.Match glob), exe_sha256, cmdline (exact or
//     shared.GlobMatch), unit (exact or glob): never on a connection
//     attributed to its uid alone (PID 0);
//   - uid, gid: c.UID, c.GID (unknown, -1, matches no rule that names them);
//   - direction, proto ("any" matches all), iface;
//   - ip: contains c.RemoteIP; port: c.RemotePort; local_port: c.LocalPort;
//   - host: any of c.Hosts matches (shared.HostMatches); a connection
//     without names matches no host rule.
//
// Among matching rules, the higher Priority wins outright; at equal
// priority the higher specificity (shared.Match.Specificity); at equal
// specificity deny and reject beat allow; remaining ties go to the
// lexically smaller ID, then to the rule NewSet got first. Decide is safe to
// call concurrently. It does not allocate, except to build an explanation
// the first time a rule wins against a given runner-up (each rule keeps its
// last one) and the shared.Rule of a winner or runner-up the first time one
// is returned (kept).
func (s *Set) Decide(c *shared.Connection, now time.Time) Decision {
	if s == nil {
		return Decision{Explanation: "no rule matched (no rules loaded)"}
	}
	if c == nil {
		return Decision{Explanation: "no connection to decide"}
	}
	st := newScan(c, now)
	s.scan(&st)
	if st.best < 0 {
		return Decision{Explanation: s.noMatch}
	}
	w, wc := &s.recs[st.best], s.cached(st.best)
	d := Decision{
		Rule:        &wc.rule,
		Action:      shared.Action(w.actionStr()),
		Specificity: int(w.spec),
	}
	if w.matchHost() != "" && st.bestHost >= 0 {
		d.HostMatched = c.Hosts[st.bestHost]
	}
	if st.second >= 0 {
		d.RunnerUp = s.ruleAt(st.second)
		_, d.WonBy = better(s, st.best, st.second)
	}
	cache := &wc.explained
	if x := cache.Load(); x != nil && x.runnerUp == st.second {
		d.Explanation = x.text
	} else {
		d.Explanation = s.explainWin(st.best, st.second)
		cache.Store(&explanation{runnerUp: st.second, text: d.Explanation})
	}
	return d
}

type explanation struct {
	runnerUp int32 // -1: no runner-up
	text     string
}

// Explain lists every rule that matches c at time now, winner first, in
// precedence order (the order Decide applies). Unlike Decide it allocates.
func (s *Set) Explain(c *shared.Connection, now time.Time) []Candidate {
	if s == nil || c == nil {
		return nil
	}
	st := newScan(c, now)
	st.collect = true
	s.scan(&st)
	// A rule reached through two of the connection's names is found twice.
	slices.Sort(st.found)
	st.found = slices.Compact(st.found)
	slices.SortFunc(st.found, func(a, b int32) int {
		if a == b {
			return 0
		}
		if betterIdx(s, a, b) {
			return -1
		}
		return 1
	})
	out := make([]Candidate, len(st.found))
	for k, i := range st.found {
		e := &s.recs[i]
		out[k] = Candidate{Rule: s.ruleAt(i), Specificity: int(e.spec)}
		if host, _ := e.matches(&st); host >= 0 {
			out[k].HostMatched = c.Hosts[host]
		}
		if k > 0 {
			_, out[k].LostBy = better(s, st.found[k-1], i)
		}
	}
	return out
}

func newScan(c *shared.Connection, now time.Time) scan {
	st := scan{c: c, remote: c.RemoteIP.Unmap().WithZone(""), now: now, best: -1, second: -1}
	if st.remote.Is4() {
		st.remote4 = u4(st.remote)
	}
	switch c.Direction {
	case shared.DirectionOut:
		st.dir = directionOut
	case shared.DirectionIn:
		st.dir = directionIn
	default:
		st.dir, _ = code(directions, string(c.Direction))
	}
	switch c.Proto {
	case shared.ProtoTCP:
		st.proto = protoTCP
	case shared.ProtoUDP:
		st.proto = protoUDP
	default:
		st.proto, _ = code(protos, string(c.Proto))
	}
	return st
}

// scan visits every rule that can match st.c: the buckets reached by its
// exe, host names and remote address, and the rules without such a key.
func (s *Set) scan(st *scan) {
	c := st.c
	if c.PID > 0 && c.Exe != "" {
		if s.kinds[kindExe] > 0 {
			s.visitChain(st, s.tagString(kindExe, c.Exe))
		}
		if i := strings.LastIndexByte(c.Exe, '/'); i >= 0 && i+1 < len(c.Exe) && s.kinds[kindExeBase] > 0 {
			s.visitChain(st, s.tagString(kindExeBase, c.Exe[i+1:]))
		}
	}
	if c.PID > 0 {
		s.visitHeads(st, kindUnit, c.Unit)
		s.visitHeads(st, kindCmdline, c.Cmdline)
		s.visitHeads(st, kindExeHead, c.Exe)
	}
	if s.kinds[kindHost] > 0 || s.kinds[kindSuffix] > 0 {
		var buf [shared.MaxHostLen + 1]byte
		for _, h := range c.Hosts {
			name, ok := lowerHost(&buf, h)
			if !ok {
				continue
			}
			if s.kinds[kindHost] > 0 {
				s.visitChain(st, s.tagString(kindHost, name))
			}
			if s.kinds[kindSuffix] > 0 {
				for i := 0; i < len(name); i++ {
					if name[i] == '.' {
						s.visitChain(st, s.tagString(kindSuffix, name[i+1:]))
					}
				}
			}
		}
	}
	if st.remote.Is4() {
		v := st.remote4
		for _, l := range s.prefixLen4 {
			s.visitChain(st, s.tagInt(kindPrefix4, prefixKey4(v, l)))
		}
		if s.long4 {
			for m := s.index.get(s.tagInt(kindMask4, uint64(v>>16))); m != 0; m &= m - 1 {
				l := 16 + bits.TrailingZeros32(m)
				s.visitChain(st, s.tagInt(kindPrefix4, prefixKey4(v, l)))
			}
		}
	} else if st.remote.Is6() {
		for _, l := range s.prefixLen6 {
			s.visitChain(st, s.tagPrefix6(makePrefixKey6(st.remote, l)))
		}
	}
	if s.kinds[kindPort] > 0 {
		s.visitChain(st, s.tagInt(kindPort, uint64(c.RemotePort)))
	}
	for _, i := range s.rest {
		s.visitOne(st, i)
	}
}

// lowerHost returns h lower-cased and without a trailing dot: h itself
// when it needs no change, else a string over buf.
func lowerHost(buf *[shared.MaxHostLen + 1]byte, h string) (string, bool) {
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > shared.MaxHostLen {
		return "", false
	}
	upper := false
	for i := 0; i < len(h); i++ {
		if c := h[i]; 'A' <= c && c <= 'Z' {
			upper = true
			break
		}
	}
	if !upper {
		return h, true
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	return unsafe.String(&buf[0], len(h)), true
}

// visitHeads visits the rules of a kind keyed by a literal beginning of v.
func (s *Set) visitHeads(st *scan, kind int, v string) {
	if s.kinds[kind] == 0 || v == "" {
		return
	}
	for _, l := range s.litLens[kind-kindUnit] {
		if l > len(v) {
			return
		}
		s.visitChain(st, s.tagString(kind, v[:l]))
	}
}

// visitChain visits the chain of the key whose tag is given.
func (s *Set) visitChain(st *scan, tag uint32) {
	for i := int32(s.index.get(tag)) - 1; i >= 0; i = s.next[i] {
		s.visitOne(st, i)
	}
}

func (s *Set) visitOne(st *scan, i int32) {
	host, ok := s.recs[i].matches(st)
	if !ok {
		return
	}
	if st.collect {
		st.found = append(st.found, i)
		return
	}
	if i == st.best || i == st.second {
		return
	}
	switch {
	case st.best < 0:
		st.best, st.bestHost = i, host
	case betterIdx(s, i, st.best):
		st.second = st.best
		st.best, st.bestHost = i, host
	case st.second < 0 || betterIdx(s, i, st.second):
		st.second = i
	}
}

func betterIdx(s *Set, a, b int32) bool {
	ok, _ := better(s, a, b)
	return ok
}

// ref names a rule: `rule 12 "ssh-out"`, or `rule 12` when it has no name.
func ref(e *rec) string {
	id := e.id()
	if id == "" || strings.IndexFunc(id, func(r rune) bool { return r <= ' ' || r == '"' || !unicode.IsPrint(r) }) >= 0 {
		id = strconv.Quote(id)
	}
	if e.name() == "" {
		return "rule " + id
	}
	return "rule " + id + " " + strconv.Quote(e.name())
}

// standing is a rule's action and precedence.
func standing(e *rec) string {
	return fmt.Sprintf("%s, priority %d, specificity %d", e.actionStr(), e.prio(), e.spec)
}

// explainWin says why winner won over the runner-up (-1: it was alone):
//
//	rule 12 "ssh-out": deny, priority 0, specificity 60; beat rule 9 (allow, priority 0, specificity 20) by specificity
func (s *Set) explainWin(winner, runnerUp int32) string {
	w := &s.recs[winner]
	if runnerUp < 0 {
		return ref(w) + ": " + standing(w) + "; no other rule matched"
	}
	_, by := better(s, winner, runnerUp)
	l := &s.recs[runnerUp]
	return ref(w) + ": " + standing(w) + "; beat " + ref(l) + " (" + standing(l) + ") by " + by.String()
}
