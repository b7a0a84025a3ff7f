// Package agenttest is a stand-in tollgated for the tests of agents
// (ui/agent's session, the tray's prompt): it keeps pending groups, answers
// and the agent's registration as the daemon does, fails calls on demand,
// and sends the signals a test queues on Sigs. It talks to no bus.
package agenttest

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/tollgate-fw/tollgate/dbus"
	"github.com/tollgate-fw/tollgate/internal/sigtest"
	"github.com/tollgate-fw/tollgate/shared"
)

// Daemon is the stand-in. Tests change its fields through Set once it is
// in use, and may set them directly before.
type Daemon struct {
	mu            sync.Mutex
	Pending       []shared.Pending
	Answers       []shared.Answer
	Agent         bool // registered
	Registrations int
	Unregistered  int
	RegisterErr   error // RegisterAgent fails with it while set
	ListErr       error // ListPending fails with it while set
	AnswerErr     error // Answer fails with it (before looking) while set
	SignalsErr    error // Signals fails with it while set
	Sigs          chan dbus.Signal
}

// New returns a stand-in holding pending, with room for 16 queued signals.
func New(pending ...shared.Pending) *Daemon {
	return &Daemon{Pending: pending, Sigs: make(chan dbus.Signal, 16)}
}

func (d *Daemon) RegisterAgent(context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.RegisterErr != nil {
		return d.RegisterErr
	}
	d.Agent = true
	d.Registrations++
	return nil
}

func (d *Daemon) UnregisterAgent(context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.Agent = false
	d.Unregistered++
	return nil
}

func (d *Daemon) ListPending(context.Context) ([]shared.Pending, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ListErr != nil {
		return nil, d.ListErr
	}
	return slices.Clone(d.Pending), nil
}

// Answer settles a pending group: it leaves Pending and joins Answers.
func (d *Daemon) Answer(_ context.Context, a shared.Answer) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.AnswerErr != nil {
		return d.AnswerErr
	}
	i := slices.IndexFunc(d.Pending, func(p shared.Pending) bool { return p.ID == a.PendingID })
	if i < 0 {
		return fmt.Errorf("Answer: pending %d: %w", a.PendingID, dbus.ErrNotFound)
	}
	d.Pending = slices.Delete(d.Pending, i, i+1)
	d.Answers = append(d.Answers, a)
	return nil
}

func (d *Daemon) Signals(ctx context.Context) (<-chan dbus.Signal, error) {
	if d.SignalsErr != nil {
		return nil, d.SignalsErr
	}
	return sigtest.Forward(ctx, d.Sigs), nil
}

// Set changes the stand-in under its lock.
func (d *Daemon) Set(fn func(d *Daemon)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fn(d)
}

// Apply changes the state as the daemon would have before sending sig
// (call it inside Set).
func (d *Daemon) Apply(sig dbus.Signal) {
	switch sig.Name {
	case dbus.SignalConnectionPending:
		i := slices.IndexFunc(d.Pending, func(p shared.Pending) bool { return p.ID == sig.Pending.ID })
		if i < 0 {
			d.Pending = append(d.Pending, sig.Pending)
		} else {
			d.Pending[i] = sig.Pending
		}
	case dbus.SignalPendingResolved:
		d.Pending = slices.DeleteFunc(d.Pending, func(p shared.Pending) bool { return p.ID == sig.ID })
	}
}

// Offer holds p and then signals it, as the daemon does.
func (d *Daemon) Offer(p shared.Pending) {
	sig := dbus.Signal{Name: dbus.SignalConnectionPending, Pending: p}
	d.Set(func(d *Daemon) { d.Apply(sig) })
	d.Sigs <- sig
}

// Resolve decides group id elsewhere (deny) and then signals it.
func (d *Daemon) Resolve(id uint64) {
	sig := dbus.Signal{Name: dbus.SignalPendingResolved, ID: id, Action: shared.ActionDeny}
	d.Set(func(d *Daemon) { d.Apply(sig) })
	d.Sigs <- sig
}

// Answered returns the answers so far.
func (d *Daemon) Answered() []shared.Answer {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.Answers)
}

// State returns whether an agent is registered, how many registrations and
// unregistrations there were, and the answers.
func (d *Daemon) State() (agent bool, registrations, unregistered int, answers []shared.Answer) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.Agent, d.Registrations, d.Unregistered, slices.Clone(d.Answers)
}
