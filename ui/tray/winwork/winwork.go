// Package winwork runs a window's background work (following the daemon)
// while the window is open: Start when it is shown, Stop when it is
// closed, Wait for the work's end. It knows nothing of Fyne; the window
// calls it from Fyne's goroutine.
package winwork

import (
	"context"
	"sync"
	"time"
)

// Work is one window's background work; the zero value is ready.
type Work struct {
	stop context.CancelFunc // nil when not running
	wg   sync.WaitGroup
}

// Start runs fn in a goroutine with a context that Stop cancels, unless a
// Start's work runs already (not yet stopped).
func (w *Work) Start(fn func(ctx context.Context)) {
	if w.stop != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	w.stop = cancel
	w.wg.Go(func() { fn(ctx) })
}

// Stop cancels the running work's context; Start may run it again.
func (w *Work) Stop() {
	if w.stop != nil {
		w.stop()
		w.stop = nil
	}
}

// Wait waits until every work Start ran has returned.
func (w *Work) Wait() { w.wg.Wait() }

// Sleep waits d, or less if ctx ends first; it says whether d passed (the
// work goes on).
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
