package attribution

import (
	"context"
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
	for _, mode := range []string{"no-events", "events"} {
		o := Options{NoProcEvents: true, NoInitialScan: true}
		if mode == "events" {
			if o.ProcEventsNetns = initialNetnsPath(b); o.ProcEventsNetns == "" {
				continue
			}
			o.NoProcEvents = false
		}
		b.Run(mode, func(b *testing.B) {
			a, err := New(context.Background(), nil, o)
			if err != nil {
				b.Fatal(err)
			}
			defer a.Close()
			lookup := func() {
				c, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
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
