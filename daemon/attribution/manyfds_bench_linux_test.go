package attribution

import (
	"context"
	"net/netip"
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tollgate-fw/tollgate/internal/nstest"
)

// BenchmarkLookupManyFDs measures Lookup of a new socket in a process that
// holds 10,000 sockets already. Each iteration closes the newest socket's
// fd and opens a new socket at the same number (the lowest free fd), the
// pattern of a process that connects again and again; that is done with
// the timer stopped.
//
//	fake/*    on the fake /proc (symlinks in a temporary directory, so a
//	          link read costs less than in procfs) and socket table
//	procfs/*  the benchmark process itself holds 10,000 UDP sockets; the
//	          kernel's sock_diag and /proc (root, in the test namespace)
func BenchmarkLookupManyFDs(b *testing.B) {
	const nfds = 10000
	for _, mode := range []string{"no-events", "events"} {
		b.Run("procfs/"+mode, func(b *testing.B) {
			benchManyFDsProcfs(b, nfds, mode == "events")
		})
	}
	for _, mode := range []string{"no-events", "events"} {
		b.Run("fake/"+mode, func(b *testing.B) {
			fp := newFakeProc(b)
			fds := make(map[int]uint64, nfds)
			for i := 0; i < nfds; i++ {
				fds[3+i] = uint64(100000 + i)
			}
			pid := 4242
			fp.add(fakeProcess{PID: pid, PPID: 1, Start: 9000, UID: 1000, GID: 1000, Exe: "load", Args: []string{"load"}, FDs: fds})
			socks := newFakeSockets()
			o := Options{ProcRoot: fp.root, NoInitialScan: true, NoProcEvents: mode == "no-events", sockets: socks}
			if mode == "events" {
				o.events = newFakeEvents()
			}
			a, err := New(context.Background(), nil, o)
			if err != nil {
				b.Fatal(err)
			}
			defer a.Close()
			fd := 3 + nfds - 1
			inode := uint64(100000 + nfds - 1)
			next := func() Query {
				inode++
				fp.setFD(pid, fd, inode)
				k := fakeKey{proto: protoTCP, local: netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), uint16(1024+inode%60000)), remote: netip.MustParseAddrPort("192.0.2.1:443")}
				socks.add(k, inode, 1000)
				return Query{Proto: protoTCP, Local: k.local, Remote: k.remote, UID: 1000, GID: 1000}
			}
			// The first lookup reads the process's facts.
			if p, found, err := a.Lookup(context.Background(), next()); err != nil || !found || p.PID != pid {
				b.Fatalf("Lookup: %+v %v %v", p, found, err)
			}
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				q := next()
				b.StartTimer()
				p, found, err := a.Lookup(context.Background(), q)
				if err != nil || !found || p.PID != pid {
					b.Fatalf("Lookup: %+v %v %v", p, found, err)
				}
			}
			b.ReportMetric(float64(nfds), "fds")
		})
	}
}

func benchManyFDsProcfs(b *testing.B, nfds int, events bool) {
	nstest.RequireRoot(b)
	o := Options{NoProcEvents: true, NoInitialScan: true}
	if events {
		if o.ProcEventsNetns = initialNetnsPath(b); o.ProcEventsNetns == "" {
			b.Skip("no initial network namespace to open the proc connector in")
		}
		o.NoProcEvents = false
	}
	var held []int
	defer func() {
		for _, fd := range held {
			unix.Close(fd)
		}
	}()
	open := func() (int, Query) {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			b.Fatalf("socket: %v", err)
		}
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			unix.Close(fd)
			b.Fatalf("bind: %v", err)
		}
		sa, err := unix.Getsockname(fd)
		if err != nil {
			unix.Close(fd)
			b.Fatalf("getsockname: %v", err)
		}
		local := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(sa.(*unix.SockaddrInet4).Port))
		return fd, Query{Proto: protoUDP, Local: local, Remote: netip.MustParseAddrPort("127.0.0.1:9"), UID: 0, GID: 0}
	}
	for i := 0; i < nfds; i++ {
		fd, _ := open()
		held = append(held, fd)
	}
	a, err := New(context.Background(), nil, o)
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	cur, q := open()
	defer func() { unix.Close(cur) }()
	lookup := func() {
		p, found, err := a.Lookup(context.Background(), q)
		if err != nil || !found || p.PID != os.Getpid() {
			b.Fatalf("Lookup: %+v %v %v", p, found, err)
		}
	}
	lookup() // reads the facts
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		unix.Close(cur)
		cur, q = open()
		b.StartTimer()
		lookup()
	}
	b.ReportMetric(float64(nfds), "fds")
}
