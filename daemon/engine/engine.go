// Package engine decides new connections: it takes each queued packet,
// decodes it, asks attribution who is behind it, asks the rule set what to
// do, gives the packet its verdict and records the decision.
//
// It owns the guarantee that every queued packet gets exactly one verdict,
// and that no decision waits on another: the queue's reader only hands
// packets over, workers decide, and a watchdog gives the default verdict to
// anything held too long. It must not talk to the kernel, the bus or the
// database directly: those sit behind the small interfaces below.
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tollgate-fw/tollgate/daemon/attribution"
	"github.com/tollgate-fw/tollgate/daemon/config"
	"github.com/tollgate-fw/tollgate/daemon/packet"
	"github.com/tollgate-fw/tollgate/daemon/pending"
	"github.com/tollgate-fw/tollgate/daemon/queue"
	"github.com/tollgate-fw/tollgate/daemon/rules"
	"github.com/tollgate-fw/tollgate/shared"
)

// Verdicts gives held packets their verdict (the NFQUEUE).
type Verdicts interface {
	Verdict(id uint32, v queue.Verdict) error
}

// Attributor finds the process behind a connection.
type Attributor interface {
	Lookup(ctx context.Context, q attribution.Query) (attribution.Process, bool, error)
}

// Recorder keeps decisions: the connection log.
type Recorder interface {
	AppendLog(entries []shared.LogEntry) error
}

// Asker holds a connection no rule covers while its user is asked (the
// pending broker). Ask returns false when nobody can be asked: the default
// applies at once. The answer comes back through Resolve.
type Asker interface {
	Ask(p pending.Packet) bool
}

// Namer names a connection from the DNS answers its process (or, as a
// fallback, its user or anyone) received: it sets Hosts and HostSource.
type Namer interface {
	Name(c *shared.Connection)
}

// Options are the engine's settings.
type Options struct {
	Mode          config.Mode
	DefaultAction shared.Action
	RejectMark    uint32 // OR-ed into the packet mark before NF_REPEAT to reject
	// OR-ed into the packet mark before NF_REPEAT to allow, by direction, so
	// the packet goes on through the rest of the built-in chain; 0: NF_ACCEPT.
	AcceptMarkOut, AcceptMarkIn uint32
	WatchdogAge                 time.Duration // held longer than this: default verdict
	Workers                     int           // deciding goroutines; 0 = a sensible default
	Backlog                     int           // packets waiting for a worker; past it, the default applies at once
	LogFlush                    time.Duration // how often the connection log is written; 0 = DefaultLogFlush
	IfName                      func(index uint32) string
	Namer                       Namer // nil: connections carry no names
}

// The connection log's buffering. Decisions go into a channel of logQueue
// entries; the writer moves them into a batch that it hands to the Recorder
// every LogFlush, or sooner when logBatch are waiting. Each AppendLog is a
// synced commit, so a batch should be large: at the benchmark's 7,000
// connections a second, 256-entry batches made 27 commits (54 fsyncs) a
// second, 1,024-entry ones make 7. Entries are some 400 bytes with pointers,
// which the collector scans on every cycle wherever they wait: channel and
// batch together hold 2,048 (0.8 MB; the channel alone was 8,192, 3.3 MB).
// The channel absorbs what arrives while a batch is being committed (at
// 7,000 a second, 1,024 entries are 146 ms of decisions); past it, entries
// are dropped and counted (Stats.LogDropped), never waited for.
const (
	DefaultLogFlush = 500 * time.Millisecond // a tray polling the log every 2 s sees entries at most 2.5 s old
	logQueue        = 1024
	logBatch        = 1024
)

// Stats are counters since start.
type Stats struct {
	Decided, Allowed, Denied, Rejected uint64
	Overflow                           uint64 // default verdict because the backlog was full
	Watchdog                           uint64 // default verdict given by the watchdog
	Undecodable                        uint64 // packets that could not be parsed (default verdict)
	VerdictErrors                      uint64
	LogDropped                         uint64 // log entries lost because the log writer fell behind
	Held                               int    // packets waiting for a verdict now
}

// Engine decides connections. Create it with New, feed it with Handle, and
// run it with Run.
type Engine struct {
	opts     Options
	log      *slog.Logger
	verdicts Verdicts
	attrib   Attributor
	rec      Recorder
	asker    Asker
	now      func() time.Time

	rules   atomic.Pointer[rules.Set]
	mode    atomic.Value // config.Mode
	backlog chan queue.Packet
	logBuf  chan shared.LogEntry
	// defaultReason is the Reason of a default verdict no rule or answer
	// gave (built once: the default action is fixed).
	defaultReason string
	nextID        atomic.Uint64

	mu   sync.Mutex
	held map[uint32]held // packet id -> held packet; deleted by whoever gives the verdict

	hitMu sync.Mutex
	hits  map[string]Hit

	decided, allowed, denied, rejected atomic.Uint64
	overflow, watchdog, undecodable    atomic.Uint64
	verdictErrors, logDropped          atomic.Uint64
}

// held is a packet waiting for its verdict.
type held struct {
	since   time.Time
	mark    uint32 // the packet's mark, kept when marking the verdict
	inbound bool
}

// isInbound tells an INPUT packet from an OUTPUT one: each hook knows only
// its own device.
func isInbound(p *queue.Packet) bool { return p.InDev != 0 && p.OutDev == 0 }

// Hit counts how often a rule decided and when it last did.
type Hit struct {
	Count uint64
	Last  time.Time
}

// New makes an engine. rec may be nil (no connection log).
func New(opts Options, log *slog.Logger, v Verdicts, a Attributor, rec Recorder) *Engine {
	if opts.Workers <= 0 {
		opts.Workers = 16
	}
	if opts.Backlog <= 0 {
		opts.Backlog = 4096
	}
	if opts.LogFlush <= 0 {
		opts.LogFlush = DefaultLogFlush
	}
	if opts.IfName == nil {
		opts.IfName = func(uint32) string { return "" }
	}
	e := &Engine{
		opts:     opts,
		log:      log,
		verdicts: v,
		attrib:   a,
		rec:      rec,
		now:      time.Now,
		backlog:  make(chan queue.Packet, opts.Backlog),
		logBuf:   make(chan shared.LogEntry, logQueue),
		held:     make(map[uint32]held),
		hits:     make(map[string]Hit),
	}
	// Connection ids go on from the clock, so they stay unique (and the
	// log's order) across restarts: clients tell log entries apart by id.
	e.nextID.Store(uint64(time.Now().UnixNano()))
	e.defaultReason = fmt.Sprintf("no rule matched and nobody can be asked: default action %s", opts.DefaultAction)
	e.mode.Store(opts.Mode)
	e.rules.Store(rules.NewSet(nil))
	return e
}

// SetAsker makes the engine hold connections no rule covers and ask about
// them. Call it before Run.
func (e *Engine) SetAsker(a Asker) { e.asker = a }

// SetRules swaps in a new rule set; decisions already running finish with
// the old one.
func (e *Engine) SetRules(s *rules.Set) { e.rules.Store(s) }

// Rules returns the rule set in force.
func (e *Engine) Rules() *rules.Set { return e.rules.Load() }

// SetMode changes the mode for every later decision.
func (e *Engine) SetMode(m config.Mode) { e.mode.Store(m) }

// Mode returns the mode in force.
func (e *Engine) Mode() config.Mode { return e.mode.Load().(config.Mode) }

// Handle takes one queued packet. It never blocks: it is called on the
// queue's reader goroutine. When the backlog is full, the packet gets the
// default verdict at once.
func (e *Engine) Handle(p queue.Packet) {
	now := e.now()
	if p.Received.IsZero() {
		p.Received = now
	}
	e.mu.Lock()
	e.held[p.ID] = held{since: now, mark: p.Mark, inbound: isInbound(&p)}
	e.mu.Unlock()
	select {
	case e.backlog <- p:
	default:
		e.overflow.Add(1)
		e.settleDefault(p.ID, "backlog full")
	}
}

// Run decides packets until ctx ends; then it gives every packet still held
// the default verdict, writes the log and returns.
func (e *Engine) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for i := 0; i < e.opts.Workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.work(ctx)
		}()
	}
	// The log writer outlives the workers: it stops only after every
	// decision, including the last defaults below, has been recorded.
	logStop, logDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(logDone)
		e.writeLog(logStop)
	}()
	e.watch(ctx)
	wg.Wait()
	// Whatever is still waiting, in the backlog or held, gets the default.
	for {
		select {
		case p := <-e.backlog:
			e.settleDefault(p.ID, "daemon stopping")
			continue
		default:
		}
		break
	}
	e.mu.Lock()
	ids := make([]uint32, 0, len(e.held))
	for id := range e.held {
		ids = append(ids, id)
	}
	e.mu.Unlock()
	for _, id := range ids {
		e.settleDefault(id, "daemon stopping")
	}
	close(logStop)
	<-logDone
	return nil
}

func (e *Engine) work(ctx context.Context) {
	// The connection being decided lives here, not in decide's frame: it
	// is handed to the Namer (an interface), so the compiler would move it
	// to the heap, 384 bytes for every decision.
	c := new(shared.Connection)
	for {
		select {
		case <-ctx.Done():
			return
		case p := <-e.backlog:
			e.decide(ctx, p, c)
		}
	}
}

// watch is the watchdog: nothing stays held longer than WatchdogAge.
func (e *Engine) watch(ctx context.Context) {
	period := e.opts.WatchdogAge / 4
	if period <= 0 || period > time.Second {
		period = time.Second
	}
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			e.sweep()
		}
	}
}

// sweep gives the default verdict to every packet held longer than
// WatchdogAge, and returns how many it found.
func (e *Engine) sweep() int {
	cutoff := e.now().Add(-e.opts.WatchdogAge)
	var old []uint32
	e.mu.Lock()
	for id, h := range e.held {
		if h.since.Before(cutoff) {
			old = append(old, id)
		}
	}
	e.mu.Unlock()
	for _, id := range old {
		if e.settleDefault(id, "held too long (watchdog)") {
			e.watchdog.Add(1)
		}
	}
	return len(old)
}

// claim takes the packet out of the held set; only the caller that claims it
// gives its verdict.
func (e *Engine) claim(id uint32) (held, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	h, ok := e.held[id]
	if ok {
		delete(e.held, id)
	}
	return h, ok
}

// settleDefault gives the default verdict to a packet, unless somebody else
// already gave it one.
func (e *Engine) settleDefault(id uint32, why string) bool {
	h, ok := e.claim(id)
	if !ok {
		return false
	}
	a := e.opts.DefaultAction
	if m := e.Mode(); m != config.ModeEnforcing {
		a = shared.ActionAllow
	}
	e.log.Warn("default verdict", "packet", id, "action", a, "reason", why)
	e.give(id, h, a)
	return true
}

// give sends the verdict for a claimed packet. Marked verdicts keep the
// packet's other mark bits: the verdict mark replaces the packet's.
func (e *Engine) give(id uint32, h held, a shared.Action) {
	var v queue.Verdict
	mark := h.mark
	switch a {
	case shared.ActionAllow:
		bit := e.opts.AcceptMarkOut
		if h.inbound {
			bit = e.opts.AcceptMarkIn
		}
		v = queue.Verdict{Kind: queue.Accept}
		if bit != 0 {
			v = queue.Verdict{Kind: queue.Repeat, Mark: mark | bit, SetMark: true}
		}
		e.allowed.Add(1)
	case shared.ActionReject:
		// The chain rejects packets carrying the reject bit.
		v = queue.Verdict{Kind: queue.Repeat, Mark: mark | e.opts.RejectMark, SetMark: true}
		e.rejected.Add(1)
	default:
		v = queue.Verdict{Kind: queue.Drop}
		e.denied.Add(1)
	}
	e.decided.Add(1)
	if err := e.verdicts.Verdict(id, v); err != nil {
		e.verdictErrors.Add(1)
		e.log.Error("give verdict", "packet", id, "action", a, "err", err)
	}
}

// decide runs the whole path for one packet; c is the worker's scratch
// connection (nothing keeps it: what is kept is copied).
func (e *Engine) decide(ctx context.Context, p queue.Packet, c *shared.Connection) {
	mode := e.Mode()
	if mode == config.ModeDisabled {
		// Everything allowed, nothing logged: no need to know who it is.
		if h, ok := e.claim(p.ID); ok {
			e.give(p.ID, h, shared.ActionAllow)
		}
		return
	}
	var pkt packet.Packet
	if err := packet.Decode(p.Payload, &pkt); err != nil {
		e.undecodable.Add(1)
		e.log.Warn("undecodable packet", "packet", p.ID, "len", len(p.Payload), "err", err)
		e.settleDefault(p.ID, "undecodable packet")
		return
	}
	*c = e.connection(ctx, p, &pkt)
	if e.opts.Namer != nil {
		e.opts.Namer.Name(c) // after attribution: names belong to the process
	}
	var v shared.Verdict
	d := e.rules.Load().Decide(c, c.Time)
	rule := d.Rule
	switch {
	case rule != nil:
		v = shared.Verdict{Action: d.Action, RuleID: rule.ID, Reason: d.Explanation + hostReason(d.HostMatched, c.HostSource)}
	case mode == config.ModeEnforcing && e.asker != nil && e.asker.Ask(pending.Packet{ID: p.ID, Conn: *c}):
		// Held: the answer, the prompt timeout or the watchdog gives the
		// verdict through Resolve or settleDefault.
		return
	default:
		v = shared.Verdict{Action: e.opts.DefaultAction, Unasked: true, Reason: e.defaultReason}
	}
	act := v.Action
	if mode == config.ModeMonitor {
		v.Monitor = true
		act = shared.ActionAllow
	}
	h, ok := e.claim(p.ID)
	if !ok {
		// The watchdog or shutdown got there first; it gave the default.
		return
	}
	// The log entry is queued before the verdict goes out: whatever the
	// verdict lets happen next (the application's next connection, decided
	// by another worker) is logged after this one.
	e.queueLog(c, v)
	e.give(p.ID, h, act)
	if rule != nil {
		e.hit(rule.ID, c.Time)
	}
	e.logLine(c, v)
}

// Resolve gives the verdict of an answered (or expired) pending group to
// each of its packets that nobody else has decided meanwhile, and logs them.
func (e *Engine) Resolve(pkts []pending.Packet, v shared.Verdict) {
	for _, p := range pkts {
		h, ok := e.claim(p.ID)
		if !ok {
			continue // the watchdog or shutdown got there first
		}
		e.queueLog(&p.Conn, v) // before the verdict, as in decide
		e.give(p.ID, h, v.Action)
		if v.RuleID != "" {
			e.hit(v.RuleID, e.now())
		}
		e.logLine(&p.Conn, v)
	}
}

// connection builds the attributed connection for a decoded packet.
func (e *Engine) connection(ctx context.Context, p queue.Packet, pkt *packet.Packet) shared.Connection {
	c := shared.Connection{
		ID:       e.nextID.Add(1),
		Time:     p.Time,
		ProtoNum: pkt.Proto,
		Proto:    protoOf(pkt.Proto),
		UID:      p.UID,
		GID:      p.GID,
	}
	if c.Time.IsZero() {
		c.Time = e.now()
	}
	inbound := isInbound(&p)
	if inbound {
		c.Direction = shared.DirectionIn
		c.LocalIP, c.LocalPort = pkt.Dst, pkt.DstPort
		c.RemoteIP, c.RemotePort = pkt.Src, pkt.SrcPort
		c.Iface = e.opts.IfName(p.InDev)
	} else {
		c.Direction = shared.DirectionOut
		c.LocalIP, c.LocalPort = pkt.Src, pkt.SrcPort
		c.RemoteIP, c.RemotePort = pkt.Dst, pkt.DstPort
		c.Iface = e.opts.IfName(p.OutDev)
	}
	c.Attribution = shared.AttributedNone
	if c.UID >= 0 {
		c.Attribution = shared.AttributedUIDOnly
	}
	if e.attrib == nil {
		return c
	}
	q := attribution.Query{
		Proto:   pkt.Proto,
		Inbound: inbound,
		Local:   netip.AddrPortFrom(c.LocalIP, c.LocalPort),
		Remote:  netip.AddrPortFrom(c.RemoteIP, c.RemotePort),
		UID:     c.UID,
		Sent:    p.Received,
	}
	proc, found, err := e.attrib.Lookup(ctx, q)
	if err != nil && !errors.Is(err, context.Canceled) {
		e.log.Debug("attribution", "conn", c.ID, "err", err)
	}
	if !found {
		return c
	}
	c.PID, c.PIDStart, c.PPID = proc.PID, proc.PIDStart, proc.PPID
	c.Exe, c.ExeSHA256, c.Cmdline, c.Unit, c.App, c.User = proc.Exe, proc.ExeSHA256, proc.Cmdline, proc.Unit, proc.App, proc.User
	c.ExeClaimed = proc.ExeClaimed // the path it claims, when it could not be verified
	if c.UID < 0 {
		c.UID, c.GID = proc.UID, proc.GID // inbound: the listener's owner
	}
	c.Attribution = shared.AttributedProcess
	return c
}

func protoOf(n uint8) shared.Proto {
	switch n {
	case packet.ProtoTCP:
		return shared.ProtoTCP
	case packet.ProtoUDP, packet.ProtoUDPLite:
		return shared.ProtoUDP
	case packet.ProtoICMP, packet.ProtoICMPv6:
		return shared.ProtoICMP
	}
	return shared.ProtoAny
}

func (e *Engine) hit(id string, t time.Time) {
	e.hitMu.Lock()
	h := e.hits[id]
	h.Count++
	h.Last = t
	e.hits[id] = h
	e.hitMu.Unlock()
}

// TakeHits returns the rule hits counted since the last call and resets
// them, for the caller to persist.
func (e *Engine) TakeHits() map[string]Hit {
	e.hitMu.Lock()
	defer e.hitMu.Unlock()
	h := e.hits
	e.hits = make(map[string]Hit)
	return h
}

// hostReason says which name a host rule matched and whose DNS answer gave
// it; "" when the rule named no host.
func hostReason(host, source string) string {
	if host == "" {
		return ""
	}
	switch source {
	case "process":
		return fmt.Sprintf("; host %s, as its own process resolved it", host)
	case "user":
		return fmt.Sprintf("; host %s, as another process of the same user resolved it (fallback)", host)
	}
	return fmt.Sprintf("; host %s, as another user's process resolved it (fallback)", host)
}

// logLine writes the decision to the daemon's log (at info).
func (e *Engine) logLine(c *shared.Connection, v shared.Verdict) {
	lvl := slog.LevelInfo
	if e.log.Enabled(context.Background(), lvl) {
		who := c.Exe
		if c.PID == 0 {
			who = fmt.Sprintf("uid %d (process unknown)", c.UID)
		}
		e.log.Log(context.Background(), lvl, "decided",
			"verdict", v.Action, "monitor", v.Monitor,
			"dir", c.Direction, "proto", c.Proto,
			"local", netip.AddrPortFrom(c.LocalIP, c.LocalPort).String(),
			"remote", netip.AddrPortFrom(c.RemoteIP, c.RemotePort).String(),
			"who", who, "pid", c.PID, "uid", c.UID, "hosts", c.Hosts, "host_source", c.HostSource,
			"rule", v.RuleID, "reason", v.Reason)
	}
}

// queueLog queues the connection's log entry for the writer; when the
// writer is behind, the entry is dropped and counted, never waited for.
func (e *Engine) queueLog(c *shared.Connection, v shared.Verdict) {
	if e.rec == nil {
		return
	}
	select {
	case e.logBuf <- shared.LogEntry{Connection: *c, Verdict: v}:
	default:
		e.logDropped.Add(1)
	}
}

// writeLog batches log entries into the recorder until stop is closed, then
// writes what is left.
func (e *Engine) writeLog(stop <-chan struct{}) {
	if e.rec == nil {
		<-stop
		return
	}
	t := time.NewTicker(e.opts.LogFlush)
	defer t.Stop()
	batch := make([]shared.LogEntry, 0, logBatch)
	flush := func() {
		if len(batch) == 0 {
			return
		}
		if err := e.rec.AppendLog(batch); err != nil {
			e.logDropped.Add(uint64(len(batch)))
			e.log.Error("write connection log", "entries", len(batch), "err", err)
		}
		clear(batch) // let go of the entries' strings until the slots are reused
		batch = batch[:0]
	}
	for {
		select {
		case le := <-e.logBuf:
			batch = append(batch, le)
			if len(batch) == cap(batch) {
				flush()
			}
		case <-t.C:
			flush()
		case <-stop:
			for {
				select {
				case le := <-e.logBuf:
					batch = append(batch, le)
					if len(batch) == cap(batch) {
						flush()
					}
					continue
				default:
				}
				break
			}
			flush()
			return
		}
	}
}

// Stats returns the counters.
func (e *Engine) Stats() Stats {
	e.mu.Lock()
	held := len(e.held)
	e.mu.Unlock()
	return Stats{
		Decided: e.decided.Load(), Allowed: e.allowed.Load(), Denied: e.denied.Load(), Rejected: e.rejected.Load(),
		Overflow: e.overflow.Load(), Watchdog: e.watchdog.Load(), Undecodable: e.undecodable.Load(),
		VerdictErrors: e.verdictErrors.Load(), LogDropped: e.logDropped.Load(), Held: held,
	}
}
