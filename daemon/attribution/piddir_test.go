package attribution

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// newFakeConn gives process pid a new TCP socket (inode) at fd and returns
// the query of its connection.
func newFakeConn(fp *fakeProc, socks *fakeSockets, pid, fd int, inode uint64) Query {
	k := fakeKey{proto: protoTCP, local: netip.MustParseAddrPort(fmt.Sprintf("10.0.0.1:%d", 30000+inode%30000)), remote: tcpOut.remote}
	socks.add(k, inode, 1000)
	fp.setFD(pid, fd, inode)
	return Query{Proto: protoTCP, Local: k.local, Remote: k.remote, UID: 1000, GID: 1000}
}

// A busy client's new sockets are found through its bound /proc/PID with
// no stat read while the proc connector vouches for it; a reused pid (no
// event at all, as if lost) is still a new process, and a parent's exit
// makes the parent be read again.
func TestLookupBoundDirKnownProcess(t *testing.T) {
	for _, events := range []bool{false, true} {
		t.Run(fmt.Sprintf("events=%v", events), func(t *testing.T) {
			fp := newFakeProc(t)
			fp.add(browser(map[int]uint64{7: 5000}))
			socks := newFakeSockets()
			var ev *fakeEvents
			if events {
				ev = newFakeEvents()
			}
			a := testAttributor(t, fp, socks, ev)
			for i := 0; i < 3; i++ {
				q := newFakeConn(fp, socks, 4242, 7+i, uint64(6000+i))
				if p := mustFind(t, a, q); p.PID != 4242 || p.PIDStart != 9000 {
					t.Fatalf("lookup %d: %+v", i, p)
				}
			}
			before := a.Stats()
			q := newFakeConn(fp, socks, 4242, 9, 6100)
			if p := mustFind(t, a, q); p.PID != 4242 || p.Exe != fp.exePath("firefox") || p.PPID != 1 {
				t.Fatalf("known process: %+v", p)
			}
			s := a.Stats()
			if want := uint64(0); events {
				want = 1
				if s.Vouched != before.Vouched+want {
					t.Errorf("Vouched %d, want %d more", s.Vouched, want)
				}
			} else if s.Vouched != 0 {
				t.Errorf("Vouched = %d without the proc connector", s.Vouched)
			}

			// The parent exits: the process is re-parented, and the event
			// makes the parent be read again.
			pr := browser(map[int]uint64{9: 6100})
			if events {
				pr.PPID = 77
				fp.writeStat(pr)
				ev.push(procEvent{What: procEventExit, PID: 1, TID: 1})
				q = newFakeConn(fp, socks, 4242, 10, 6101)
				if p := mustFind(t, a, q); p.PPID != 77 {
					t.Errorf("after the parent's exit: ppid %d, want 77", p.PPID)
				}
			}

			// Pid 4242 is reused by another program holding a socket at the
			// same fd; no event arrives.
			fp.add(fakeProcess{PID: 4242, PPID: 77, Start: 12000, UID: 1000, GID: 1000, Exe: "nc", Args: []string{"nc", "example.org", "443"}})
			q = newFakeConn(fp, socks, 4242, 10, 6200)
			p := mustFind(t, a, q)
			if p.PIDStart != 12000 || p.Exe != fp.exePath("nc") || p.Cmdline != "nc example.org 443" || p.PPID != 77 {
				t.Errorf("after pid reuse: %+v, want nc started at 12000", p)
			}
		})
	}
}

// The probe order reads first the hint when nothing through the bound
// directory saw it, then the fd read longest ago, then unseen fds next to
// the hint, then the other old reads; never an fd holding a socket made
// after the one looked for (same inode batch), and fds read unchanged
// maxMisses times only once the hint's span reaches them.
func TestProbeOrder(t *testing.T) {
	d := &pidDir{}
	d.note(5, 1000) // read first: oldest
	d.note(6, 1001)
	d.note(7, 1003) // made after want (1002), same batch
	d.note(8, 0)    // no socket
	for i := 0; i <= maxMisses; i++ {
		d.note(9, 990) // long-lived
	}
	got := d.probeOrder(nil, 1002, 6)
	// 5, the unseen fds around 6, 6; then the known ones around 6 but 7.
	want := []int{5, 4, 3, 10, 2, 11, 1, 12, 0, 13, 14, 6, 8, 9}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("order %v, want %v", got, want)
	}
	// A hint no read through d saw comes first.
	if got := d.probeOrder(nil, 1002, 40); len(got) == 0 || got[0] != 40 || got[1] != 5 {
		t.Errorf("unseen hint: order %v, want 40 then 5 first", got)
	}
	// Another batch says nothing about order: 7 may hold it.
	if got := d.probeOrder(nil, 1003+inoBatch, -1); fmt.Sprint(got) != "[5 6 7]" {
		t.Errorf("want in another batch: order %v, want [5 6 7]", got)
	}
	// A changed fd is read again like any other.
	d.note(5, 1004)
	if got := d.probeOrder(nil, 1010, -1); fmt.Sprint(got) != "[6 7 5]" {
		t.Errorf("after re-reading 5: order %v, want [6 7 5]", got)
	}
	if !newerSocket(1003, 1002) || newerSocket(1001, 1002) || newerSocket(1024, 1023) || newerSocket(0, 5) {
		t.Error("newerSocket")
	}
}

// A busy client whose workers keep 4 sockets open, each new one taking the
// fd of the oldest (closed just before): reading the fds read longest ago
// first finds it within two fd links (the walk around the last hit read
// four on average here: the new socket is three fds below it), plus one
// read of each fd around the hint at the start.
func TestLookupBoundDirRotatingFDs(t *testing.T) {
	fp := newFakeProc(t)
	fp.add(browser(map[int]uint64{}))
	socks := newFakeSockets()
	a := testAttributor(t, fp, socks, newFakeEvents())
	inode := uint64(7000)
	var qs []Query
	for fd := 5; fd < 9; fd++ {
		qs = append(qs, newFakeConn(fp, socks, 4242, fd, inode))
		inode++
	}
	for _, q := range qs {
		mustFind(t, a, q)
	}
	before := a.Stats()
	const n = 200
	for i := 0; i < n; i++ {
		fd := 5 + i%4
		q := newFakeConn(fp, socks, 4242, fd, inode)
		inode++
		if p := mustFind(t, a, q); p.PID != 4242 {
			t.Fatalf("lookup %d: %+v", i, p)
		}
	}
	s := a.Stats()
	if links := s.FDLinks - before.FDLinks; links > 2*n+2*probeSpan+1 {
		t.Errorf("%d fd links for %d lookups, want at most two each (and the start)", links, n)
	}
}

// An index entry read after the packet was sent is taken without reading
// the fd again (the proc connector vouching for the process); one read
// before it is checked, and a socket passed on meanwhile is the new
// holder's.
func TestLookupSeenAfterSent(t *testing.T) {
	fp := newFakeProc(t)
	fp.add(browser(map[int]uint64{}))
	fp.add(fakeProcess{PID: 5000, PPID: 1, Start: 9500, UID: 1000, GID: 1000, Exe: "curl", Args: []string{"curl"}})
	socks := newFakeSockets()
	ev := newFakeEvents()
	a := testAttributor(t, fp, socks, ev)
	for i := 0; i < 3; i++ { // bind the browser's directory
		mustFind(t, a, newFakeConn(fp, socks, 4242, 5+i, uint64(6000+i)))
	}
	// Two new sockets: the lookup of the first reads the second too.
	sent := time.Now()
	q1 := newFakeConn(fp, socks, 4242, 5, 6010)
	q2 := newFakeConn(fp, socks, 4242, 6, 6011)
	q1.Sent, q2.Sent = sent, sent
	mustFind(t, a, q1)
	before := a.Stats()
	if p := mustFind(t, a, q2); p.PID != 4242 {
		t.Fatalf("seen after sent: %+v", p)
	}
	s := a.Stats()
	if s.SeenAfter != before.SeenAfter+1 || s.FDLinks != before.FDLinks {
		t.Errorf("seen after sent: %d more taken as seen, %d fd links read; want 1 and 0", s.SeenAfter-before.SeenAfter, s.FDLinks-before.FDLinks)
	}

	// Seen before the packet was sent, then passed to curl: curl's.
	q3 := newFakeConn(fp, socks, 4242, 7, 6020)
	q4 := newFakeConn(fp, socks, 4242, 8, 6021)
	mustFind(t, a, q3) // reads 6021 at fd 8 too
	fp.closeFD(4242, 8)
	fp.setFD(5000, 3, 6021)
	q4.Sent = time.Now()
	before = a.Stats()
	if p := mustFind(t, a, q4); p.PID != 5000 {
		t.Errorf("passed on before the packet was sent: pid %d, want 5000", p.PID)
	}
	if s := a.Stats(); s.SeenAfter != before.SeenAfter {
		t.Error("an entry read before the packet was sent was taken unread")
	}

	// Seen after sent, but the process has exited since: not taken
	// unread (the exit grace decides, from a search).
	q5 := newFakeConn(fp, socks, 4242, 5, 6030)
	q6 := newFakeConn(fp, socks, 4242, 6, 6031)
	q5.Sent, q6.Sent = time.Now(), time.Now()
	mustFind(t, a, q5)
	ev.push(procEvent{What: procEventExit, PID: 4242, TID: 4242})
	before = a.Stats()
	a.Lookup(context.Background(), q6)
	if s := a.Stats(); s.SeenAfter != before.SeenAfter {
		t.Error("an exited holder's entry was taken unread")
	}
}

// A lookup drains the proc connector once, after the holder's fd was
// read; a drain begun after a lookup's ticket serves it too.
func TestLookupDrainsOnce(t *testing.T) {
	fp := newFakeProc(t)
	fp.add(browser(map[int]uint64{}))
	socks := newFakeSockets()
	ev := newFakeEvents()
	a := testAttributor(t, fp, socks, ev)
	for i := 0; i < 3; i++ {
		mustFind(t, a, newFakeConn(fp, socks, 4242, 5+i, uint64(6000+i)))
	}
	ev.mu.Lock()
	d0 := ev.drains
	ev.mu.Unlock()
	mustFind(t, a, newFakeConn(fp, socks, 4242, 5, 6100))
	ev.mu.Lock()
	d1 := ev.drains
	ev.mu.Unlock()
	if d1-d0 > 1 {
		t.Errorf("%d drains in one lookup, want 1", d1-d0)
	}
	ticket := a.evTicket()
	a.syncEvents()
	ev.mu.Lock()
	d2 := ev.drains
	ev.mu.Unlock()
	a.syncSince(ticket)
	ev.mu.Lock()
	d3 := ev.drains
	ev.mu.Unlock()
	if d2 == d1 || d3 != d2 {
		t.Errorf("drains %d, %d, %d: want one for syncEvents and none for a ticket taken before it", d1, d2, d3)
	}
}
