package attribution

import (
	"context"
	"fmt"
	"net"
	"os"
	"testing"

	"github.com/tollgate-fw/tollgate/internal/nstest"
)

// BenchmarkLookupKnownProcess measures the steady state of a busy client:
// a process the attributor has seen before (same pid, same executable)
// opens a new TCP connection per operation, and each is looked up once.
// The benchmark process itself is that client. It reports per lookup the
// /proc reads that remain: fd links read, holder searches, fact re-checks.
// The server is another process (server=child: the client's fds hold its
// connections only, as for a load client or a browser) or the client
// itself (server=self: a proxy, whose accepted sockets take fds between
// its own connections').
func BenchmarkLookupKnownProcess(b *testing.B) {
	nstest.RequireRoot(b)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	bin, _ := helperBin(b, "tgserver")
	_, addr := startHelper(b, bin, "tcp-accept-hold", nil, "127.0.0.1:0")
	for _, inFlight := range []int{1, 8} {
		b.Run("server=child", func(b *testing.B) { benchKnown(b, addr, inFlight) })
		b.Run("server=self", func(b *testing.B) { benchKnown(b, ln.Addr().String(), inFlight) })
	}
}

// benchKnown runs BenchmarkLookupKnownProcess with inFlight connections
// open at a time: each operation closes the oldest and looks up a new one,
// like a load client with that many workers.
func benchKnown(b *testing.B, addr string, inFlight int) {
	for _, mode := range []string{"no-events", "events"} {
		o := Options{NoProcEvents: true, NoInitialScan: true}
		if mode == "events" {
			if o.ProcEventsNetns = initialNetnsPath(b); o.ProcEventsNetns == "" {
				continue
			}
			o.NoProcEvents = false
		}
		b.Run(fmt.Sprintf("%s/inflight-%d", mode, inFlight), func(b *testing.B) {
			a, err := New(context.Background(), nil, o)
			if err != nil {
				b.Fatal(err)
			}
			defer a.Close()
			var open []net.Conn
			defer func() {
				for _, c := range open {
					c.Close()
				}
			}()
			lookup := func() {
				if len(open) >= inFlight {
					open[0].Close()
					open = open[1:]
				}
				c, err := net.Dial("tcp", addr)
				if err != nil {
					b.Fatal(err)
				}
				open = append(open, c)
				q := Query{Proto: protoTCP, Local: c.LocalAddr().(*net.TCPAddr).AddrPort(), Remote: c.RemoteAddr().(*net.TCPAddr).AddrPort(), UID: 0, GID: 0}
				b.StartTimer()
				p, found, err := a.Lookup(context.Background(), q)
				b.StopTimer()
				if err != nil || !found || p.PID != os.Getpid() {
					b.Fatalf("Lookup: %+v %v %v", p, found, err)
				}
			}
			b.StopTimer()
			lookup() // learn the process
			lookup()
			s0 := a.Stats()
			b.ReportAllocs()
			b.ResetTimer()
			b.StopTimer()
			for i := 0; i < b.N; i++ {
				lookup()
			}
			s1 := a.Stats()
			n := float64(b.N)
			b.ReportMetric(float64(s1.FDLinks-s0.FDLinks)/n, "fdlinks/op")
			b.ReportMetric(float64(s1.Scans-s0.Scans)/n, "scans/op")
			b.ReportMetric(float64(s1.Rechecks-s0.Rechecks)/n, "rechecks/op")
		})
	}
}
