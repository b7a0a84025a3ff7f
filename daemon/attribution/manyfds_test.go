package attribution

import (
	"net/netip"
	"testing"
)

// manyFDs is a process of uid 1000 holding n sockets at fds 3..n+2.
func manyFDs(pid int, n int, firstInode uint64) fakeProcess {
	fds := make(map[int]uint64, n)
	for i := 0; i < n; i++ {
		fds[3+i] = firstInode + uint64(i)
	}
	return fakeProcess{PID: pid, PPID: 1, Start: 9000, UID: 1000, GID: 1000, Exe: "load", Args: []string{"load"}, FDs: fds}
}

// newConn registers a TCP connection with socket inode (owner uid 1000)
// and returns its query.
func newConn(socks *fakeSockets, inode uint64) Query {
	k := fakeKey{proto: protoTCP, local: netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), uint16(1024+inode%60000)), remote: netip.MustParseAddrPort("192.0.2.1:443")}
	socks.add(k, inode, 1000)
	return Query{Proto: protoTCP, Local: k.local, Remote: k.remote, UID: 1000, GID: 1000}
}

// TestLookupManyFDsReadsFewLinks shows that finding a new socket of a
// process holding thousands costs a few fd link reads, not one per fd:
// when the socket reuses the fd of the last one found (closed, then a new
// socket takes the lowest free fd) and when the fds climb (earlier sockets
// stay open). A new socket elsewhere in the process, or in another
// process at the fd the hint names, is still found, and in the right
// process. With the proc connector the facts are not re-read per lookup;
// without it they are re-checked each time.
func TestLookupManyFDsReadsFewLinks(t *testing.T) {
	const nfds = 2000
	const pid = 4242
	for _, mode := range []string{"no events", "events"} {
		t.Run(mode, func(t *testing.T) {
			fp := newFakeProc(t)
			fp.add(fakeProcess{PID: 1, Start: 1, Exe: "init", Args: []string{"/sbin/init"}})
			fp.add(manyFDs(pid, nfds, 100000))
			fp.add(fakeProcess{PID: 5000, PPID: 1, Start: 9500, UID: 1000, GID: 1000, Exe: "curl", Args: []string{"curl"}, FDs: map[int]uint64{3: 90000}})
			socks := newFakeSockets()
			var ev *fakeEvents
			if mode == "events" {
				ev = newFakeEvents()
			}
			a := testAttributor(t, fp, socks, ev)
			inode := uint64(200000)
			lookup := func(what string, wantPID int) Stats {
				t.Helper()
				before := a.Stats()
				if p := mustFind(t, a, newConn(socks, inode)); p.PID != wantPID || p.Inode != inode {
					t.Fatalf("%s: pid %d inode %d, want pid %d inode %d", what, p.PID, p.Inode, wantPID, inode)
				}
				after := a.Stats()
				return Stats{FDLinks: after.FDLinks - before.FDLinks, Rechecks: after.Rechecks - before.Rechecks, Scans: after.Scans - before.Scans}
			}

			// The first new socket: nothing is known of the process yet.
			fd := 3 + nfds
			fp.setFD(pid, fd, inode)
			lookup("first", pid) // a full search of the process

			// Close and reopen at the same fd, 20 times.
			for i := 0; i < 20; i++ {
				inode++
				fp.setFD(pid, fd, inode)
				d := lookup("reopen", pid)
				if d.FDLinks != 1 || d.Scans != 1 {
					t.Fatalf("reopen %d at fd %d: %d fd links read, %d scans; want 1 link, 1 scan", i, fd, d.FDLinks, d.Scans)
				}
				checkRechecks(t, ev != nil, d)
			}

			// Open and keep: the fds climb, 20 times.
			for i := 0; i < 20; i++ {
				inode++
				fd++
				fp.setFD(pid, fd, inode)
				d := lookup("climb", pid)
				if d.FDLinks != 2 {
					t.Fatalf("climb %d to fd %d: %d fd links read, want 2 (the last fd, then the next)", i, fd, d.FDLinks)
				}
				checkRechecks(t, ev != nil, d)
			}

			// A low fd freed and reused, far from the hint: found by the
			// full search of the process, and then the next one near it is
			// cheap again.
			inode++
			fp.closeFD(pid, 500)
			fp.setFD(pid, 500, inode)
			if d := lookup("far from the hint", pid); d.FDLinks > nfds+50+2*probeSpan+1 {
				t.Errorf("far from the hint: %d fd links read, want at most every fd once plus the probes", d.FDLinks)
			}
			inode++
			fp.setFD(pid, 500, inode)
			if d := lookup("reopen after the far one", pid); d.FDLinks != 1 {
				t.Errorf("reopen after a far one: %d fd links read, want 1", d.FDLinks)
			}

			// Another process's new socket at the very fd the hint names
			// is that process's, never the hinted one's.
			inode++
			fp.setFD(5000, 500, inode)
			if d := lookup("other process at the hinted fd", 5000); d.FDLinks < nfds {
				t.Errorf("other process: %d fd links read, want the whole of pid %d searched first", d.FDLinks, pid)
			}
		})
	}
}

// checkRechecks: with the proc connector the cached facts are vouched for
// (no re-read); without it each lookup re-checks them once.
func checkRechecks(t *testing.T, events bool, d Stats) {
	t.Helper()
	want := uint64(1)
	if events {
		want = 0
	}
	if d.Rechecks != want {
		t.Fatalf("%d re-checks of cached facts, want %d (proc connector: %v)", d.Rechecks, want, events)
	}
}
