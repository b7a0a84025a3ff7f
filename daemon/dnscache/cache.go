// Package dnscache keeps the names behind IP addresses, learned from the DNS
// answers this machine receives, so a connection can be named by what its own
// process resolved.
//
// It owns parsing DNS answers (ParseAnswer: A, AAAA and CNAME records, with
// golang.org/x/net/dns/dnsmessage) and the IP→names cache: CNAME chains are
// followed from the asked name, every name is kept with the process (pid and
// start time) and user that received the answer and an expiry from the TTL
// (clamped), memory is bounded by a total record count with least-recently-
// used addresses evicted first. Lookups prefer names the connection's own
// process resolved, then its user's, then anyone's, and say which.
//
// It is plain Go: it must not read packets from the kernel, find processes
// or decide anything. It never guesses a name (no reverse DNS).
package dnscache

import (
	"container/list"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/tollgate-fw/tollgate/shared"
)

// Source says whose DNS answer named a connection.
type Source string

const (
	SourceNone    Source = ""        // no name known
	SourceProcess Source = "process" // the connection's own process received the answer
	SourceUser    Source = "user"    // another process of the same user did
	SourceAny     Source = "any"     // some other user's process (or an unknown receiver) did
)

// Owner is who received a DNS answer: PID 0 means the process is unknown,
// UID -1 the user.
type Owner struct {
	PID   int
	Start uint64 // process start time (clock ticks since boot): (PID, Start) names one process
	UID   int64
}

func (o Owner) sameProcess(r *rec) bool { return o.PID > 0 && r.pid == o.PID && r.start == o.Start }
func (o Owner) sameUser(r *rec) bool    { return o.UID >= 0 && r.uid == o.UID }

// Options tune a Cache; zero fields take the defaults.
type Options struct {
	MinTTL     time.Duration // names live at least this long; default 2m
	MaxTTL     time.Duration // and at most this long; default 24h
	MaxRecords int           // (address, receiver, name) records kept in all; default 200000
	MaxPerAddr int           // records kept per address; default 32
	MaxNames   int           // names returned by one lookup; default 8
	MaxChain   int           // CNAME links followed from the asked name; default 8
	Now        func() time.Time
}

const (
	DefaultMinTTL     = 2 * time.Minute
	DefaultMaxTTL     = 24 * time.Hour
	DefaultMaxRecords = 200_000
	DefaultMaxPerAddr = 32
	DefaultMaxNames   = 8
	DefaultMaxChain   = 8
)

// rec is one name of an address as one receiver learned it.
type rec struct {
	pid     int
	start   uint64
	uid     int64
	name    string
	expires int64  // unix nanoseconds
	seq     uint64 // insertion batch: later batches are newer
}

// addrEntry holds the records of one address; elem is its place in the LRU.
type addrEntry struct {
	addr netip.Addr
	recs []rec
	elem *list.Element
}

// Stats are counters since New.
type Stats struct {
	Records   int    // records held now
	Addresses int    // addresses held now
	Inserted  uint64 // records added or refreshed
	Evicted   uint64 // records dropped for room (not by expiry)
	Lookups   uint64
	Named     [4]uint64 // lookups answered, by source: process, user, any; [0]: none
}

// Cache is the IP→names cache. It is safe for concurrent use.
type Cache struct {
	opts Options

	mu      sync.Mutex
	addrs   map[netip.Addr]*addrEntry
	lru     *list.List // of *addrEntry, most recently used at the front
	records int
	seq     uint64
	stats   Stats
}

// New makes an empty cache.
func New(opts Options) *Cache {
	if opts.MinTTL <= 0 {
		opts.MinTTL = DefaultMinTTL
	}
	if opts.MaxTTL <= 0 {
		opts.MaxTTL = DefaultMaxTTL
	}
	if opts.MaxTTL < opts.MinTTL {
		opts.MaxTTL = opts.MinTTL
	}
	if opts.MaxRecords <= 0 {
		opts.MaxRecords = DefaultMaxRecords
	}
	if opts.MaxPerAddr <= 0 {
		opts.MaxPerAddr = DefaultMaxPerAddr
	}
	if opts.MaxPerAddr > opts.MaxRecords {
		opts.MaxPerAddr = opts.MaxRecords
	}
	if opts.MaxNames <= 0 {
		opts.MaxNames = DefaultMaxNames
	}
	if opts.MaxChain <= 0 {
		opts.MaxChain = DefaultMaxChain
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Cache{opts: opts, addrs: make(map[netip.Addr]*addrEntry), lru: list.New()}
}

// Chain returns, for every address the answer gives for qname, the names
// that lead to it: qname first, then each CNAME target on the way, and the
// TTL (seconds) that the whole chain holds for (the smallest on the way).
// Records not reachable from qname by CNAMEs are ignored: a resolver has
// no business answering them, and they could name addresses the
// application never asked for.
func Chain(qname string, records []Record, maxLinks int) map[netip.Addr]Named {
	out := make(map[netip.Addr]Named)
	if qname == "" {
		return out
	}
	names := []string{qname}
	ttl := ^uint32(0)
	cur := qname
	for {
		for _, r := range records {
			if r.Name != cur || r.Kind == KindCNAME {
				continue
			}
			n, ok := out[r.Addr]
			if !ok {
				n = Named{Names: slices.Clone(names), TTL: min(ttl, r.TTL)}
			} else {
				n.TTL = max(n.TTL, min(ttl, r.TTL))
			}
			out[r.Addr] = n
		}
		if len(names) > maxLinks {
			return out
		}
		next := ""
		for _, r := range records {
			if r.Kind == KindCNAME && r.Name == cur {
				next, ttl = r.Target, min(ttl, r.TTL)
				break
			}
		}
		if next == "" || slices.Contains(names, next) {
			return out
		}
		names = append(names, next)
		cur = next
	}
}

// Named is the chain of names that led to one address.
type Named struct {
	Names []string // the asked name first
	TTL   uint32   // seconds
}

// Insert adds what one DNS answer says (ParseAnswer's result) for the
// receiver o, and returns how many addresses it named.
func (c *Cache) Insert(o Owner, qname string, records []Record) int {
	chains := Chain(qname, records, c.opts.MaxChain)
	if len(chains) == 0 {
		return 0
	}
	now := c.opts.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	for addr, n := range chains {
		ttl := time.Duration(n.TTL) * time.Second
		ttl = min(max(ttl, c.opts.MinTTL), c.opts.MaxTTL)
		c.insertLocked(o, addr, n.Names, now.Add(ttl).UnixNano(), now.UnixNano())
	}
	return len(chains)
}

func (c *Cache) insertLocked(o Owner, addr netip.Addr, names []string, expires, now int64) {
	e := c.addrs[addr]
	if e == nil {
		e = &addrEntry{addr: addr}
		e.elem = c.lru.PushFront(e)
		c.addrs[addr] = e
	} else {
		c.lru.MoveToFront(e.elem)
	}
	// Drop expired records and this receiver's earlier records of these
	// names: the new ones replace them.
	before := len(e.recs)
	e.recs = slices.DeleteFunc(e.recs, func(r rec) bool {
		return r.expires <= now || (r.pid == o.PID && r.start == o.Start && r.uid == o.UID && slices.Contains(names, r.name))
	})
	c.records -= before - len(e.recs)
	for _, name := range names {
		if len(e.recs) >= c.opts.MaxPerAddr {
			c.dropOneLocked(e, o)
		}
		e.recs = append(e.recs, rec{pid: o.PID, start: o.Start, uid: o.UID, name: name, expires: expires, seq: c.seq})
		c.records++
		c.stats.Inserted++
	}
	for c.records > c.opts.MaxRecords {
		back := c.lru.Back()
		victim := back.Value.(*addrEntry)
		if victim == e {
			// This address alone is over the bound: trim it.
			c.dropOneLocked(e, o)
			continue
		}
		c.removeLocked(victim)
		c.stats.Evicted += uint64(len(victim.recs))
	}
}

// dropOneLocked makes room in a full address entry: the receiver's own
// oldest record goes first, so one process flooding names for an address
// cannot push out another's; otherwise the oldest record of the receiver
// holding the most.
func (c *Cache) dropOneLocked(e *addrEntry, o Owner) {
	victim := -1
	for i := range e.recs {
		r := &e.recs[i]
		if r.pid == o.PID && r.start == o.Start && r.uid == o.UID {
			victim = i
			break
		}
	}
	if victim < 0 {
		count := make(map[Owner]int, len(e.recs))
		most := 0
		for i := range e.recs {
			r := &e.recs[i]
			k := Owner{PID: r.pid, Start: r.start, UID: r.uid}
			count[k]++
			if count[k] > most {
				most = count[k]
			}
		}
		for i := range e.recs {
			r := &e.recs[i]
			if count[Owner{PID: r.pid, Start: r.start, UID: r.uid}] == most {
				victim = i
				break
			}
		}
	}
	e.recs = slices.Delete(e.recs, victim, victim+1)
	c.records--
	c.stats.Evicted++
}

func (c *Cache) removeLocked(e *addrEntry) {
	c.lru.Remove(e.elem)
	delete(c.addrs, e.addr)
	c.records -= len(e.recs)
}

// Lookup returns the names of addr for a connection of the process o: the
// names o itself received if any, else those of o's user, else anyone's,
// newest answer first and the asked name before its CNAME targets. The
// source is SourceNone (and names nil) when nobody's live answer named addr.
func (c *Cache) Lookup(o Owner, addr netip.Addr) ([]string, Source) {
	addr = addr.Unmap()
	now := c.opts.Now().UnixNano()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stats.Lookups++
	e := c.addrs[addr]
	if e == nil {
		c.stats.Named[0]++
		return nil, SourceNone
	}
	c.lru.MoveToFront(e.elem)
	var proc, user, any bool
	for i := range e.recs {
		r := &e.recs[i]
		if r.expires <= now {
			continue
		}
		any = true
		if o.sameProcess(r) {
			proc = true
			break
		}
		if o.sameUser(r) {
			user = true
		}
	}
	var src Source
	var keep func(r *rec) bool
	switch {
	case proc:
		src, keep = SourceProcess, o.sameProcess
	case user:
		src, keep = SourceUser, o.sameUser
	case any:
		src, keep = SourceAny, func(*rec) bool { return true }
	default:
		c.stats.Named[0]++
		return nil, SourceNone
	}
	// Newest batch first; within a batch, the stored (chain) order.
	var names []string
	var lastSeq uint64
	start := 0
	for i := len(e.recs) - 1; i >= 0; i-- {
		r := &e.recs[i]
		if r.expires <= now || !keep(r) {
			continue
		}
		if r.seq != lastSeq {
			start, lastSeq = len(names), r.seq
		}
		if slices.Contains(names, r.name) {
			continue
		}
		// Insert at the start of this batch's run: walking backwards,
		// this puts the batch back in its stored order.
		names = slices.Insert(names, start, r.name)
	}
	if len(names) > c.opts.MaxNames {
		names = names[:c.opts.MaxNames]
	}
	switch src {
	case SourceProcess:
		c.stats.Named[1]++
	case SourceUser:
		c.stats.Named[2]++
	default:
		c.stats.Named[3]++
	}
	return names, src
}

// Name fills conn.Hosts and conn.HostSource from the cache for an outgoing
// connection, by the process and user it was attributed to. Incoming
// connections are not named: their peer's address was not asked for.
func (c *Cache) Name(conn *shared.Connection) {
	if conn.Direction == shared.DirectionIn || !conn.RemoteIP.IsValid() {
		return
	}
	o := Owner{PID: conn.PID, Start: conn.PIDStart, UID: conn.UID}
	names, src := c.Lookup(o, conn.RemoteIP)
	if src == SourceNone {
		return
	}
	conn.Hosts = names
	conn.HostSource = string(src)
}

// Len returns the number of records held.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.records
}

// Stats returns the counters.
func (c *Cache) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats
	s.Records, s.Addresses = c.records, len(c.addrs)
	return s
}
