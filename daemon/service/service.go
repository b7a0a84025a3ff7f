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
	"sync"
	"time"

	"github.com/tollgate-fw/tollgate/daemon/attribution"
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
	cfg    config.Config
	log    *slog.Logger
	store  *store.Store
	engine *engine.Engine
	book   *rulebook.Book
	broker *pending.Broker
	attr   *attribution.Attributor
	agents *agents
}

// Housekeeping periods.
const (
	hitFlush  = 10 * time.Second // rule hit counters to the store
	houseTick = time.Second      // pending timeouts, ended process and until rules
)

// Run starts the daemon and blocks until ctx ends or a part fails. reload
// receives a value each time the rules directory should be read again
// (SIGHUP). On return the chains are removed, the log is written and the
// store is closed.
func Run(ctx context.Context, cfg config.Config, log *slog.Logger, reload <-chan struct{}) (err error) {
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

	s := &Service{cfg: cfg, log: log, store: st, agents: newAgents()}

	attr, err := attribution.New(ctx, log, attribution.Options{ProcEventsNetns: cfg.ProcEventsNetns})
	if err != nil {
		return fmt.Errorf("start attribution: %w", err)
	}
	defer attr.Close()
	s.attr = attr

	ifn := newIfNames()
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()

	// DNS answers have a queue of their own, also read before the chains
	// exist: each answer's names are in the cache before it is accepted,
	// so a connection made right after the lookup is named.
	var namer engine.Namer
	var dnsNum *uint16
	var dnsW *dnswatch.Watcher
	if cfg.DNS {
		names := dnscache.New(dnscache.Options{})
		dq, err := queue.Open(runCtx, queue.Config{Num: cfg.DNSQueueNum, FailOpen: true, Logger: log},
			func(p queue.Packet) { dnsW.Handle(p) })
		if err != nil {
			return fmt.Errorf("open DNS queue %d: %w", cfg.DNSQueueNum, err)
		}
		defer dq.Close() // after the chains are gone
		dnsW = dnswatch.New(runCtx, log, dq, attr, names)
		namer = names
		n := cfg.DNSQueueNum
		dnsNum = &n
	}

	// The queue is opened before the chains exist, so the first queued
	// packet already has a reader. The engine needs the queue for verdicts
	// and the queue needs the engine's handler: the handler is bound after.
	var eng *engine.Engine
	q, err := queue.Open(runCtx, queue.Config{Num: cfg.QueueNum, FailOpen: cfg.FailOpen, Logger: log},
		func(p queue.Packet) { eng.Handle(p) })
	if err != nil {
		return fmt.Errorf("open queue %d: %w", cfg.QueueNum, err)
	}
	eng = engine.New(engine.Options{
		Mode:          cfg.Mode,
		DefaultAction: cfg.DefaultAction,
		RejectMark:    cfg.RejectMark,
		AcceptMarkOut: cfg.AcceptMarkOut,
		AcceptMarkIn:  cfg.AcceptMarkIn,
		WatchdogAge:   cfg.WatchdogAge(),
		IfName:        ifn.name,
		Namer:         namer,
	}, log, q, attr, st)
	s.engine = eng
	if s.book, err = rulebook.New(st, eng.SetRules, log, rulebook.Options{}); err != nil {
		q.Close()
		return err
	}
	s.loadFileRules()
	s.broker = pending.New(pending.Options{
		Timeout: cfg.PromptTimeout.Duration,
		Default: cfg.DefaultAction,
	}, s.agents, s)
	eng.SetAsker(s.broker)

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
	if err != nil {
		q.Close()
		return fmt.Errorf("netfilter: %w", err)
	}

	engDone := make(chan error, 1)
	go func() { engDone <- eng.Run(runCtx) }()

	if err := nf.Install(); err != nil {
		cancel()
		<-engDone
		q.Close()
		nf.Remove()
		return fmt.Errorf("install chains: %w", err)
	}
	log.Info("tollgated running", "mode", cfg.Mode, "default_action", cfg.DefaultAction,
		"queue", cfg.QueueNum, "fail_open", cfg.FailOpen, "inbound", cfg.Inbound,
		"intercept_loopback", cfg.InterceptLoopback, "dns", cfg.DNS, "rules", s.book.Len())

	hits := time.NewTicker(hitFlush)
	defer hits.Stop()
	house := time.NewTicker(houseTick)
	defer house.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-reload:
			s.loadFileRules()
		case <-house.C:
			s.broker.Expire()
			s.book.Prune(attr.Alive)
		case <-hits.C:
			s.flushHits()
		}
	}

	// Shutdown: remove the chains first so no new packet is queued, end
	// every pending group, let the engine give every held packet its
	// verdict, then close the queue.
	var errs []error
	if err := nf.Remove(); err != nil {
		errs = append(errs, fmt.Errorf("remove chains: %w", err))
	}
	s.broker.Close()
	cancel()
	<-engDone
	if err := q.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close queue: %w", err))
	}
	s.flushHits()
	es := eng.Stats()
	log.Info("tollgated stopped", "decided", es.Decided, "allowed", es.Allowed, "denied", es.Denied,
		"rejected", es.Rejected, "watchdog", es.Watchdog, "overflow", es.Overflow)
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
	rs, errs := rulesdir.Load(s.cfg.RulesDir)
	for _, err := range errs {
		s.log.Error("rules file", "err", err)
	}
	s.book.SetFileRules(rs)
	s.log.Info("read rules directory", "dir", s.cfg.RulesDir, "rules", len(rs), "errors", len(errs))
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
}

// Resolved is told that a pending group ended (pending.Events): its packets
// get the verdict.
func (s *Service) Resolved(g pending.Group, v shared.Verdict, pkts []pending.Packet) {
	s.engine.Resolve(pkts, v)
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
