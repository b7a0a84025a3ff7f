// Package service assembles the daemon: configuration, store, rules,
// attribution, netfilter chains, the queue and the engine, in the order that
// keeps the machine fail-closed, and takes them down again in reverse.
//
// It owns start-up and shutdown order and rule reloading. It must not decide
// connections (engine), parse rules (shared, rulesdir) or speak to the
// kernel itself (netfilter, queue, attribution).
package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"sync"
	"time"

	"github.com/tollgate-fw/tollgate/daemon/attribution"
	"github.com/tollgate-fw/tollgate/daemon/bus"
	"github.com/tollgate-fw/tollgate/daemon/config"
	"github.com/tollgate-fw/tollgate/daemon/dnscache"
	"github.com/tollgate-fw/tollgate/daemon/dnswatch"
	"github.com/tollgate-fw/tollgate/daemon/engine"
	"github.com/tollgate-fw/tollgate/daemon/netfilter"
	"github.com/tollgate-fw/tollgate/daemon/pending"
	"github.com/tollgate-fw/tollgate/daemon/queue"
	"github.com/tollgate-fw/tollgate/daemon/rulebook"
	"github.com/tollgate-fw/tollgate/daemon/rulesdir"
	"github.com/tollgate-fw/tollgate/daemon/store"
	"github.com/tollgate-fw/tollgate/shared"
)

// Service is a running daemon.
type Service struct {
	cfg     config.Config
	log     *slog.Logger
	version string
	store   *store.Store
	engine  *engine.Engine
	book    *rulebook.Book
	broker  *pending.Broker
	attr    *attribution.Attributor
	srv     *bus.Server
}

// Options are what Run needs.
type Options struct {
	Config  config.Config
	Log     *slog.Logger
	Reload  <-chan struct{} // a value each time rules.d should be read again (SIGHUP)
	Version string
}

// entitled asks the bus server whom a uid's connections may be offered to.
type entitled struct{ srv *bus.Server }

func (e entitled) For(uid int64) []string { return e.srv.Entitled(uid) }

// Housekeeping periods.
const (
	hitFlush  = 10 * time.Second // rule hit counters to the store
	houseTick = time.Second      // pending timeouts, ended process and until rules
)

// Run starts the daemon and blocks until ctx ends or a part fails. On
// return the chains are removed (unless the queue reader died: then they
// stay, fail-closed, for the restarted daemon to replace), the log is
// written and the store is closed.
func Run(ctx context.Context, o Options) (err error) {
	cfg, log, reload := o.Config, o.Log, o.Reload
	st, err := store.Open(store.Options{
		Path:          cfg.Database,
		LockTimeout:   cfg.DatabaseLockTimeout.Duration,
		MaxLogEntries: cfg.LogMaxEntries,
	}, log)
	if err != nil {
		return fmt.Errorf("open database: %w", err)
	}
	defer func() {
		if cerr := st.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close database: %w", cerr)
		}
	}()

	s := &Service{cfg: cfg, log: log, store: st, version: o.Version}

	attr, err := attribution.New(ctx, log, attribution.Options{ProcEventsNetns: cfg.ProcEventsNetns})
	if err != nil {
		return fmt.Errorf("start attribution: %w", err)
	}
	defer attr.Close()
	s.attr = attr

	ifn := newIfNames()
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()

	// Queues are opened before the chains exist, so the first queued packet
	// already has a reader; after a crash, the old chains may queue packets
	// the moment a queue is bound. So whatever handles a queue's packets
	// exists before the queue does, and sends its verdicts through a
	// lateQueue that waits for the queue to be open.

	// DNS answers have a queue of their own: each answer's names are in
	// the cache before it is accepted, so a connection made right after
	// the lookup is named.
	var namer engine.Namer
	var dnsNum *uint16
	var dnsW *dnswatch.Watcher
	if cfg.DNS {
		names := dnscache.New(dnscache.Options{})
		dv := newLateQueue()
		dnsW = dnswatch.New(runCtx, log, dv, attr, names)
		dq, err := queue.Open(runCtx, queue.Config{Num: cfg.DNSQueueNum, FailOpen: true, Logger: log}, dnsW.Handle)
		if err != nil {
			return fmt.Errorf("open DNS queue %d: %w", cfg.DNSQueueNum, err)
		}
		dv.set(dq)
		defer dq.Close() // after the chains are gone
		namer = names
		n := cfg.DNSQueueNum
		dnsNum = &n
	}

	v := newLateQueue()
	eng := engine.New(engine.Options{
		Mode:          cfg.Mode,
		DefaultAction: cfg.DefaultAction,
		RejectMark:    cfg.RejectMark,
		AcceptMarkOut: cfg.AcceptMarkOut,
		AcceptMarkIn:  cfg.AcceptMarkIn,
		WatchdogAge:   cfg.WatchdogAge(),
		IfName:        ifn.name,
		Namer:         namer,
	}, log, v, attr, st)
	q, err := queue.Open(runCtx, queue.Config{Num: cfg.QueueNum, FailOpen: cfg.FailOpen, MaxQueueLen: cfg.QueueMaxLen, Logger: log},
		eng.Handle)
	if err != nil {
		return fmt.Errorf("open queue %d: %w", cfg.QueueNum, err)
	}
	v.set(q)
	s.engine = eng

	// Finding the iptables commands (several execs) overlaps loading the
	// rules; the chains themselves go in only once the rules are set and
	// the workers run, so nothing queued is decided on a partial rule set
	// or defaulted for want of a worker, and a start that fails before
	// then leaves the netfilter state as it found it (a crashed daemon's
	// chains stay: fail-closed).
	type prepared struct {
		nf  *netfilter.Manager
		err error
	}
	nfc := make(chan prepared, 1)
	go func() {
		nf, err := netfilter.New(netfilter.Options{
			QueueNum:          cfg.QueueNum,
			DNSQueueNum:       dnsNum,
			FailOpen:          cfg.FailOpen,
			InterceptLoopback: cfg.InterceptLoopback,
			Inbound:           cfg.Inbound,
			RejectMark:        cfg.RejectMark,
			AcceptMarkOut:     cfg.AcceptMarkOut,
			AcceptMarkIn:      cfg.AcceptMarkIn,
			Backend:           cfg.IptablesBackend,
		}, log)
		nfc <- prepared{nf, err}
	}()
	failBeforeRun := func(err error) error {
		<-nfc
		q.Close()
		return err
	}

	// The file rules go into the first rule set: one build at start-up.
	if s.book, err = rulebook.New(st, eng.SetRules, log, rulebook.Options{FileRules: s.readFileRules()}); err != nil {
		return failBeforeRun(err)
	}
	if s.srv, err = bus.New(bus.Options{Address: cfg.BusAddress, Backend: s, Log: log, PolkitDisabled: !cfg.Polkit}); err != nil {
		return failBeforeRun(fmt.Errorf("d-bus service: %w", err))
	}
	s.broker = pending.New(pending.Options{
		Timeout: cfg.PromptTimeout.Duration,
		Default: cfg.DefaultAction,
	}, entitled{s.srv}, s)
	eng.SetAsker(s.broker)

	r := <-nfc
	if r.err != nil {
		q.Close()
		return fmt.Errorf("netfilter: %w", r.err)
	}
	nf := r.nf

	engDone := make(chan error, 1)
	go func() { engDone <- eng.Run(runCtx) }()

	if err := nf.Install(); err != nil {
		// Whatever got installed stays: with nobody reading the queue, new
		// connections fail until a daemon starts properly (fail-closed).
		cancel()
		<-engDone
		q.Close()
		return fmt.Errorf("install chains (left as they are, fail-closed): %w", err)
	}
	log.Info("tollgated running", "mode", cfg.Mode, "default_action", cfg.DefaultAction,
		"queue", cfg.QueueNum, "fail_open", cfg.FailOpen, "inbound", cfg.Inbound,
		"intercept_loopback", cfg.InterceptLoopback, "dns", cfg.DNS, "rules", s.book.Len())

	// Loading the rules made several times their size in garbage (records
	// copied out of the file, decoded rules); give it back now, once
	// deciding has begun, rather than carry it until the scavenger gets
	// round to it.
	debug.FreeOSMemory()
	mem := newMemTuner(log)
	mem.tune(time.Now())

	// The bus is the daemon's public face, never a condition of enforcing:
	// without it (or while it is away) nobody is asked and the default
	// applies; the server reconnects by itself.
	busDone := make(chan error, 1)
	go func() { busDone <- s.srv.Run(runCtx) }()

	hits := time.NewTicker(hitFlush)
	defer hits.Stop()
	house := time.NewTicker(houseTick)
	defer house.Stop()
	var fatal error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-reload:
			s.loadFileRules()
			s.srv.RulesChanged()
		case now := <-house.C:
			mem.tune(now)
			s.broker.Expire()
			if s.book.Prune(attr.Alive) > 0 {
				s.srv.RulesChanged()
			}
		case <-hits.C:
			s.flushHits()
		case err := <-busDone:
			busDone = nil
			if err != nil {
				log.Error("d-bus service stopped: nobody can be asked, the default action applies", "err", err)
			}
		case err := <-engDone:
			fatal = fmt.Errorf("engine stopped: %v", err)
			engDone <- err
			break loop
		case <-q.Dead():
			fatal = errors.New("the queue reader stopped: leaving the chains in place (fail-closed) for a restart")
			break loop
		}
	}

	// Shutdown: remove the chains first so no new packet is queued (unless
	// the reader died: then they stay, and new connections fail until the
	// daemon is restarted), end every pending group, let the engine give
	// every held packet its verdict, then close the queue.
	var errs []error
	if fatal != nil {
		log.Error("stopping", "err", fatal)
		errs = append(errs, fatal)
	} else if err := nf.Remove(); err != nil {
		errs = append(errs, fmt.Errorf("remove chains: %w", err))
	}
	s.broker.Close()
	cancel()
	<-engDone
	if busDone != nil {
		<-busDone
	}
	if err := q.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close queue: %w", err))
	}
	s.flushHits()
	es := eng.Stats()
	log.Info("tollgated stopped", "decided", es.Decided, "allowed", es.Allowed, "denied", es.Denied,
		"rejected", es.Rejected, "watchdog", es.Watchdog, "overflow", es.Overflow)
	if es.LogDropped > 0 {
		log.Warn("connection log entries lost while the log writer was behind", "lost", es.LogDropped)
	}
	if dnsW != nil {
		ds := dnsW.Stats()
		log.Info("DNS answers read", "packets", ds.Packets, "answers", ds.Answers, "attributed", ds.Attributed,
			"malformed", ds.Malformed, "accept_errors", ds.AcceptErr)
	}
	return errors.Join(errs...)
}

// loadFileRules reads the rules directory; bad files and rules are logged
// and skipped, the rest load.
func (s *Service) loadFileRules() {
	s.book.SetFileRules(s.readFileRules())
}

func (s *Service) readFileRules() []shared.Rule {
	rs, errs := rulesdir.Load(s.cfg.RulesDir)
	for _, err := range errs {
		s.log.Error("rules file", "err", err)
	}
	s.log.Info("read rules directory", "dir", s.cfg.RulesDir, "rules", len(rs), "errors", len(errs))
	return rs
}

// flushHits writes the rule hit counters to the store and the rule book.
func (s *Service) flushHits() {
	h := s.engine.TakeHits()
	if len(h) == 0 {
		return
	}
	sh := make(map[string]store.Hit, len(h))
	for id, v := range h {
		sh[id] = store.Hit{Count: v.Count, Last: v.Last}
	}
	s.book.AddHits(sh)
	if err := s.store.UpdateHits(sh); err != nil {
		s.log.Error("write rule hits", "err", err)
	}
}

// Pending is told of a new pending group (pending.Events): its agents are
// asked.
func (s *Service) Pending(g pending.Group) {
	s.log.Info("asking", "pending", g.ID, "agents", g.Agents, "exe", g.Conn.Exe, "uid", g.Conn.UID,
		"remote", g.Key.Remote, "port", g.Key.Port, "proto", g.Key.Proto)
	s.srv.ConnectionPending(toPending(g))
}

// Resolved is told that a pending group ended (pending.Events): its packets
// get the verdict.
func (s *Service) Resolved(g pending.Group, v shared.Verdict, pkts []pending.Packet) {
	s.engine.Resolve(pkts, v)
	s.srv.PendingResolved(g.ID, v.Action)
}

// lateQueue passes verdicts to a queue that is opened after the handler
// that gives them exists; a verdict given before waits for it.
type lateQueue struct {
	ready chan struct{}
	q     *queue.Queue
}

func newLateQueue() *lateQueue { return &lateQueue{ready: make(chan struct{})} }

func (l *lateQueue) set(q *queue.Queue) {
	l.q = q
	close(l.ready)
}

func (l *lateQueue) Verdict(id uint32, v queue.Verdict) error {
	<-l.ready
	return l.q.Verdict(id, v)
}

// ifNames caches interface names by index; a miss asks the kernel once.
type ifNames struct {
	mu sync.RWMutex
	m  map[uint32]string
}

func newIfNames() *ifNames { return &ifNames{m: make(map[uint32]string)} }

func (c *ifNames) name(index uint32) string {
	if index == 0 {
		return ""
	}
	c.mu.RLock()
	n, ok := c.m[index]
	c.mu.RUnlock()
	if ok {
		return n
	}
	ifi, err := net.InterfaceByIndex(int(index))
	if err != nil {
		return ""
	}
	c.mu.Lock()
	c.m[index] = ifi.Name
	c.mu.Unlock()
	return ifi.Name
}
