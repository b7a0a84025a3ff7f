// Package agent is the agent session the terminal prompt (`tollgate prompt`)
// and the tray's prompt window share: it subscribes to the daemon's signals
// before registering (so nothing sent in between is lost), registers as the
// user's agent, lists what is pending, and keeps the queue of pending groups
// waiting for an answer: new groups are appended, a newer view of a queued
// group replaces it, a group resolved elsewhere (PendingResolved) or answered
// here leaves it. It follows the daemon leaving the bus (its groups went with
// it: the queue is emptied) and coming back (register again, list again),
// and, when asked to (Options.Wait), a daemon that is not there at start or
// refuses to register for now: it waits and tries again instead of failing.
//
// A Session is driven by its front end from one goroutine: the front end
// selects on Inputs (next to its own sources: keys, clicks), hands what
// arrives to Handle, answers with Answer, and shows Queue. Only Inputs may be
// read from another goroutine. The package is plain Go: it must not import a
// UI toolkit, and it speaks to the daemon only through Client.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/tollgate-fw/tollgate/dbus"
	"github.com/tollgate-fw/tollgate/shared"
)

// Client is what a session needs of the daemon; *dbus.Client satisfies it.
type Client interface {
	RegisterAgent(ctx context.Context) error
	UnregisterAgent(ctx context.Context) error
	ListPending(ctx context.Context) ([]shared.Pending, error)
	Answer(ctx context.Context, a shared.Answer) error
	Signals(ctx context.Context) (<-chan dbus.Signal, error)
}

// ErrBusLost is returned (wrapped) by Handle when the client's signal
// stream ended while the session was running: the bus connection is gone,
// and this client cannot be used again. The queue is emptied.
var ErrBusLost = errors.New("lost the connection to the bus")

// Options configure a session.
type Options struct {
	// Wait: a daemon that cannot be registered with (not on the bus at
	// start, or failing after it came back) is waited for: the session
	// reports EventWaiting and tries again when the daemon appears on the
	// bus and after Backoff. Without Wait such a failure is Start's or
	// Handle's error (the terminal prompt exits).
	Wait bool
	// Backoff is the delay before the given retry (1, 2, ...) while
	// waiting; nil: 1s doubling up to 30s.
	Backoff func(attempt int) time.Duration
	Log     *slog.Logger // nil: discard
}

// Kind says what an Event reports.
type Kind int

const (
	EventNone       Kind = iota // nothing a front end shows changed
	EventReady                  // registered and listed (at Start, or after waiting)
	EventWaiting                // could not register (Err says why); waiting for the daemon
	EventAdded                  // Pending joined the end of the queue (at Index)
	EventUpdated                // a newer view of queued group Pending (at Index) replaced it
	EventResolved               // group ID (at Index) was decided elsewhere (Action) and left the queue
	EventDaemonGone             // the daemon left the bus: its groups got the default action, the queue is empty
	EventDaemonBack             // a (re)started daemon: registered again, the queue is what it lists
)

var kindNames = [...]string{"none", "ready", "waiting", "added", "updated", "resolved", "daemon-gone", "daemon-back"}

func (k Kind) String() string {
	if k >= 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Event is what one input changed.
type Event struct {
	Kind    Kind
	Pending shared.Pending // EventAdded, EventUpdated
	ID      uint64         // EventAdded, EventUpdated, EventResolved: the group
	Action  shared.Action  // EventResolved: how it was decided
	Index   int            // EventAdded, EventUpdated, EventResolved: its place in the queue (0 = the one shown)
	Err     error          // EventWaiting: why registering failed
}

// Input is one thing for Handle: a signal from the daemon, the end of the
// signal stream, or a timer to try registering again.
type Input struct {
	sig    dbus.Signal
	closed bool
	retry  uint64 // generation of the retry timer; 0 = not a retry
}

// Session is one agent session; see the package comment for how it is
// driven. Its zero value is not usable: make one with New.
type Session struct {
	c   Client
	o   Options
	log *slog.Logger

	in     chan Input
	ctx    context.Context // Start's, ended by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	queue      []shared.Pending
	registered bool
	started    bool
	closed     bool
	gen        uint64 // retry generation: a timer of an older one is stale
	attempts   int
	timer      *time.Timer
}

// New makes a session on c; Start begins it.
func New(c Client, o Options) *Session {
	if o.Backoff == nil {
		o.Backoff = DefaultBackoff
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Session{c: c, o: o, log: log, in: make(chan Input)}
}

// DefaultBackoff is 1s doubling up to 30s.
func DefaultBackoff(attempt int) time.Duration {
	d := time.Second
	for i := 1; i < attempt && d < 30*time.Second; i++ {
		d *= 2
	}
	return min(d, 30*time.Second)
}

// Start subscribes to the daemon's signals, then registers and lists what
// is pending. The session lives until ctx ends or Close. Its event is
// EventReady, or with Options.Wait EventWaiting when registering failed.
// Errors: the subscription failing (the bus is not usable), and without
// Wait registering or listing failing.
func (s *Session) Start(ctx context.Context) (Event, error) {
	if s.started {
		return Event{}, errors.New("agent session started twice")
	}
	s.started = true
	s.ctx, s.cancel = context.WithCancel(ctx)
	// Subscribe before registering, so nothing sent in between is lost.
	sigs, err := s.c.Signals(s.ctx)
	if err != nil {
		s.cancel()
		return Event{}, err // the client's error says what it was doing
	}
	s.wg.Add(1)
	go s.forward(sigs)
	if err := s.register(s.ctx, "register as agent"); err != nil {
		if !s.o.Wait {
			s.Close()
			return Event{}, err
		}
		return s.waiting(err), nil
	}
	return Event{Kind: EventReady}, nil
}

// forward hands the signals to Inputs until they end or the session does;
// the end of the stream is an Input too.
func (s *Session) forward(sigs <-chan dbus.Signal) {
	defer s.wg.Done()
	for {
		var in Input
		select {
		case <-s.ctx.Done():
			return
		case sig, ok := <-sigs:
			in = Input{sig: sig, closed: !ok}
		}
		select {
		case s.in <- in:
		case <-s.ctx.Done():
			return
		}
		if in.closed {
			return
		}
	}
}

// Inputs delivers what Handle takes. It may be read from any goroutine;
// hand every value to Handle on the session's goroutine.
func (s *Session) Inputs() <-chan Input { return s.in }

// register registers and replaces the queue with what the daemon lists.
func (s *Session) register(ctx context.Context, what string) error {
	s.registered = false
	if err := s.c.RegisterAgent(ctx); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	s.registered = true // Close unregisters even when listing fails
	list, err := s.c.ListPending(ctx)
	if err != nil {
		return fmt.Errorf("list pending connections: %w", err)
	}
	s.attempts = 0
	s.gen++ // a retry timer already fired is stale now
	s.stopTimer()
	s.queue = s.queue[:0]
	for _, p := range list {
		s.add(p)
	}
	return nil
}

// waiting arms the retry timer after a failed registration.
func (s *Session) waiting(err error) Event {
	s.queue = nil
	s.attempts++
	s.gen++
	s.stopTimer()
	gen, d := s.gen, s.o.Backoff(s.attempts)
	s.log.Info("waiting for tollgated", "err", err, "retry_in", d)
	s.timer = time.AfterFunc(d, func() {
		select {
		case s.in <- Input{retry: gen}:
		case <-s.ctx.Done():
		}
	})
	return Event{Kind: EventWaiting, Err: err}
}

func (s *Session) stopTimer() {
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
}

// Handle applies one input and says what changed. Errors: the signal
// stream ended (ErrBusLost), and without Options.Wait registering again
// with a restarted daemon failing. Either ends the session's usefulness:
// the front end stops (and may start a new session on a new client).
func (s *Session) Handle(ctx context.Context, in Input) (Event, error) {
	switch {
	case in.closed:
		s.queue = nil
		s.registered = false
		s.stopTimer()
		return Event{}, ErrBusLost
	case in.retry != 0:
		if in.retry != s.gen || s.closed {
			return Event{}, nil // stale: registered meanwhile
		}
		if err := s.register(ctx, "register as agent"); err != nil {
			return s.waiting(err), nil
		}
		return Event{Kind: EventReady}, nil
	}
	sig := in.sig
	switch sig.Name {
	case dbus.SignalDaemonChanged:
		return s.daemonChanged(ctx, sig.Owner)
	case dbus.SignalConnectionPending:
		i, added := s.add(sig.Pending)
		k := EventUpdated
		if added {
			k = EventAdded
		}
		return Event{Kind: k, Pending: sig.Pending, ID: sig.Pending.ID, Index: i}, nil
	case dbus.SignalPendingResolved:
		i := s.index(sig.ID)
		if i < 0 {
			return Event{}, nil
		}
		s.queue = slices.Delete(s.queue, i, i+1)
		return Event{Kind: EventResolved, ID: sig.ID, Action: sig.Action, Index: i}, nil
	}
	return Event{}, nil
}

// daemonChanged follows the daemon leaving the bus (owner "") or coming
// back (a restart): its pending groups went with it; a new daemon does not
// know this agent, so it registers again and asks what waits.
func (s *Session) daemonChanged(ctx context.Context, owner string) (Event, error) {
	s.queue = nil
	if owner == "" {
		s.registered = false
		s.log.Info("tollgated left the bus")
		return Event{Kind: EventDaemonGone}, nil
	}
	if err := s.register(ctx, "register again with the restarted daemon"); err != nil {
		if !s.o.Wait {
			return Event{}, err
		}
		return s.waiting(err), nil
	}
	s.log.Info("registered with tollgated again", "owner", owner)
	return Event{Kind: EventDaemonBack}, nil
}

func (s *Session) index(id uint64) int {
	return slices.IndexFunc(s.queue, func(x shared.Pending) bool { return x.ID == id })
}

// add queues a pending group or replaces the queued view of it; added says
// it is new.
func (s *Session) add(p shared.Pending) (i int, added bool) {
	if i := s.index(p.ID); i >= 0 {
		s.queue[i] = p
		return i, false
	}
	s.queue = append(s.queue, p)
	return len(s.queue) - 1, true
}

// Answer answers a pending group. When the daemon took the answer, or no
// longer knows the group (errors.Is(err, dbus.ErrNotFound): it was decided
// meanwhile), the group leaves the queue; on any other error (not
// authorized, invalid, busy, unreachable) it stays so another answer can be
// tried.
func (s *Session) Answer(ctx context.Context, a shared.Answer) error {
	err := s.c.Answer(ctx, a)
	if err == nil || errors.Is(err, dbus.ErrNotFound) {
		if i := s.index(a.PendingID); i >= 0 {
			s.queue = slices.Delete(s.queue, i, i+1)
		}
	}
	if err != nil {
		return fmt.Errorf("answer pending group %d: %w", a.PendingID, err)
	}
	return nil
}

// Queue returns a copy of the waiting groups, the one to show first.
func (s *Session) Queue() []shared.Pending { return slices.Clone(s.queue) }

// Len is the number of waiting groups.
func (s *Session) Len() int { return len(s.queue) }

// Current is the group to show, if any.
func (s *Session) Current() (shared.Pending, bool) {
	if len(s.queue) == 0 {
		return shared.Pending{}, false
	}
	return s.queue[0], true
}

// Registered says whether the session is the daemon's agent now.
func (s *Session) Registered() bool { return s.registered }

// Close ends the session: it unregisters (best effort, bounded: the daemon
// also forgets agents whose connection goes) and stops its goroutines.
// Inputs delivers nothing more.
func (s *Session) Close() {
	if !s.started || s.closed {
		return
	}
	s.closed = true
	s.stopTimer()
	if s.registered {
		uctx, ucancel := context.WithTimeout(context.Background(), 2*time.Second)
		if err := s.c.UnregisterAgent(uctx); err != nil {
			s.log.Debug("unregister agent", "err", err)
		}
		ucancel()
		s.registered = false
	}
	s.cancel()
	s.wg.Wait()
}
