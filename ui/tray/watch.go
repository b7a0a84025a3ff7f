package tray

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/tollgate-fw/tollgate/dbus"
	"github.com/tollgate-fw/tollgate/shared"
)

// WatchClient is what the Watcher calls on the daemon (*Bus and
// *dbus.Client have it).
type WatchClient interface {
	GetStatus(ctx context.Context) (shared.Status, error)
	RecentConnections(ctx context.Context, f shared.LogFilter) ([]shared.LogEntry, error)
	Signals(ctx context.Context) (<-chan dbus.Signal, error)
}

// callTimeout bounds each call the Watcher makes.
const callTimeout = 10 * time.Second

// Reach is what the Watcher found out about the daemon.
type Reach struct {
	Reachable bool
	Status    shared.Status // when Reachable
	Problem   string        // when not: why, in a few words
}

// Watcher follows the daemon's status (GetStatus at start, on
// StatusChanged, when the daemon comes back and every Period) and the
// user's connections blocked while nobody could be asked (read at the
// same times but StatusChanged), and reports both. No Fyne: the App turns
// reports into icons and notifications.
type Watcher struct {
	Client   WatchClient
	Blocked  *Blocked
	Period   time.Duration // how often to poll; 0 = 15 s
	OnReach  func(Reach)   // called from Run's goroutine
	OnNotice func(Notice)  // called from Run's goroutine
	Log      *slog.Logger
	// Tick, when set, replaces the Period ticker (tests drive it).
	Tick <-chan time.Time
}

// Run watches until ctx ends.
func (w *Watcher) Run(ctx context.Context) error {
	log := w.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tick := w.Tick
	if tick == nil {
		p := w.Period
		if p <= 0 {
			p = 15 * time.Second
		}
		t := time.NewTicker(p)
		defer t.Stop()
		tick = t.C
	}
	var sigs <-chan dbus.Signal
	subscribe := func() {
		ch, err := w.Client.Signals(ctx)
		if err != nil {
			log.Warn("subscribe to tollgated signals", "err", err)
			return
		}
		sigs = ch
	}
	subscribe()
	w.refresh(ctx, log, true)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick:
			if sigs == nil {
				subscribe()
			}
			w.refresh(ctx, log, true)
		case sig, ok := <-sigs:
			if !ok {
				sigs = nil
				if ctx.Err() != nil {
					return ctx.Err()
				}
				continue
			}
			switch sig.Name {
			case dbus.SignalDaemonChanged:
				if sig.Owner == "" {
					w.report(Reach{Problem: "tollgated is not running"})
					continue
				}
				w.refresh(ctx, log, true)
			case dbus.SignalStatusChanged:
				w.refresh(ctx, log, false)
			}
		}
	}
}

// refresh asks for the status and, with log, reads the blocked
// connections and hands out a notice when one is due.
func (w *Watcher) refresh(parent context.Context, log *slog.Logger, readLog bool) {
	ctx, cancel := context.WithTimeout(parent, callTimeout)
	defer cancel()
	st, err := w.Client.GetStatus(ctx)
	if err != nil {
		if parent.Err() != nil {
			return
		}
		w.report(Reach{Problem: problem(err)})
		return
	}
	w.report(Reach{Reachable: true, Status: st})
	if !readLog || w.Blocked == nil {
		return
	}
	es, err := w.Client.RecentConnections(ctx, w.Blocked.Filter())
	if err != nil {
		if parent.Err() == nil {
			log.Warn("read the connection log for connections blocked unasked", "err", err)
		}
	} else {
		w.Blocked.Add(es)
	}
	if n, ok := w.Blocked.Next(); ok && w.OnNotice != nil {
		w.OnNotice(n)
	}
}

func (w *Watcher) report(r Reach) {
	if w.OnReach != nil {
		w.OnReach(r)
	}
}

// problem says in a few words why a call to the daemon failed.
func problem(err error) string {
	var de *dbus.Error
	switch {
	case errors.Is(err, ErrNoBus):
		return "no connection to the system bus"
	case errors.As(err, &de) && (de.Name == "org.freedesktop.DBus.Error.ServiceUnknown" ||
		de.Name == "org.freedesktop.DBus.Error.NameHasNoOwner"):
		return "tollgated is not running"
	case errors.Is(err, context.DeadlineExceeded):
		return "tollgated does not answer"
	}
	return err.Error()
}
