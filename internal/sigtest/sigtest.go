// Package sigtest helps tests fake the daemon's signal subscription: the
// fakes of dbus.Client's Signals in ui/ share one forwarder. No binary
// uses it.
package sigtest

import (
	"context"

	"github.com/tollgate-fw/tollgate/dbus"
)

// Forward delivers what src carries on a new channel, as a subscription of
// dbus.Client.Signals does: until ctx ends or src is closed (a lost bus);
// then the channel is closed.
func Forward(ctx context.Context, src <-chan dbus.Signal) <-chan dbus.Signal {
	out := make(chan dbus.Signal)
	go func() {
		defer close(out)
		for {
			select {
			case <-ctx.Done():
				return
			case s, ok := <-src:
				if !ok {
					return
				}
				select {
				case out <- s:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}
