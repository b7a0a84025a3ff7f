package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/tollgate-fw/tollgate/dbus"
	"github.com/tollgate-fw/tollgate/internal/agenttest"
	"github.com/tollgate-fw/tollgate/shared"
)

// fakeDaemon is the stand-in daemon the session talks to; tests check its
// state.
type fakeDaemon = agenttest.Daemon

var newFake = agenttest.New

func pend(id uint64, count int) shared.Pending {
	return shared.Pending{ID: id, Count: count, Connection: shared.Connection{
		Exe: "/usr/bin/curl", PID: 100 + int(id), RemoteIP: netip.MustParseAddr("192.0.2.1"), RemotePort: 443,
		Proto: shared.ProtoTCP, Direction: shared.DirectionOut, UID: 1000}}
}

var errNoDaemon = errors.New("org.freedesktop.DBus.Error.ServiceUnknown: no tollgated")

// next reads the session's next input, with a deadline.
func next(t *testing.T, s *Session) Input {
	t.Helper()
	select {
	case in := <-s.Inputs():
		return in
	case <-time.After(10 * time.Second):
		t.Fatal("no input from the session")
	}
	return Input{}
}

func ids(q []shared.Pending) []uint64 {
	out := make([]uint64, len(q))
	for i, p := range q {
		out[i] = p.ID
	}
	return out
}

// step is one thing that happens to a session, and what it should make of
// it.
type step struct {
	name   string
	do     func(f *fakeDaemon) // changes the daemon first (optional)
	sig    *dbus.Signal        // then a signal arrives (nil: read the next input anyway, e.g. a retry)
	answer *shared.Answer      // or: the front end answers
	close  bool                // or: the signal stream ends

	want      Kind
	wantIndex int
	wantErr   error // errors.Is; for answers and Handle
	queue     []uint64
	regs      int // registrations so far (0: not checked)
}

func sig(s dbus.Signal) *dbus.Signal { return &s }

func TestSession(t *testing.T) {
	forever := func(int) time.Duration { return time.Hour }
	tests := []struct {
		name      string
		fake      func() *fakeDaemon
		opts      Options
		wantStart Kind
		startErr  bool
		startQ    []uint64
		steps     []step
	}{
		{
			name:      "queue follows signals",
			fake:      func() *fakeDaemon { return newFake(pend(1, 1), pend(2, 1)) },
			wantStart: EventReady, startQ: []uint64{1, 2},
			steps: []step{
				{name: "new group appended", sig: sig(dbus.Signal{Name: dbus.SignalConnectionPending, Pending: pend(3, 1)}),
					want: EventAdded, wantIndex: 2, queue: []uint64{1, 2, 3}},
				{name: "newer view replaces", sig: sig(dbus.Signal{Name: dbus.SignalConnectionPending, Pending: pend(1, 5)}),
					want: EventUpdated, wantIndex: 0, queue: []uint64{1, 2, 3}},
				{name: "resolved elsewhere leaves", sig: sig(dbus.Signal{Name: dbus.SignalPendingResolved, ID: 2, Action: shared.ActionDeny}),
					want: EventResolved, wantIndex: 1, queue: []uint64{1, 3}},
				{name: "unknown group resolved", sig: sig(dbus.Signal{Name: dbus.SignalPendingResolved, ID: 99}),
					want: EventNone, queue: []uint64{1, 3}},
				{name: "other signals change nothing", sig: sig(dbus.Signal{Name: dbus.SignalRulesChanged}),
					want: EventNone, queue: []uint64{1, 3}},
				{name: "answered leaves", answer: &shared.Answer{PendingID: 3, Action: shared.ActionAllow, Lifetime: shared.LifetimeOnce},
					queue: []uint64{1}},
				{name: "answer to a group decided meanwhile leaves too", do: func(f *fakeDaemon) { f.Pending = nil },
					answer: &shared.Answer{PendingID: 1, Action: shared.ActionDeny}, wantErr: dbus.ErrNotFound, queue: []uint64{}},
			},
		},
		{
			name:      "answer refused keeps the group",
			fake:      func() *fakeDaemon { return newFake(pend(4, 1)) },
			wantStart: EventReady, startQ: []uint64{4},
			steps: []step{
				{name: "not authorized", do: func(f *fakeDaemon) { f.AnswerErr = fmt.Errorf("Answer: %w", dbus.ErrNotAuthorized) },
					answer: &shared.Answer{PendingID: 4, Action: shared.ActionAllow}, wantErr: dbus.ErrNotAuthorized, queue: []uint64{4}},
				{name: "then allowed", do: func(f *fakeDaemon) { f.AnswerErr = nil },
					answer: &shared.Answer{PendingID: 4, Action: shared.ActionAllow}, queue: []uint64{}},
			},
		},
		{
			name:      "daemon leaves and comes back",
			fake:      func() *fakeDaemon { return newFake(pend(1, 1)) },
			wantStart: EventReady, startQ: []uint64{1},
			steps: []step{
				{name: "gone empties the queue", do: func(f *fakeDaemon) { f.Pending = nil; f.Agent = false },
					sig: sig(dbus.Signal{Name: dbus.SignalDaemonChanged}), want: EventDaemonGone, queue: []uint64{}, regs: 1},
				{name: "back registers and lists", do: func(f *fakeDaemon) { f.Pending = []shared.Pending{pend(7, 2)} },
					sig: sig(dbus.Signal{Name: dbus.SignalDaemonChanged, Owner: ":1.42"}), want: EventDaemonBack, queue: []uint64{7}, regs: 2},
				{name: "a restart seen only as a new owner lists afresh", do: func(f *fakeDaemon) { f.Pending = []shared.Pending{pend(8, 1)} },
					sig: sig(dbus.Signal{Name: dbus.SignalDaemonChanged, Owner: ":1.43"}), want: EventDaemonBack, queue: []uint64{8}, regs: 3},
			},
		},
		{
			name: "daemon absent at start is waited for",
			fake: func() *fakeDaemon {
				f := newFake(pend(5, 1))
				f.RegisterErr = errNoDaemon
				return f
			},
			opts:      Options{Wait: true, Backoff: forever},
			wantStart: EventWaiting, startQ: []uint64{},
			steps: []step{
				{name: "still absent", sig: sig(dbus.Signal{Name: dbus.SignalDaemonChanged}), want: EventDaemonGone, queue: []uint64{}, regs: 0},
				{name: "appears", do: func(f *fakeDaemon) { f.RegisterErr = nil },
					sig: sig(dbus.Signal{Name: dbus.SignalDaemonChanged, Owner: ":1.7"}), want: EventDaemonBack, queue: []uint64{5}, regs: 1},
			},
		},
		{
			name: "appearing but refusing: waits again",
			fake: func() *fakeDaemon {
				f := newFake(pend(5, 1))
				f.RegisterErr = errNoDaemon
				return f
			},
			opts:      Options{Wait: true, Backoff: forever},
			wantStart: EventWaiting, startQ: []uint64{},
			steps: []step{
				{name: "busy", do: func(f *fakeDaemon) { f.RegisterErr = fmt.Errorf("RegisterAgent: %w", dbus.ErrBusy) },
					sig: sig(dbus.Signal{Name: dbus.SignalDaemonChanged, Owner: ":1.7"}), want: EventWaiting, wantErr: dbus.ErrBusy, queue: []uint64{}},
			},
		},
		{
			name: "retry timer registers",
			fake: func() *fakeDaemon {
				f := newFake(pend(6, 1))
				f.ListErr = errNoDaemon
				return f
			},
			opts:      Options{Wait: true, Backoff: func(int) time.Duration { return time.Millisecond }},
			wantStart: EventWaiting, startQ: []uint64{},
			steps: []step{
				{name: "retry fails again", want: EventWaiting, queue: []uint64{}},
				{name: "retry succeeds", do: func(f *fakeDaemon) { f.ListErr = nil }, want: EventReady, queue: []uint64{6}},
			},
		},
		{
			name: "without Wait an absent daemon is an error",
			fake: func() *fakeDaemon {
				f := newFake()
				f.RegisterErr = errNoDaemon
				return f
			},
			startErr: true,
		},
		{
			name:      "without Wait a restarted daemon refusing is an error",
			fake:      func() *fakeDaemon { return newFake() },
			wantStart: EventReady, startQ: []uint64{},
			steps: []step{
				{name: "refuses", do: func(f *fakeDaemon) { f.RegisterErr = errNoDaemon },
					sig: sig(dbus.Signal{Name: dbus.SignalDaemonChanged, Owner: ":1.9"}), wantErr: errNoDaemon, queue: []uint64{}},
			},
		},
		{
			name:      "bus lost",
			fake:      func() *fakeDaemon { return newFake(pend(1, 1)) },
			wantStart: EventReady, startQ: []uint64{1},
			steps: []step{{name: "stream ends", close: true, wantErr: ErrBusLost, queue: []uint64{}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := tt.fake()
			s := New(f, tt.opts)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			ev, err := s.Start(ctx)
			if tt.startErr {
				if !errors.Is(err, errNoDaemon) {
					t.Fatalf("Start: %v, want %v", err, errNoDaemon)
				}
				return
			}
			if err != nil {
				t.Fatalf("Start: %v", err)
			}
			defer s.Close()
			if ev.Kind != tt.wantStart {
				t.Fatalf("Start: %v, want %v", ev.Kind, tt.wantStart)
			}
			if got := ids(s.Queue()); !slices.Equal(got, tt.startQ) {
				t.Fatalf("queue after Start %v, want %v", got, tt.startQ)
			}
			for _, st := range tt.steps {
				if st.do != nil {
					f.Set(st.do)
				}
				switch {
				case st.answer != nil:
					err := s.Answer(ctx, *st.answer)
					if (st.wantErr == nil) != (err == nil) || (err != nil && !errors.Is(err, st.wantErr)) {
						t.Fatalf("%s: Answer: %v, want %v", st.name, err, st.wantErr)
					}
				default:
					if st.close {
						close(f.Sigs)
					} else if st.sig != nil {
						f.Set(func(f *fakeDaemon) { f.Apply(*st.sig) })
						f.Sigs <- *st.sig
					}
					ev, err := s.Handle(ctx, next(t, s))
					if st.wantErr != nil && ev.Kind == EventWaiting {
						err = ev.Err
					}
					if (st.wantErr == nil) != (err == nil) || (err != nil && !errors.Is(err, st.wantErr)) {
						t.Fatalf("%s: Handle: %v, want %v", st.name, err, st.wantErr)
					}
					if ev.Kind != st.want {
						t.Fatalf("%s: event %v, want %v", st.name, ev.Kind, st.want)
					}
					if (st.want == EventAdded || st.want == EventUpdated || st.want == EventResolved) && ev.Index != st.wantIndex {
						t.Errorf("%s: index %d, want %d", st.name, ev.Index, st.wantIndex)
					}
				}
				if got := ids(s.Queue()); !slices.Equal(got, st.queue) {
					t.Fatalf("%s: queue %v, want %v", st.name, got, st.queue)
				}
				if _, n, _, _ := f.State(); st.regs != 0 && n != st.regs {
					t.Errorf("%s: registered %d times, want %d", st.name, n, st.regs)
				}
			}
		})
	}
}

func TestUpdatedKeepsNewerView(t *testing.T) {
	f := newFake(pend(1, 1))
	s := New(f, Options{})
	ctx := context.Background()
	if _, err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	f.Sigs <- dbus.Signal{Name: dbus.SignalConnectionPending, Pending: pend(1, 9)}
	if _, err := s.Handle(ctx, next(t, s)); err != nil {
		t.Fatal(err)
	}
	if p, ok := s.Current(); !ok || p.Count != 9 || s.Len() != 1 {
		t.Errorf("current %+v %v, len %d", p, ok, s.Len())
	}
}

// A retry timer that fired before the daemon came back is stale once the
// session registered: it changes nothing and registers no second time.
func TestStaleRetry(t *testing.T) {
	f := newFake(pend(1, 1))
	f.RegisterErr = errNoDaemon
	s := New(f, Options{Wait: true, Backoff: func(int) time.Duration { return 0 }})
	ctx := context.Background()
	if ev, err := s.Start(ctx); err != nil || ev.Kind != EventWaiting {
		t.Fatalf("Start: %v %v", ev.Kind, err)
	}
	defer s.Close()
	retry := next(t, s) // the timer fired; not handled yet
	if retry.retry == 0 {
		t.Fatalf("want a retry input, got %+v", retry)
	}
	f.Set(func(f *fakeDaemon) { f.RegisterErr = nil })
	f.Sigs <- dbus.Signal{Name: dbus.SignalDaemonChanged, Owner: ":1.3"}
	if ev, err := s.Handle(ctx, next(t, s)); err != nil || ev.Kind != EventDaemonBack {
		t.Fatalf("DaemonChanged: %v %v", ev.Kind, err)
	}
	if ev, err := s.Handle(ctx, retry); err != nil || ev.Kind != EventNone {
		t.Fatalf("stale retry: %v %v", ev.Kind, err)
	}
	if _, n, _, _ := f.State(); n != 1 {
		t.Errorf("registered %d times, want 1", n)
	}
}

func TestCloseUnregisters(t *testing.T) {
	f := newFake()
	s := New(f, Options{})
	if _, err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s.Close() // twice is fine
	if agent, _, un, _ := f.State(); agent || un != 1 {
		t.Errorf("after Close: agent %v, unregistered %d times", agent, un)
	}
	// Nothing is delivered any more, even when the daemon signals.
	f.Sigs <- dbus.Signal{Name: dbus.SignalConnectionPending, Pending: pend(1, 1)}
	select {
	case in := <-s.Inputs():
		t.Errorf("input after Close: %+v", in)
	default:
	}
}

func TestSubscribeFails(t *testing.T) {
	f := newFake()
	f.SignalsErr = errors.New("subscribe to tollgated signals: no bus")
	s := New(f, Options{Wait: true})
	if _, err := s.Start(context.Background()); err == nil {
		t.Fatal("Start succeeded without a subscription")
	}
	if _, n, _, _ := f.State(); n != 0 {
		t.Errorf("registered %d times without a subscription", n)
	}
}

func TestDefaultBackoff(t *testing.T) {
	for _, tt := range []struct {
		attempt int
		want    time.Duration
	}{{1, time.Second}, {2, 2 * time.Second}, {3, 4 * time.Second}, {5, 16 * time.Second}, {6, 30 * time.Second}, {100, 30 * time.Second}} {
		if got := DefaultBackoff(tt.attempt); got != tt.want {
			t.Errorf("DefaultBackoff(%d) = %v, want %v", tt.attempt, got, tt.want)
		}
	}
}
