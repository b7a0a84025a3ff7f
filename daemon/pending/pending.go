// Package pending holds the connections no rule covers while their user is
// asked: it groups held packets that ask the same question into one pending
// group, bounds how many groups and packets are held, ends groups at their
// answer, at the prompt timeout or when their agents go away, and says which
// packets get which verdict.
//
// It owns the pending groups and their bounds. It must not give verdicts,
// speak D-Bus or make rules: it reports what ended through Events, and the
// daemon acts on it. Plain Go; safe for concurrent use.
package pending

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/tollgate-fw/tollgate/shared"
)

// Errors callers branch on.
var (
	ErrNotFound    = errors.New("no such pending connection")
	ErrNotEntitled = errors.New("not entitled to answer this connection")
)

// Packet is one held packet and the connection it opens.
type Packet struct {
	ID   uint32 // queue packet id
	Conn shared.Connection
}

// Key is what makes connections one question: the same process (or the same
// uid, when the process is unknown), remote host or address, port, protocol
// and direction.
type Key struct {
	PID       int
	PIDStart  uint64
	UID       int64
	Exe       string
	Remote    string // the first host name, else the address
	Port      uint16
	Proto     shared.Proto
	Direction shared.Direction
}

// KeyOf returns the grouping key of a connection.
func KeyOf(c *shared.Connection) Key {
	remote := c.RemoteIP.String()
	if len(c.Hosts) > 0 {
		remote = c.Hosts[0]
	}
	return Key{PID: c.PID, PIDStart: c.PIDStart, UID: c.UID, Exe: c.Exe, Remote: remote,
		Port: c.RemotePort, Proto: c.Proto, Direction: c.Direction}
}

// Group is one pending question: the first connection (what a prompt
// shows), how many attempts joined it, and whom it was offered to.
type Group struct {
	ID       uint64
	Key      Key
	Conn     shared.Connection
	Count    int // attempts grouped, including the first
	Since    time.Time
	Deadline time.Time
	Agents   []string // agents it was offered to (unique bus names)
}

// Agents says who may be asked about a uid's connections.
type Agents interface {
	// For returns the agents entitled to answer connections of uid: that
	// user's agents, or admin agents for system users. Empty: nobody.
	For(uid int64) []string
}

// Events hears what the broker decided. Calls come without the broker's
// lock held, on the goroutine that caused them.
type Events interface {
	// Pending: a new group was opened and should be offered to g.Agents.
	Pending(g Group)
	// Resolved: the group ended with verdict v; every packet in pkts gets
	// it (nil for a group that was only listed, never held).
	Resolved(g Group, v shared.Verdict, pkts []Packet)
}

// Options bound the broker.
type Options struct {
	Timeout     time.Duration // how long a group waits for an answer
	MaxGroups   int           // open groups at most; past it, nothing more is held
	MaxPerUID   int           // open groups of one uid at most, so one user cannot crowd out the others' prompts
	MaxPerGroup int           // packets held in one group; past it, the extra gets the default at once
	Default     shared.Action // the verdict when nobody answers in time
	Now         func() time.Time
}

type group struct {
	Group
	packets []Packet
}

// Broker holds pending groups.
type Broker struct {
	opts   Options
	agents Agents
	ev     Events

	mu     sync.Mutex
	nextID uint64
	byKey  map[Key]*group
	byID   map[uint64]*group
	perUID map[int64]int
}

// MaxHeld is the most packets the broker can hold at once with these
// options: the kernel queue must have room for them and more.
func (o Options) MaxHeld() int { return o.MaxGroups * o.MaxPerGroup }

// New makes a broker.
func New(opts Options, agents Agents, ev Events) *Broker {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxGroups <= 0 {
		opts.MaxGroups = 128
	}
	if opts.MaxPerGroup <= 0 {
		opts.MaxPerGroup = 16
	}
	if opts.MaxPerUID <= 0 {
		opts.MaxPerUID = max(opts.MaxGroups/4, 1)
	}
	if opts.Default == "" {
		opts.Default = shared.ActionDeny
	}
	return &Broker{opts: opts, agents: agents, ev: ev, byKey: make(map[Key]*group), byID: make(map[uint64]*group),
		perUID: make(map[int64]int)}
}

// Ask holds p until its group is answered. It returns false when p cannot
// be held (nobody entitled to ask, too many groups, a full group): the
// caller gives the default verdict at once.
func (b *Broker) Ask(p Packet) bool {
	k := KeyOf(&p.Conn)
	b.mu.Lock()
	if g, ok := b.byKey[k]; ok {
		if len(g.packets) >= b.opts.MaxPerGroup {
			b.mu.Unlock()
			return false
		}
		g.packets = append(g.packets, p)
		g.Count++
		b.mu.Unlock()
		return true
	}
	if len(b.byID) >= b.opts.MaxGroups || b.perUID[p.Conn.UID] >= b.opts.MaxPerUID {
		b.mu.Unlock()
		return false
	}
	agents := b.agents.For(p.Conn.UID)
	if len(agents) == 0 {
		b.mu.Unlock()
		return false
	}
	b.nextID++
	now := b.opts.Now()
	g := &group{Group: Group{ID: b.nextID, Key: k, Conn: p.Conn, Count: 1, Since: now,
		Deadline: now.Add(b.opts.Timeout), Agents: slices.Clone(agents)}, packets: []Packet{p}}
	b.byKey[k] = g
	b.byID[g.ID] = g
	b.perUID[p.Conn.UID]++
	snap := g.snapshot()
	b.mu.Unlock()
	b.ev.Pending(snap)
	return true
}

// take removes a group and returns it with its packets.
func (b *Broker) take(id uint64) (*group, bool) {
	g, ok := b.byID[id]
	if !ok {
		return nil, false
	}
	delete(b.byID, id)
	delete(b.byKey, g.Key)
	if b.perUID[g.Conn.UID]--; b.perUID[g.Conn.UID] <= 0 {
		delete(b.perUID, g.Conn.UID)
	}
	return g, true
}

// snapshot copies the group for use outside the lock: Agents is changed
// in place by AgentGone.
func (g *group) snapshot() Group {
	s := g.Group
	s.Agents = slices.Clone(g.Agents)
	return s
}

// Answer ends group id with verdict v. agent is the answering agent's
// unique name ("" for an answer that is not from an agent, e.g. an admin's
// CLI); admin callers may answer any group, others only groups offered to
// them.
func (b *Broker) Answer(id uint64, agent string, admin bool, v shared.Verdict) (Group, error) {
	b.mu.Lock()
	g, ok := b.byID[id]
	if !ok {
		b.mu.Unlock()
		return Group{}, fmt.Errorf("%w: %d", ErrNotFound, id)
	}
	if !admin && !slices.Contains(g.Agents, agent) {
		b.mu.Unlock()
		return Group{}, fmt.Errorf("%w: %d", ErrNotEntitled, id)
	}
	b.take(id)
	snap := g.snapshot()
	b.mu.Unlock()
	b.ev.Resolved(snap, v, g.packets)
	return snap, nil
}

// Get returns a group by id.
func (b *Broker) Get(id uint64) (Group, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	g, ok := b.byID[id]
	if !ok {
		return Group{}, false
	}
	return g.snapshot(), true
}

// List returns the open groups, oldest first; uid < 0 lists every user's.
func (b *Broker) List(uid int64) []Group {
	b.mu.Lock()
	out := make([]Group, 0, len(b.byID))
	for _, g := range b.byID {
		if uid < 0 || g.Conn.UID == uid {
			out = append(out, g.snapshot())
		}
	}
	b.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Len returns the number of open groups.
func (b *Broker) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.byID)
}

// Expire ends every group past its deadline with the default verdict and
// returns how many it ended.
func (b *Broker) Expire() int {
	now := b.opts.Now()
	return b.endWhere(func(g *group) bool { return !now.Before(g.Deadline) },
		fmt.Sprintf("nobody answered within %s: default action %s", b.opts.Timeout, b.opts.Default), false)
}

// AgentGone forgets an agent: groups offered to nobody else end with the
// default verdict at once.
func (b *Broker) AgentGone(name string) int {
	b.mu.Lock()
	for _, g := range b.byID {
		g.Agents = slices.DeleteFunc(g.Agents, func(a string) bool { return a == name })
	}
	b.mu.Unlock()
	return b.endWhere(func(g *group) bool { return len(g.Agents) == 0 },
		fmt.Sprintf("the agent asked went away: default action %s", b.opts.Default), true)
}

// Close ends every group with the default verdict.
func (b *Broker) Close() int {
	return b.endWhere(func(*group) bool { return true }, fmt.Sprintf("daemon stopping: default action %s", b.opts.Default), true)
}

// endWhere ends the groups cond picks with the default verdict; unasked
// says no answer could come (see shared.Verdict.Unasked).
func (b *Broker) endWhere(cond func(*group) bool, reason string, unasked bool) int {
	type endedGroup struct {
		g    Group
		pkts []Packet
	}
	var ended []endedGroup
	b.mu.Lock()
	for id, g := range b.byID {
		if cond(g) {
			b.take(id)
			ended = append(ended, endedGroup{g.snapshot(), g.packets})
		}
	}
	b.mu.Unlock()
	sort.Slice(ended, func(i, j int) bool { return ended[i].g.ID < ended[j].g.ID })
	v := shared.Verdict{Action: b.opts.Default, Reason: reason, Unasked: unasked}
	for _, e := range ended {
		b.ev.Resolved(e.g, v, e.pkts)
	}
	return len(ended)
}
