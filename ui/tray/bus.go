package tray

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	godbus "github.com/godbus/dbus/v5"
	"github.com/tollgate-fw/tollgate/dbus"
	"github.com/tollgate-fw/tollgate/shared"
	"github.com/tollgate-fw/tollgate/ui/tray/winwork"
)

// ErrNoBus is returned by every call made while the tray has no connection
// to the system bus (it keeps trying to get one).
var ErrNoBus = errors.New("not connected to the system bus")

// Daemon is everything the tray and its windows call on tollgated.
// *dbus.Client has all of it, and so has *Bus.
type Daemon interface {
	GetStatus(ctx context.Context) (shared.Status, error)
	SetMode(ctx context.Context, mode string) error
	ListRules(ctx context.Context) ([]shared.Rule, error)
	GetRule(ctx context.Context, id string) (shared.Rule, error)
	AddRule(ctx context.Context, r shared.Rule) (string, error)
	AddRuleFields(ctx context.Context, f map[string]any) (string, error)
	UpdateRule(ctx context.Context, id string, r shared.Rule) error
	DeleteRule(ctx context.Context, id string) error
	RegisterAgent(ctx context.Context) error
	UnregisterAgent(ctx context.Context) error
	ListPending(ctx context.Context) ([]shared.Pending, error)
	Answer(ctx context.Context, a shared.Answer) error
	RecentConnections(ctx context.Context, f shared.LogFilter) ([]shared.LogEntry, error)
	Signals(ctx context.Context) (<-chan dbus.Signal, error)
}

// Session is one connection to the bus.
type Session interface {
	Daemon
	// Done is closed when the bus connection has ended.
	Done() <-chan struct{}
	// DaemonOwner is the unique name owning the daemon's bus name, "" when
	// the daemon is not on the bus.
	DaemonOwner(ctx context.Context) (string, error)
	Close() error
}

// Dialer opens a Session.
type Dialer func(ctx context.Context) (Session, error)

// DialBus dials the bus at address ("" = the system bus:
// $DBUS_SYSTEM_BUS_ADDRESS or the default socket).
func DialBus(address string) Dialer {
	return func(ctx context.Context) (Session, error) {
		c, err := dbus.Dial(ctx, address)
		if err != nil {
			return nil, err
		}
		return busSession{c}, nil
	}
}

type busSession struct{ *dbus.Client }

func (s busSession) Done() <-chan struct{} { return s.Conn().Context().Done() }

func (s busSession) DaemonOwner(ctx context.Context) (string, error) {
	var owner string
	err := s.Conn().BusObject().CallWithContext(ctx, "org.freedesktop.DBus.GetNameOwner", 0, dbus.BusName).Store(&owner)
	var de godbus.Error
	if errors.As(err, &de) && de.Name == "org.freedesktop.DBus.Error.NameHasNoOwner" {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("ask the bus who owns %s: %w", dbus.BusName, err)
	}
	return owner, nil
}

// Bus keeps a connection to the system bus, dialling again with backoff
// when it is lost, and hands calls to the current one. Signal
// subscriptions outlive connections: losing the bus looks to a subscriber
// like the daemon leaving (DaemonChanged with no owner), a new connection
// like it coming back (DaemonChanged with its owner), so agents register
// again on the new connection. Safe for concurrent use.
type Bus struct {
	dial    Dialer
	log     *slog.Logger
	minWait time.Duration
	maxWait time.Duration

	mu      sync.Mutex
	cur     Session
	lastErr error
	changed chan struct{} // closed and replaced whenever cur changes
}

// NewBus makes a Bus; Run connects it.
func NewBus(dial Dialer, log *slog.Logger) *Bus {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Bus{dial: dial, log: log, minWait: 500 * time.Millisecond, maxWait: 30 * time.Second, changed: make(chan struct{})}
}

// Run connects and stays connected (reconnecting with backoff, 0.5 s
// doubling to 30 s) until ctx ends; then it closes the connection.
func (b *Bus) Run(ctx context.Context) error {
	wait := b.minWait
	for {
		s, err := b.dial(ctx)
		if ctx.Err() != nil {
			if s != nil {
				s.Close()
			}
			b.set(nil, nil)
			return ctx.Err()
		}
		if err != nil {
			b.set(nil, err)
			b.log.Warn("cannot connect to the system bus; trying again", "err", err, "in", wait)
			if !winwork.Sleep(ctx, wait) {
				b.set(nil, nil)
				return ctx.Err()
			}
			wait = min(wait*2, b.maxWait)
			continue
		}
		b.log.Info("connected to the system bus")
		b.set(s, nil)
		start := time.Now()
		select {
		case <-ctx.Done():
			b.set(nil, nil)
			s.Close()
			return ctx.Err()
		case <-s.Done():
		}
		b.set(nil, ErrNoBus)
		s.Close()
		if time.Since(start) > b.maxWait {
			wait = b.minWait
		}
		b.log.Warn("lost the system bus; connecting again", "in", wait)
		if !winwork.Sleep(ctx, wait) {
			return ctx.Err()
		}
		wait = min(wait*2, b.maxWait)
	}
}

func (b *Bus) set(s Session, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if s == b.cur && err == b.lastErr {
		return
	}
	b.cur, b.lastErr = s, err
	close(b.changed)
	b.changed = make(chan struct{})
}

// current is the current session (nil when there is none) and a channel
// closed when that changes.
func (b *Bus) current() (Session, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cur, b.changed
}

// Connected reports whether there is a bus connection now.
func (b *Bus) Connected() bool {
	s, _ := b.current()
	return s != nil
}

func (b *Bus) session() (Session, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cur == nil {
		if b.lastErr != nil && !errors.Is(b.lastErr, ErrNoBus) {
			return nil, fmt.Errorf("%w: %v", ErrNoBus, b.lastErr)
		}
		return nil, ErrNoBus
	}
	return b.cur, nil
}

// GetStatus calls the daemon on the current connection.
func (b *Bus) GetStatus(ctx context.Context) (shared.Status, error) {
	s, err := b.session()
	if err != nil {
		return shared.Status{}, err
	}
	return s.GetStatus(ctx)
}

// SetMode calls the daemon on the current connection.
func (b *Bus) SetMode(ctx context.Context, mode string) error {
	s, err := b.session()
	if err != nil {
		return err
	}
	return s.SetMode(ctx, mode)
}

// ListRules calls the daemon on the current connection.
func (b *Bus) ListRules(ctx context.Context) ([]shared.Rule, error) {
	s, err := b.session()
	if err != nil {
		return nil, err
	}
	return s.ListRules(ctx)
}

// GetRule calls the daemon on the current connection.
func (b *Bus) GetRule(ctx context.Context, id string) (shared.Rule, error) {
	s, err := b.session()
	if err != nil {
		return shared.Rule{}, err
	}
	return s.GetRule(ctx, id)
}

// AddRule calls the daemon on the current connection.
func (b *Bus) AddRule(ctx context.Context, r shared.Rule) (string, error) {
	s, err := b.session()
	if err != nil {
		return "", err
	}
	return s.AddRule(ctx, r)
}

// AddRuleFields calls the daemon on the current connection.
func (b *Bus) AddRuleFields(ctx context.Context, f map[string]any) (string, error) {
	s, err := b.session()
	if err != nil {
		return "", err
	}
	return s.AddRuleFields(ctx, f)
}

// UpdateRule calls the daemon on the current connection.
func (b *Bus) UpdateRule(ctx context.Context, id string, r shared.Rule) error {
	s, err := b.session()
	if err != nil {
		return err
	}
	return s.UpdateRule(ctx, id, r)
}

// DeleteRule calls the daemon on the current connection.
func (b *Bus) DeleteRule(ctx context.Context, id string) error {
	s, err := b.session()
	if err != nil {
		return err
	}
	return s.DeleteRule(ctx, id)
}

// RegisterAgent registers the current connection as the user's agent.
func (b *Bus) RegisterAgent(ctx context.Context) error {
	s, err := b.session()
	if err != nil {
		return err
	}
	return s.RegisterAgent(ctx)
}

// UnregisterAgent calls the daemon on the current connection.
func (b *Bus) UnregisterAgent(ctx context.Context) error {
	s, err := b.session()
	if err != nil {
		return err
	}
	return s.UnregisterAgent(ctx)
}

// ListPending calls the daemon on the current connection.
func (b *Bus) ListPending(ctx context.Context) ([]shared.Pending, error) {
	s, err := b.session()
	if err != nil {
		return nil, err
	}
	return s.ListPending(ctx)
}

// Answer calls the daemon on the current connection.
func (b *Bus) Answer(ctx context.Context, a shared.Answer) error {
	s, err := b.session()
	if err != nil {
		return err
	}
	return s.Answer(ctx, a)
}

// RecentConnections calls the daemon on the current connection.
func (b *Bus) RecentConnections(ctx context.Context, f shared.LogFilter) ([]shared.LogEntry, error) {
	s, err := b.session()
	if err != nil {
		return nil, err
	}
	return s.RecentConnections(ctx, f)
}

// Signals subscribes to the daemon's signals until ctx ends, across
// connections. When there is a connection, the subscription is in place
// when Signals returns (so an agent subscribing before it registers misses
// nothing). When a connection is lost the channel carries DaemonChanged
// with no owner; when a later connection finds the daemon on the bus (or
// the first one, for a subscription made while there was none), it
// carries DaemonChanged with the daemon's owner.
func (b *Bus) Signals(ctx context.Context) (<-chan dbus.Signal, error) {
	s, _ := b.current()
	var first <-chan dbus.Signal
	var firstCancel context.CancelFunc
	if s != nil {
		sctx, cancel := context.WithCancel(ctx)
		ch, err := s.Signals(sctx)
		if err != nil {
			cancel()
			return nil, err
		}
		first, firstCancel = ch, cancel
	}
	out := make(chan dbus.Signal, 64)
	go b.forward(ctx, out, s, first, firstCancel)
	return out, nil
}

// forward feeds out from one connection's subscription after another.
// s, in and cancel are the subscription made by Signals (nil when there
// was no connection).
func (b *Bus) forward(ctx context.Context, out chan<- dbus.Signal, s Session, in <-chan dbus.Signal, cancel context.CancelFunc) {
	defer close(out)
	send := func(sig dbus.Signal) bool {
		select {
		case out <- sig:
			return true
		case <-ctx.Done():
			return false
		}
	}
	for {
		if in != nil {
			for sig := range in {
				if !send(sig) {
					break
				}
			}
			cancel()
			if ctx.Err() != nil {
				return
			}
			// The connection (or its subscription) ended: for the
			// subscriber the daemon has left.
			if !send(dbus.Signal{Name: dbus.SignalDaemonChanged}) {
				return
			}
		}
		// Wait for a connection other than the one just lost.
		var changed <-chan struct{}
		for {
			var next Session
			next, changed = b.current()
			if next != nil && next != s {
				s = next
				break
			}
			select {
			case <-ctx.Done():
				return
			case <-changed:
			}
		}
		sctx, c := context.WithCancel(ctx)
		ch, err := s.Signals(sctx)
		if err != nil {
			c()
			b.log.Warn("subscribe to tollgated signals on the new connection", "err", err)
			// Try again on the next connection (this one is likely dying).
			in = nil
			continue
		}
		in, cancel = ch, c
		owner, err := s.DaemonOwner(sctx)
		if err != nil {
			b.log.Warn("find tollgated on the new connection", "err", err)
			continue
		}
		if owner != "" && !send(dbus.Signal{Name: dbus.SignalDaemonChanged, Owner: owner}) {
			cancel()
			return
		}
	}
}
