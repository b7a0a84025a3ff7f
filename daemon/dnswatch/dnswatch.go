// Package dnswatch reads the DNS answers queued to the daemon's second
// NFQUEUE and feeds them to the IP→names cache, attributed to the process
// whose socket receives them.
//
// It owns the order that makes a name ready before the application can use
// it: each answer is parsed, its receiving socket attributed and its names
// inserted into the cache, and only then is the packet accepted. Every
// packet is accepted, whatever it holds: answers are never held for a
// decision, dropped or changed. It must not decide connections, install
// netfilter rules or parse DNS itself (package dnscache does).
package dnswatch

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"sync/atomic"

	"github.com/tollgate-fw/tollgate/daemon/attribution"
	"github.com/tollgate-fw/tollgate/daemon/dnscache"
	"github.com/tollgate-fw/tollgate/daemon/packet"
	"github.com/tollgate-fw/tollgate/daemon/queue"
)

// Verdicts accepts queued answers (the DNS NFQUEUE).
type Verdicts interface {
	Verdict(id uint32, v queue.Verdict) error
}

// Attributor finds the process behind a socket.
type Attributor interface {
	Lookup(ctx context.Context, q attribution.Query) (attribution.Process, bool, error)
}

// Cache keeps what answers say.
type Cache interface {
	Insert(o dnscache.Owner, qname string, records []dnscache.Record) int
}

// Stats are counters since New.
type Stats struct {
	Packets    uint64 // packets seen (every one accepted)
	Answers    uint64 // DNS answers that named at least one address
	Attributed uint64 // of those, received by a process that was found
	NotDNS     uint64 // not a UDP packet from port 53 (or undecodable)
	Skipped    uint64 // DNS messages that were not successful answers
	Malformed  uint64 // port-53 payloads that are not DNS
	AcceptErr  uint64 // accept verdicts the kernel refused
}

// Watcher handles DNS answer packets. Its Handle is safe for concurrent use.
type Watcher struct {
	log    *slog.Logger
	ctx    context.Context
	v      Verdicts
	attrib Attributor
	cache  Cache

	packets, answers, attributed, notDNS, skipped, malformed, acceptErr atomic.Uint64
}

// New makes a Watcher. attrib may be nil: names are then kept for nobody in
// particular (found only through the "any" fallback). ctx bounds attribution
// lookups.
func New(ctx context.Context, log *slog.Logger, v Verdicts, attrib Attributor, cache Cache) *Watcher {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Watcher{log: log, ctx: ctx, v: v, attrib: attrib, cache: cache}
}

// Handle learns from one queued packet and then accepts it. It is called on
// the DNS queue's reader goroutine; the answer reaches the application only
// after its names are in the cache.
func (w *Watcher) Handle(p queue.Packet) {
	w.packets.Add(1)
	w.learn(p)
	if err := w.v.Verdict(p.ID, queue.Verdict{Kind: queue.Accept}); err != nil {
		w.acceptErr.Add(1)
		w.log.Error("accept DNS answer", "packet", p.ID, "err", err)
	}
}

func (w *Watcher) learn(p queue.Packet) {
	var pkt packet.Packet
	if err := packet.Decode(p.Payload, &pkt); err != nil || !pkt.IsUDP() || pkt.SrcPort != 53 || pkt.Fragment {
		w.notDNS.Add(1)
		return
	}
	qname, recs, err := dnscache.ParseAnswer(pkt.Payload(p.Payload))
	switch {
	case errors.Is(err, dnscache.ErrNotAnswer):
		w.skipped.Add(1)
		return
	case err != nil:
		w.malformed.Add(1)
		w.log.Debug("unreadable DNS answer", "packet", p.ID, "from", pkt.Src, "err", err)
		return
	}
	// The answer's destination is the socket that sent the query: local
	// is its address, remote the server's.
	o := dnscache.Owner{UID: p.UID}
	if w.attrib != nil {
		q := attribution.Query{
			Proto:   pkt.Proto,
			Local:   netip.AddrPortFrom(pkt.Dst, pkt.DstPort),
			Remote:  netip.AddrPortFrom(pkt.Src, pkt.SrcPort),
			UID:     p.UID,
			GID:     p.GID,
			IfIndex: p.InDev,
		}
		proc, found, err := w.attrib.Lookup(w.ctx, q)
		if err != nil && !errors.Is(err, context.Canceled) {
			w.log.Debug("attribute DNS answer", "packet", p.ID, "err", err)
		}
		o.UID = proc.UID
		if found {
			o.PID, o.Start = proc.PID, proc.PIDStart
		}
	}
	if n := w.cache.Insert(o, qname, recs); n > 0 {
		w.answers.Add(1)
		if o.PID > 0 {
			w.attributed.Add(1)
		}
		w.log.Debug("DNS answer", "name", qname, "addresses", n, "pid", o.PID, "uid", o.UID)
	}
}

// Stats returns the counters.
func (w *Watcher) Stats() Stats {
	return Stats{
		Packets: w.packets.Load(), Answers: w.answers.Load(), Attributed: w.attributed.Load(),
		NotDNS: w.notDNS.Load(), Skipped: w.skipped.Load(), Malformed: w.malformed.Load(),
		AcceptErr: w.acceptErr.Load(),
	}
}
