package sigtest

import (
	"context"
	"testing"
	"time"

	"github.com/tollgate-fw/tollgate/dbus"
)

func TestForwardDeliversThenClosesWithTheSource(t *testing.T) {
	src := make(chan dbus.Signal, 1)
	out := Forward(context.Background(), src)
	src <- dbus.Signal{Name: dbus.SignalRulesChanged}
	if s := <-out; s.Name != dbus.SignalRulesChanged {
		t.Fatalf("got %+v", s)
	}
	close(src)
	select {
	case _, ok := <-out:
		if ok {
			t.Fatal("a signal after the source closed")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("not closed after the source closed")
	}
}

func TestForwardClosesWhenTheContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	out := Forward(ctx, make(chan dbus.Signal))
	cancel()
	select {
	case _, ok := <-out:
		if ok {
			t.Fatal("a signal from an empty source")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("not closed after the context ended")
	}
}
