package tray

import (
	"context"
	godbus "github.com/godbus/dbus/v5"
	"sync"

	"github.com/tollgate-fw/tollgate/dbus"
	"github.com/tollgate-fw/tollgate/shared"
)

// fakeSession is a bus connection to a fake daemon: its state is data the
// tests set and read.
type fakeSession struct {
	mu        sync.Mutex
	name      string
	owner     string // the daemon's unique name, "" when it is away
	status    shared.Status
	statusErr error
	modeErr   error
	modes     []string // SetMode calls
	log       []shared.LogEntry
	filters   []shared.LogFilter
	subs      []chan dbus.Signal
	done      chan struct{}
	closed    bool
}

func newFakeSession(name, owner string) *fakeSession {
	return &fakeSession{name: name, owner: owner, status: shared.Status{Mode: "enforcing"}, done: make(chan struct{})}
}

// drop ends the connection, as a dying bus would.
func (f *fakeSession) drop() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.closed {
		f.closed = true
		close(f.done)
	}
}

// emit sends sig to every subscription.
func (f *fakeSession) emit(sig dbus.Signal) {
	f.mu.Lock()
	subs := append([]chan dbus.Signal(nil), f.subs...)
	f.mu.Unlock()
	for _, s := range subs {
		select {
		case s <- sig:
		default:
		}
	}
}

func (f *fakeSession) subscribers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.subs)
}

func (f *fakeSession) GetStatus(context.Context) (shared.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.status, f.statusErr
}

func (f *fakeSession) SetMode(_ context.Context, mode string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.modes = append(f.modes, mode)
	if f.modeErr != nil {
		return f.modeErr
	}
	f.status.Mode = mode
	return nil
}

func (f *fakeSession) setModes() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.modes...)
}

func (f *fakeSession) ListRules(context.Context) ([]shared.Rule, error) { return nil, nil }
func (f *fakeSession) GetRule(context.Context, string) (shared.Rule, error) {
	return shared.Rule{}, dbus.ErrNotFound
}
func (f *fakeSession) AddRule(context.Context, shared.Rule) (string, error) { return "r1", nil }
func (f *fakeSession) AddRuleFields(context.Context, map[string]any) (string, error) {
	return "r1", nil
}
func (f *fakeSession) UpdateRule(context.Context, string, shared.Rule) error { return nil }
func (f *fakeSession) DeleteRule(context.Context, string) error              { return nil }
func (f *fakeSession) RegisterAgent(context.Context) error                   { return nil }
func (f *fakeSession) UnregisterAgent(context.Context) error                 { return nil }
func (f *fakeSession) ListPending(context.Context) ([]shared.Pending, error) { return nil, nil }
func (f *fakeSession) Answer(context.Context, shared.Answer) error           { return nil }
func (f *fakeSession) Done() <-chan struct{}                                 { return f.done }
func (f *fakeSession) Close() error                                          { f.drop(); return nil }

func (f *fakeSession) RecentConnections(_ context.Context, lf shared.LogFilter) ([]shared.LogEntry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.filters = append(f.filters, lf)
	var out []shared.LogEntry
	for _, e := range f.log {
		if !e.Connection.Time.Before(lf.Since) {
			out = append(out, e)
		}
	}
	return out, nil
}

func (f *fakeSession) DaemonOwner(context.Context) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.owner, nil
}

// Signals subscribes until ctx ends or the connection drops; then the
// channel is closed (as the real client's is).
func (f *fakeSession) Signals(ctx context.Context) (<-chan dbus.Signal, error) {
	in := make(chan dbus.Signal, 64)
	out := make(chan dbus.Signal, 64)
	f.mu.Lock()
	f.subs = append(f.subs, in)
	f.mu.Unlock()
	go func() {
		defer close(out)
		defer func() {
			f.mu.Lock()
			for i, s := range f.subs {
				if s == in {
					f.subs = append(f.subs[:i], f.subs[i+1:]...)
					break
				}
			}
			f.mu.Unlock()
		}()
		for {
			select {
			case <-ctx.Done():
				return
			case <-f.done:
				return
			case s := <-in:
				select {
				case out <- s:
				default:
				}
			}
		}
	}()
	return out, nil
}

// fakeDBusError is an error reply as godbus returns it.
func fakeDBusError(name, msg string) error {
	return godbus.NewError(name, []any{msg})
}
