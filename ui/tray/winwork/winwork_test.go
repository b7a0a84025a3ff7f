package winwork

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

func TestStartStopWait(t *testing.T) {
	var w Work
	var runs, ended atomic.Int32
	started := make(chan struct{}, 4)
	fn := func(ctx context.Context) {
		runs.Add(1)
		started <- struct{}{}
		<-ctx.Done()
		ended.Add(1)
	}
	w.Start(fn)
	<-started
	w.Start(fn) // running already: no second one
	w.Stop()
	w.Wait()
	if runs.Load() != 1 || ended.Load() != 1 {
		t.Fatalf("runs %d, ended %d; want 1 and 1", runs.Load(), ended.Load())
	}
	w.Stop() // stopped already: nothing
	w.Start(fn)
	<-started
	w.Stop()
	w.Wait()
	if runs.Load() != 2 || ended.Load() != 2 {
		t.Fatalf("after a restart: runs %d, ended %d; want 2 and 2", runs.Load(), ended.Load())
	}
}

func TestSleep(t *testing.T) {
	if !Sleep(context.Background(), time.Millisecond) {
		t.Error("Sleep with a live context said the work is over")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if Sleep(ctx, time.Hour) {
		t.Error("Sleep with an ended context said the work goes on")
	}
}
