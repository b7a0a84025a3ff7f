package attribution

import (
	"bytes"
	"context"
	"net"
	"os"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/tollgate-fw/tollgate/internal/nstest"
)

// BenchmarkLookup measures Lookup against the kernel of a test namespace,
// with few sockets, with 18,000 established ones and with 12,000 in
// TIME_WAIT, to show that the cost does not grow with the socket count:
//
//	sockdiag     the exact sock_diag request alone
//	cached       Lookup answered from the inode→pid index and the facts
//	             cache (re-checked by reading /proc without the proc
//	             connector; vouched for by its events with it)
//	new-socket   Lookup of a socket not yet indexed, in a process that
//	             connected before: search /proc/*/fd, recent holders first,
//	             and read its facts afresh (the exe's sha256 stays cached)
//	cold         the same with no recent holders either: search every
//	             process, owners of the socket's uid and newest first. This
//	             depends on the processes and fds of the machine, not on
//	             sockets; "procs" is how many were running
//	dump-filter  for contrast, vishvananda/netlink's SocketGet, a dump
//	             filtered by the kernel: it walks the whole table
func BenchmarkLookup(b *testing.B) {
	nstest.RequireRoot(b)
	bin, _ := helperBin(b, "tg-bench")
	srv := tcpServer(b, "127.0.0.1:0")
	sink, line := startHelper(b, bin, "tcp-accept-hold", nil, "127.0.0.1:0")
	_ = sink
	sinkAddr, _ := addrs(b, line)

	var held []net.Conn
	dial := func(n int) {
		for i := 0; i < n; i++ {
			c, err := net.Dial("tcp", sinkAddr.String())
			if err != nil {
				b.Fatalf("dial %d: %v", i, err)
			}
			held = append(held, c)
		}
	}
	closeAll := func() {
		for _, c := range held {
			c.Close()
		}
		held = nil
	}
	b.Cleanup(closeAll)

	levels := []struct {
		name  string
		setup func()
	}{
		{"few", func() {}},
		{"established-18k", func() { dial(9000) }}, // both ends: 18,000 sockets
		{"timewait-12k", func() {
			closeAll() // the 9,000 closing ends go to TIME_WAIT
			dial(3000)
			closeAll()
		}},
	}
	for _, lv := range levels {
		lv.setup()
		waitSockets(b, lv.name)
		// The measured process starts after the crowd: it is the newest.
		c, line := startHelper(b, bin, "tcp-connect", nil, srv.String())
		local, remote := addrs(b, line)
		q := Query{Proto: protoTCP, Local: local, Remote: remote, UID: 0, GID: 0}
		n := countSockets(b)

		b.Run(lv.name+"/sockdiag", func(b *testing.B) {
			t, err := newDiagTable()
			if err != nil {
				b.Fatal(err)
			}
			defer t.close()
			b.ReportAllocs()
			for b.Loop() {
				if s, err := t.find(protoTCP, local, remote, 0, false); err != nil || s.Inode == 0 {
					b.Fatalf("find: %+v %v", s, err)
				}
			}
			b.ReportMetric(float64(n), "sockets")
		})
		for _, mode := range []string{"no-events", "events"} {
			o := Options{NoProcEvents: true, NoInitialScan: true}
			if mode == "events" {
				if o.ProcEventsNetns = initialNetnsPath(b); o.ProcEventsNetns == "" {
					continue
				}
				o.NoProcEvents = false
			}
			a, err := New(context.Background(), nil, o)
			if err != nil {
				b.Fatal(err)
			}
			b.Run(lv.name+"/cached/"+mode, func(b *testing.B) {
				benchLookup(b, a, q, c, n, nil)
			})
			if mode == "no-events" {
				b.Run(lv.name+"/new-socket", func(b *testing.B) {
					benchLookup(b, a, q, c, n, func() { a.dropCaches(false) })
				})
				b.Run(lv.name+"/cold", func(b *testing.B) {
					benchLookup(b, a, q, c, n, func() { a.dropCaches(true) })
					procs, _ := a.proc.pids()
					b.ReportMetric(float64(len(procs)), "procs")
				})
			}
			a.Close()
		}
		b.Run(lv.name+"/dump-filter", func(b *testing.B) {
			la, ra := net.TCPAddrFromAddrPort(local), net.TCPAddrFromAddrPort(remote)
			b.ReportAllocs()
			for b.Loop() {
				if s, err := netlink.SocketGet(la, ra); err != nil || s.INode == 0 {
					b.Fatalf("SocketGet: %+v %v", s, err)
				}
			}
			b.ReportMetric(float64(n), "sockets")
		})
		c.stop(b)
	}
}

func benchLookup(b *testing.B, a *Attributor, q Query, c *child, sockets int, before func()) {
	b.ReportAllocs()
	for b.Loop() {
		if before != nil {
			b.StopTimer()
			before()
			b.StartTimer()
		}
		p, found, err := a.Lookup(context.Background(), q)
		if err != nil || !found || p.PID != c.cmd.Process.Pid {
			b.Fatalf("Lookup: %+v %v %v", p, found, err)
		}
	}
	b.ReportMetric(float64(sockets), "sockets") // after b.Loop, which clears metrics
}

// dropCaches forgets every socket holder and process fact (not exe
// hashes), and with all the recent holders too.
func (a *Attributor) dropCaches(all bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.index = newGenCache[uint64, indexEntry](a.opts.IndexSize)
	a.facts = newGenCache[int, *procFacts](maxFacts)
	if all {
		a.mru = nil
		a.execs = nil
	}
}

// countSockets counts the TCP sockets of this namespace (reading the whole
// table: for reporting only).
func countSockets(b *testing.B) int {
	n := 0
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		data, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		n += bytes.Count(data, []byte("\n")) - 1
	}
	return n
}

// waitSockets waits until the namespace's TCP table has settled (closing
// ends reached TIME_WAIT, accepted ends are held).
func waitSockets(b *testing.B, level string) {
	deadline := time.Now().Add(30 * time.Second)
	prev := -1
	for {
		n := countSockets(b)
		if n == prev {
			b.Logf("%s: %d TCP sockets (tcp_max_tw_buckets %s)", level, n, readKnob("/proc/sys/net/ipv4/tcp_max_tw_buckets"))
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s: socket table did not settle", level)
		}
		prev = n
		time.Sleep(100 * time.Millisecond)
	}
}

func readKnob(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "?"
	}
	return string(bytes.TrimSpace(b))
}
