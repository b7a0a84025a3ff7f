package tray

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/tollgate-fw/tollgate/dbus"
	"github.com/tollgate-fw/tollgate/internal/proctest"
)

// dialer hands out the sessions a test queues; with none queued it fails.
type dialer struct {
	mu    sync.Mutex
	next  []*fakeSession
	dials int
}

func (d *dialer) push(s *fakeSession) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.next = append(d.next, s)
}

func (d *dialer) dial(ctx context.Context) (Session, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.dials++
	if len(d.next) == 0 {
		return nil, errors.New("no bus socket")
	}
	s := d.next[0]
	d.next = d.next[1:]
	return s, nil
}

func (d *dialer) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.dials
}

// waitFor waits for cond (proctest.WaitFor) with this package's deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	proctest.WaitFor(t, 10*time.Second, what, cond)
}

func recv(t *testing.T, ch <-chan dbus.Signal) dbus.Signal {
	t.Helper()
	select {
	case s, ok := <-ch:
		if !ok {
			t.Fatal("signal channel closed")
		}
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("no signal")
	}
	return dbus.Signal{}
}

func startBus(t *testing.T, d *dialer) (*Bus, context.CancelFunc, <-chan error) {
	t.Helper()
	b := NewBus(d.dial, nil)
	b.minWait, b.maxWait = time.Millisecond, 4*time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	ended := make(chan struct{})
	go func() {
		err := b.Run(ctx)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run ended with %v", err)
		}
		done <- err
		close(ended)
	}()
	t.Cleanup(func() {
		cancel()
		<-ended
	})
	return b, cancel, done
}

func TestBusNoBusThenConnects(t *testing.T) {
	d := &dialer{}
	b, _, _ := startBus(t, d)
	ctx := t.Context()
	waitFor(t, "two failed dials (backoff retries)", func() bool { return d.count() >= 2 })
	if _, err := b.GetStatus(ctx); !errors.Is(err, ErrNoBus) {
		t.Fatalf("GetStatus without a bus: %v, want ErrNoBus", err)
	}
	// A subscription made without a bus works, and hears the daemon
	// appear when a connection comes.
	sigs, err := b.Signals(ctx)
	if err != nil {
		t.Fatalf("Signals without a bus: %v", err)
	}
	s1 := newFakeSession("s1", ":1.7")
	d.push(s1)
	if sig := recv(t, sigs); sig.Name != dbus.SignalDaemonChanged || sig.Owner != ":1.7" {
		t.Fatalf("first signal %+v, want DaemonChanged :1.7", sig)
	}
	if st, err := b.GetStatus(ctx); err != nil || st.Mode != "enforcing" {
		t.Fatalf("GetStatus connected: %+v %v", st, err)
	}
	s1.emit(dbus.Signal{Name: dbus.SignalRulesChanged})
	if sig := recv(t, sigs); sig.Name != dbus.SignalRulesChanged {
		t.Fatalf("forwarded %+v, want RulesChanged", sig)
	}
}

func TestBusReconnectLooksLikeDaemonRestart(t *testing.T) {
	d := &dialer{}
	s1 := newFakeSession("s1", ":1.7")
	d.push(s1)
	b, _, _ := startBus(t, d)
	ctx := t.Context()
	waitFor(t, "the first connection", b.Connected)

	// Subscribed while connected: in place at once, no made-up signal.
	sigs, err := b.Signals(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s1.subscribers() != 1 {
		t.Fatalf("subscriptions on the connection after Signals returned: %d, want 1", s1.subscribers())
	}
	s1.emit(dbus.Signal{Name: dbus.SignalStatusChanged})
	if sig := recv(t, sigs); sig.Name != dbus.SignalStatusChanged {
		t.Fatalf("got %+v, want StatusChanged", sig)
	}

	// The bus goes away: the daemon "leaves"; calls fail with ErrNoBus.
	s1.drop()
	if sig := recv(t, sigs); sig.Name != dbus.SignalDaemonChanged || sig.Owner != "" {
		t.Fatalf("after the bus dropped: %+v, want DaemonChanged with no owner", sig)
	}
	waitFor(t, "calls to fail without a bus", func() bool {
		_, err := b.GetStatus(ctx)
		return errors.Is(err, ErrNoBus)
	})

	// A new connection where the daemon is: it "comes back".
	s2 := newFakeSession("s2", ":1.9")
	d.push(s2)
	if sig := recv(t, sigs); sig.Name != dbus.SignalDaemonChanged || sig.Owner != ":1.9" {
		t.Fatalf("after reconnecting: %+v, want DaemonChanged :1.9", sig)
	}
	if err := b.SetMode(ctx, "monitor"); err != nil {
		t.Fatal(err)
	}
	if got := s2.setModes(); len(got) != 1 || got[0] != "monitor" {
		t.Fatalf("SetMode went to %v on the new connection", got)
	}
	s2.emit(dbus.Signal{Name: dbus.SignalRulesChanged})
	if sig := recv(t, sigs); sig.Name != dbus.SignalRulesChanged {
		t.Fatalf("got %+v from the new connection", sig)
	}

	// A new connection where the daemon is not: only the loss is told.
	s2.drop()
	if sig := recv(t, sigs); sig.Name != dbus.SignalDaemonChanged || sig.Owner != "" {
		t.Fatalf("got %+v, want DaemonChanged with no owner", sig)
	}
	s3 := newFakeSession("s3", "")
	d.push(s3)
	waitFor(t, "a subscription on the third connection", func() bool { return s3.subscribers() == 1 })
	s3.emit(dbus.Signal{Name: dbus.SignalDaemonChanged, Owner: ":1.12"})
	if sig := recv(t, sigs); sig.Name != dbus.SignalDaemonChanged || sig.Owner != ":1.12" {
		t.Fatalf("got %+v, want the daemon arriving on the third connection", sig)
	}
}

func TestBusSignalsEndWithContext(t *testing.T) {
	d := &dialer{}
	s1 := newFakeSession("s1", ":1.7")
	d.push(s1)
	b, _, _ := startBus(t, d)
	waitFor(t, "the connection", b.Connected)
	ctx, cancel := context.WithCancel(t.Context())
	sigs, err := b.Signals(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	for range sigs {
	}
	waitFor(t, "the subscription on the connection to end", func() bool { return s1.subscribers() == 0 })
}

func TestBusRunClosesOnCancel(t *testing.T) {
	d := &dialer{}
	s1 := newFakeSession("s1", ":1.7")
	d.push(s1)
	b, cancel, done := startBus(t, d)
	waitFor(t, "the connection", b.Connected)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
	select {
	case <-s1.Done():
	default:
		t.Fatal("the connection was not closed")
	}
	if b.Connected() {
		t.Fatal("still connected after Run ended")
	}
}
