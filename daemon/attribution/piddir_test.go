package attribution

import (
	"fmt"
	"net/netip"
	"testing"
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
