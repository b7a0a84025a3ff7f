package attribution

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/tollgate-fw/tollgate/shared"
)

var (
	tcpOut = fakeKey{proto: protoTCP, local: netip.MustParseAddrPort("10.0.0.1:40000"), remote: netip.MustParseAddrPort("93.184.216.34:443")}
	qOut   = Query{Proto: protoTCP, Local: tcpOut.local, Remote: tcpOut.remote, UID: 1000, GID: 1000}
)

// testAttributor builds an Attributor over a fake /proc and socket table;
// events is nil for the mode without the proc connector.
func testAttributor(t *testing.T, fp *fakeProc, socks *fakeSockets, events *fakeEvents, mod ...func(*Options)) *Attributor {
	t.Helper()
	o := Options{ProcRoot: fp.root, NoInitialScan: true, NoProcEvents: events == nil, sockets: socks}
	if events != nil {
		o.events = events
	}
	for _, m := range mod {
		m(&o)
	}
	a, err := New(context.Background(), nil, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

func browser(fds map[int]uint64) fakeProcess {
	return fakeProcess{
		PID: 4242, PPID: 1, Start: 9000, UID: 1000, GID: 1000, Exe: "firefox",
		Args:   []string{"/usr/bin/firefox", "--new-window", "https://example.org"},
		Cgroup: "/user.slice/user-1000.slice/user@1000.service/app.slice/app-flatpak-org.mozilla.firefox-4242.scope",
		FDs:    fds,
	}
}

func mustFind(t *testing.T, a *Attributor, q Query) Process {
	t.Helper()
	p, found, err := a.Lookup(context.Background(), q)
	if err != nil {
		t.Fatalf("Lookup: %v", err)
	}
	if !found {
		t.Fatalf("Lookup(%+v): not found, want a process (%+v)", q, p)
	}
	return p
}

func mustNotFind(t *testing.T, a *Attributor, q Query) Process {
	t.Helper()
	p, found, err := a.Lookup(context.Background(), q)
	if err != nil {
		t.Fatalf("Lookup: %v", err)
	}
	if found || p.PID != 0 {
		t.Fatalf("Lookup(%+v) = %+v, found; want uid only", q, p)
	}
	return p
}

func TestLookupFindsProcessFacts(t *testing.T) {
	fp := newFakeProc(t)
	fp.add(fakeProcess{PID: 1, Start: 1, Exe: "init", Args: []string{"/sbin/init"}, Cgroup: "/init.scope"})
	fp.add(browser(map[int]uint64{3: 111, 7: 5000, 9: 222}))
	fp.add(fakeProcess{PID: 4300, PPID: 1, Start: 9100, UID: 1000, Exe: "other", FDs: map[int]uint64{4: 333}})
	socks := newFakeSockets()
	socks.add(tcpOut, 5000, 1000)
	for _, mode := range []string{"no events", "events"} {
		t.Run(mode, func(t *testing.T) {
			var ev *fakeEvents
			if mode == "events" {
				ev = newFakeEvents()
			}
			a := testAttributor(t, fp, socks, ev)
			p := mustFind(t, a, qOut)
			want := Process{
				PID: 4242, PIDStart: 9000, PPID: 1, UID: 1000, GID: 1000, SockUID: 1000,
				Exe: fp.exePath("firefox"), ExeSHA256: fp.exeSum("firefox"),
				Cmdline: "/usr/bin/firefox --new-window https://example.org",
				Cgroup:  "/user.slice/user-1000.slice/user@1000.service/app.slice/app-flatpak-org.mozilla.firefox-4242.scope",
				Unit:    "user@1000.service/app-flatpak-org.mozilla.firefox-4242.scope", App: "flatpak:org.mozilla.firefox",
				User: p.User, Inode: 5000,
			}
			if p != want {
				t.Errorf("Lookup =\n %+v\nwant\n %+v", p, want)
			}
			// A second lookup answers from the index and the facts cache.
			before := a.Stats()
			if p2 := mustFind(t, a, qOut); p2 != p {
				t.Errorf("second Lookup = %+v, want %+v", p2, p)
			}
			after := a.Stats()
			if after.IndexHits != before.IndexHits+1 || after.Scans != before.Scans || after.FactsCached != before.FactsCached+1 {
				t.Errorf("second lookup: stats %+v → %+v, want one index hit, one cached facts, no scan", before, after)
			}
			if after.ProcEvents != (ev != nil) {
				t.Errorf("Stats.ProcEvents = %v", after.ProcEvents)
			}
		})
	}
}

func TestLookupUIDOnly(t *testing.T) {
	fp := newFakeProc(t)
	fp.add(browser(map[int]uint64{7: 5000}))
	socks := newFakeSockets()
	a := testAttributor(t, fp, socks, nil)

	t.Run("no socket", func(t *testing.T) {
		p := mustNotFind(t, a, Query{Proto: protoTCP, Local: tcpOut.local, Remote: tcpOut.remote, UID: 0, GID: 0})
		if p.UID != 0 || p.User != "root" || p.Inode != 0 || p.SockUID != -1 {
			t.Errorf("uid-only answer %+v, want uid 0 root, no inode", p)
		}
	})
	t.Run("socket nobody holds", func(t *testing.T) {
		k := tcpOut
		k.local = netip.MustParseAddrPort("10.0.0.1:40001")
		socks.add(k, 6000, 65534)
		p := mustNotFind(t, a, Query{Proto: protoTCP, Local: k.local, Remote: k.remote, UID: -1, GID: -1})
		if p.UID != 65534 || p.SockUID != 65534 || p.Inode != 6000 {
			t.Errorf("uid-only answer %+v, want the socket's uid 65534 and inode", p)
		}
	})
	t.Run("time-wait socket without inode", func(t *testing.T) {
		k := tcpOut
		k.local = netip.MustParseAddrPort("10.0.0.1:40002")
		socks.add(k, 0, 0)
		mustNotFind(t, a, Query{Proto: protoTCP, Local: k.local, Remote: k.remote, UID: 1000})
	})
	t.Run("protocol without sockets", func(t *testing.T) {
		mustNotFind(t, a, Query{Proto: 47, Local: tcpOut.local, Remote: tcpOut.remote, UID: 1000})
	})
	t.Run("invalid addresses", func(t *testing.T) {
		mustNotFind(t, a, Query{Proto: protoTCP, UID: 1000})
	})
}

func TestLookupDirections(t *testing.T) {
	fp := newFakeProc(t)
	fp.add(fakeProcess{PID: 300, PPID: 1, Start: 50, Exe: "sshd", Args: []string{"sshd", "-D"}, Cgroup: "/system.slice/ssh.service", FDs: map[int]uint64{3: 700, 4: 701}})
	socks := newFakeSockets()
	lst := fakeKey{proto: protoTCP, local: netip.MustParseAddrPort("10.0.0.1:22"), listen: true}
	socks.add(lst, 700, 0)
	udp := fakeKey{proto: protoUDP, local: netip.MustParseAddrPort("10.0.0.1:5353"), remote: netip.MustParseAddrPort("224.0.0.251:5353")}
	socks.add(udp, 701, 0)
	a := testAttributor(t, fp, socks, nil)

	p := mustFind(t, a, Query{Proto: protoTCP, Inbound: true, Local: lst.local, Remote: netip.MustParseAddrPort("192.0.2.7:51000"), UID: -1, GID: -1})
	if p.PID != 300 || p.Unit != "ssh.service" || p.App != "" {
		t.Errorf("inbound TCP: %+v, want the listener's holder sshd, unit ssh.service", p)
	}
	// Outbound to the same port is not the listener.
	mustNotFind(t, a, Query{Proto: protoTCP, Local: lst.local, Remote: netip.MustParseAddrPort("192.0.2.7:51000"), UID: -1})
	for _, in := range []bool{false, true} {
		p = mustFind(t, a, Query{Proto: protoUDP, Inbound: in, Local: udp.local, Remote: udp.remote, UID: 0})
		if p.PID != 300 {
			t.Errorf("UDP inbound=%v: pid %d, want 300", in, p.PID)
		}
	}
}

func TestLookupRescansStaleIndex(t *testing.T) {
	fp := newFakeProc(t)
	fp.add(browser(map[int]uint64{7: 5000}))
	fp.add(fakeProcess{PID: 5000, PPID: 1, Start: 9500, UID: 1000, GID: 1000, Exe: "curl", Args: []string{"curl", "https://example.org"}})
	socks := newFakeSockets()
	socks.add(tcpOut, 5000, 1000)
	a := testAttributor(t, fp, socks, nil)
	if p := mustFind(t, a, qOut); p.PID != 4242 {
		t.Fatalf("pid %d, want 4242", p.PID)
	}
	// The browser closes fd 7 and reuses it for another socket; the inode
	// (same number, a new socket) is now held by curl.
	fp.setFD(4242, 7, 5999)
	fp.setFD(5000, 3, 5000)
	before := a.Stats()
	p := mustFind(t, a, qOut)
	if p.PID != 5000 || p.Exe != fp.exePath("curl") {
		t.Errorf("after fd reuse: %+v, want curl (pid 5000)", p)
	}
	if s := a.Stats(); s.Scans != before.Scans+1 {
		t.Errorf("stale index entry: %d scans, want 1", s.Scans-before.Scans)
	}
}

func TestLookupPIDReuse(t *testing.T) {
	fp := newFakeProc(t)
	fp.add(browser(map[int]uint64{7: 5000}))
	socks := newFakeSockets()
	socks.add(tcpOut, 5000, 1000)
	a := testAttributor(t, fp, socks, newFakeEvents())
	mustFind(t, a, qOut)
	// Pid 4242 is reused by another program that holds the same fd number
	// (it inherited the socket). No event arrives (as if lost).
	fp.add(fakeProcess{PID: 4242, PPID: 77, Start: 12000, UID: 1000, GID: 1000, Exe: "nc", Args: []string{"nc", "example.org", "443"}, FDs: map[int]uint64{7: 5000}})
	p := mustFind(t, a, qOut)
	if p.PIDStart != 12000 || p.Exe != fp.exePath("nc") || p.Cmdline != "nc example.org 443" || p.PPID != 77 {
		t.Errorf("after pid reuse: %+v, want nc started at 12000", p)
	}
	if a.Alive(4242, 9000) {
		t.Error("Alive(4242, old start) = true after pid reuse")
	}
	if !a.Alive(4242, 12000) {
		t.Error("Alive(4242, new start) = false")
	}
}

func TestLookupExecWithoutEvents(t *testing.T) {
	fp := newFakeProc(t)
	fp.add(browser(map[int]uint64{7: 5000}))
	socks := newFakeSockets()
	socks.add(tcpOut, 5000, 1000)
	a := testAttributor(t, fp, socks, nil)
	mustFind(t, a, qOut)

	// Same pid and start time (exec keeps both), new program.
	pr := browser(map[int]uint64{7: 5000})
	pr.Exe, pr.Args = "evil", []string{"./evil"}
	fp.add(pr)
	p := mustFind(t, a, qOut)
	if p.Exe != fp.exePath("evil") || p.ExeSHA256 != fp.exeSum("evil") || p.Cmdline != "./evil" {
		t.Errorf("after exec: %+v, want evil", p)
	}

	// Same path and arguments, but the file was replaced (an upgrade).
	if err := os.WriteFile(fp.exePath("evil"), []byte("binary:evil v2, longer"), 0o755); err != nil {
		t.Fatal(err)
	}
	if p2 := mustFind(t, a, qOut); p2.ExeSHA256 == p.ExeSHA256 || p2.ExeSHA256 != fp.exeSum("evil") {
		t.Errorf("after replacing the executable: sha256 %s, want %s", p2.ExeSHA256, fp.exeSum("evil"))
	}

	// A uid change (setuid without exec) is seen too.
	pr.UID = 0
	fp.add(pr)
	if p3 := mustFind(t, a, qOut); p3.UID != 0 || p3.User != "root" {
		t.Errorf("after setuid: uid %d user %q, want 0 root", p3.UID, p3.User)
	}
}

func TestLookupEventsKeepCacheExact(t *testing.T) {
	fp := newFakeProc(t)
	fp.add(browser(map[int]uint64{7: 5000}))
	socks := newFakeSockets()
	socks.add(tcpOut, 5000, 1000)
	ev := newFakeEvents()
	a := testAttributor(t, fp, socks, ev)
	mustFind(t, a, qOut) // read, and trusted: no event since

	// With the connector, cached facts are not re-read: a change on disk
	// without an event is invisible (it cannot happen in a real /proc)...
	pr := browser(map[int]uint64{7: 5000})
	pr.Exe, pr.Args = "evil", []string{"./evil"}
	fp.add(pr)
	if p := mustFind(t, a, qOut); p.Exe != fp.exePath("firefox") {
		t.Fatalf("trusted facts re-read: exe %s", p.Exe)
	}
	// ...and the exec event queued before the lookup is applied first.
	ev.push(procEvent{What: procEventExec, PID: 4242, TID: 4242})
	if p := mustFind(t, a, qOut); p.Exe != fp.exePath("evil") {
		t.Errorf("after exec event: exe %s, want evil", p.Exe)
	}
	// A uid event also invalidates.
	pr.UID = 0
	fp.add(pr)
	ev.push(procEvent{What: procEventUID, PID: 4242, TID: 4242})
	if p := mustFind(t, a, qOut); p.UID != 0 {
		t.Errorf("after uid event: uid %d, want 0", p.UID)
	}
	// Lost events distrust everything.
	pr.Args = []string{"./evil", "--again"}
	fp.add(pr)
	ev.mu.Lock()
	ev.lost = true
	ev.mu.Unlock()
	if p := mustFind(t, a, qOut); p.Cmdline != "./evil --again" {
		t.Errorf("after lost events: cmdline %q", p.Cmdline)
	}
	if a.Stats().EventsLost != 1 {
		t.Errorf("EventsLost = %d, want 1", a.Stats().EventsLost)
	}
}

func TestLookupExitGrace(t *testing.T) {
	for _, tc := range []struct {
		name  string
		grace time.Duration
		found bool
	}{
		{"within grace", time.Hour, true},
		{"after grace", time.Nanosecond, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fp := newFakeProc(t)
			fp.add(browser(map[int]uint64{7: 5000}))
			socks := newFakeSockets()
			socks.add(tcpOut, 5000, 1000)
			a := testAttributor(t, fp, socks, nil, func(o *Options) { o.ExitGrace = tc.grace })
			first := mustFind(t, a, qOut)
			// The process exits; the kernel still lists the socket for a
			// moment (its packet is being decided).
			fp.remove(4242)
			p, found, err := a.Lookup(context.Background(), qOut)
			if err != nil {
				t.Fatal(err)
			}
			if found != tc.found {
				t.Fatalf("found = %v, want %v (%+v)", found, tc.found, p)
			}
			if found && (p != first || a.Stats().ExitedHolder != 1) {
				t.Errorf("exited holder: %+v, want %+v", p, first)
			}
		})
	}
}

func TestLookupNeverNamesFormerHolder(t *testing.T) {
	fp := newFakeProc(t)
	fp.add(browser(map[int]uint64{7: 5000}))
	socks := newFakeSockets()
	socks.add(tcpOut, 5000, 1000)
	a := testAttributor(t, fp, socks, nil, func(o *Options) { o.ExitGrace = time.Hour })
	mustFind(t, a, qOut)
	// The process lives on but no longer holds the socket (passed on to a
	// process we cannot see): not its connection.
	fp.closeFD(4242, 7)
	mustNotFind(t, a, qOut)
}

func TestLookupPrefetchedFactsOutliveExit(t *testing.T) {
	fp := newFakeProc(t)
	socks := newFakeSockets()
	ev := newFakeEvents()
	a := testAttributor(t, fp, socks, ev)
	sender := fakeProcess{PID: 6000, PPID: 1, Start: 777, UID: 1000, GID: 1000, Exe: "dig", Args: []string{"dig", "example.org"}, FDs: map[int]uint64{5: 8000}}
	fp.add(sender)
	ev.push(procEvent{What: procEventExec, PID: 6000, TID: 6000})
	deadline := time.Now().Add(10 * time.Second)
	for a.cachedFacts(6000, 777) == nil {
		if time.Now().After(deadline) {
			t.Fatal("exec event did not prefetch the facts")
		}
		time.Sleep(time.Millisecond)
	}
	// The process is exiting: its fd table is still readable, its other
	// files are gone.
	for _, f := range []string{"exe", "cmdline", "status"} {
		fp.removeFile(6000, f)
	}
	udp := fakeKey{proto: protoUDP, local: netip.MustParseAddrPort("10.0.0.1:35000"), remote: netip.MustParseAddrPort("10.0.0.53:53")}
	socks.add(udp, 8000, 1000)
	p := mustFind(t, a, Query{Proto: protoUDP, Local: udp.local, Remote: udp.remote, UID: 1000})
	if p.PID != 6000 || p.Cmdline != "dig example.org" || p.ExeSHA256 != fp.exeSum("dig") {
		t.Errorf("exiting sender: %+v, want dig with its facts", p)
	}
}

func TestLookupPing(t *testing.T) {
	fp := newFakeProc(t)
	fp.add(fakeProcess{PID: 700, PPID: 1, Start: 5, UID: 1000, GID: 1000, Exe: "ping", Args: []string{"ping", "10.0.0.9"}, FDs: map[int]uint64{3: 23334, 4: 23337}})
	fp.write(filepath.Join(fp.root, "net", "icmp"), strings.Join([]string{
		"  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops",
		"   25: 00000000:F33D 00000000:0000 07 00000000:00000000 00:00000000 00000000  1000        0 23334 2 0000000063ab1a3f 0",
		"   26: 0100007F:0101 00000000:0000 07 00000000:00000000 00:00000000 00000000  1000        0 23335 2 0000000063ab1a3f 0",
		"   27: 00000000:0101 00000000:0000 07 00000000:00000000 00:00000000 00000000  1000        0 23336 2 0000000063ab1a3f 0",
		""}, "\n"))
	fp.write(filepath.Join(fp.root, "net", "icmp6"), strings.Join([]string{
		"  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops",
		"   26: 00000000000000000000000000000000:F33E 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000  1000        0 23337 2 000000000b37944b 0",
		""}, "\n"))
	a := testAttributor(t, fp, newFakeSockets(), nil)
	p := mustFind(t, a, Query{Proto: protoICMP, Local: netip.MustParseAddrPort("10.0.0.1:62269"), Remote: netip.MustParseAddrPort("10.0.0.9:0"), UID: 1000})
	if p.PID != 700 || p.Inode != 23334 {
		t.Errorf("ping: %+v, want pid 700 inode 23334", p)
	}
	p = mustFind(t, a, Query{Proto: protoICMPv6, Local: netip.MustParseAddrPort("[fd00::1]:62270"), Remote: netip.MustParseAddrPort("[fd00::9]:0"), UID: 1000})
	if p.Inode != 23337 {
		t.Errorf("ping6: %+v, want inode 23337", p)
	}
	// Identifier 0x0101 is used by two sockets that could both have sent
	// from 127.0.0.1: ambiguous, so not attributed.
	mustNotFind(t, a, Query{Proto: protoICMP, Local: netip.MustParseAddrPort("127.0.0.1:257"), Remote: netip.MustParseAddrPort("127.0.0.1:0"), UID: 1000})
	// Echo requests coming in are answered by the kernel.
	mustNotFind(t, a, Query{Proto: protoICMP, Inbound: true, Local: netip.MustParseAddrPort("10.0.0.1:62269"), Remote: netip.MustParseAddrPort("10.0.0.9:0"), UID: -1})
}

func TestAlive(t *testing.T) {
	fp := newFakeProc(t)
	fp.add(fakeProcess{PID: 10, Start: 100, Exe: "a"})
	fp.add(fakeProcess{PID: 11, Start: 200, Exe: "b", State: 'Z'})
	a := testAttributor(t, fp, newFakeSockets(), nil)
	for _, tc := range []struct {
		pid   int
		start uint64
		want  bool
	}{{10, 100, true}, {10, 101, false}, {11, 200, false}, {12, 1, false}, {0, 0, false}} {
		if got := a.Alive(tc.pid, tc.start); got != tc.want {
			t.Errorf("Alive(%d, %d) = %v, want %v", tc.pid, tc.start, got, tc.want)
		}
	}
}

func TestInitialScanFillsIndex(t *testing.T) {
	fp := newFakeProc(t)
	fp.add(browser(map[int]uint64{7: 5000, 8: 5001}))
	socks := newFakeSockets()
	socks.add(tcpOut, 5000, 1000)
	a := testAttributor(t, fp, socks, nil, func(o *Options) { o.NoInitialScan = false })
	deadline := time.Now().Add(10 * time.Second)
	for a.indexLen() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("initial scan did not index the sockets")
		}
		time.Sleep(time.Millisecond)
	}
	mustFind(t, a, qOut)
	if s := a.Stats(); s.Scans != 0 || s.IndexHits != 1 {
		t.Errorf("after initial scan: %+v, want an index hit and no search", s)
	}
}

func TestLookupAfterClose(t *testing.T) {
	fp := newFakeProc(t)
	a := testAttributor(t, fp, newFakeSockets(), newFakeEvents())
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if _, found, err := a.Lookup(context.Background(), qOut); found || err != ErrClosed {
		t.Errorf("Lookup after Close: found %v err %v, want ErrClosed", found, err)
	}
	if err := a.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestLookupCancelledSearch(t *testing.T) {
	fp := newFakeProc(t)
	for pid := 100; pid < 110; pid++ {
		fp.add(fakeProcess{PID: pid, Start: 1, Exe: "x", FDs: map[int]uint64{3: uint64(pid)}})
	}
	socks := newFakeSockets()
	socks.add(tcpOut, 99999, 1000)
	a := testAttributor(t, fp, socks, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, found, err := a.Lookup(ctx, qOut)
	if found || err == nil {
		t.Errorf("cancelled search: found %v err %v, want an error", found, err)
	}
}

// A command line longer than shared.MaxProcessText (megabytes, if a process
// likes) is read only as far as it is kept, and kept cut with a mark on a
// UTF-8 boundary; at the bound exactly it is kept whole.
func TestLookupBoundsTheCommandLine(t *testing.T) {
	long := strings.Repeat("é", shared.MaxProcessText) // 2 bytes a rune: a cut may fall inside one
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"x", long}, ("x " + long)[:shared.MaxProcessText-len("…")-1] + "…"},
		{[]string{"y", strings.Repeat("a", 1<<20)}, "y " + strings.Repeat("a", shared.MaxProcessText-len("…")-2) + "…"},
		{[]string{strings.Repeat("b", shared.MaxProcessText)}, strings.Repeat("b", shared.MaxProcessText)},
		{[]string{strings.Repeat("c", shared.MaxProcessText-1), "", ""}, strings.Repeat("c", shared.MaxProcessText-1)},
	} {
		fp := newFakeProc(t)
		fp.add(fakeProcess{PID: 4242, PPID: 1, Start: 12000, UID: 1000, GID: 1000, Exe: "nc", Args: c.args, FDs: map[int]uint64{7: 5000}})
		socks := newFakeSockets()
		socks.add(tcpOut, 5000, 1000)
		p := mustFind(t, testAttributor(t, fp, socks, newFakeEvents()), qOut)
		if p.Cmdline != c.want || len(p.Cmdline) > shared.MaxProcessText || !utf8.ValidString(p.Cmdline) {
			t.Errorf("args of %d bytes: cmdline of %d bytes ending %q, want %d ending %q", len(strings.Join(c.args, " ")),
				len(p.Cmdline), p.Cmdline[max(0, len(p.Cmdline)-8):], len(c.want), c.want[max(0, len(c.want)-8):])
		}
	}
}

// A user nests units in their delegated cgroup tree as deep as they like:
// the unit path is kept within the bound, still under the user's manager.
func TestLookupBoundsTheUnit(t *testing.T) {
	cg := "/user.slice/user-1000.slice/user@1000.service"
	for i := range 40 {
		cg += fmt.Sprintf("/%s-%d.service", strings.Repeat("u", 200), i)
	}
	fp := newFakeProc(t)
	fp.add(fakeProcess{PID: 4242, PPID: 1, Start: 12000, UID: 1000, GID: 1000, Exe: "nc", Args: []string{"nc"}, Cgroup: cg, FDs: map[int]uint64{7: 5000}})
	socks := newFakeSockets()
	socks.add(tcpOut, 5000, 1000)
	p := mustFind(t, testAttributor(t, fp, socks, newFakeEvents()), qOut)
	if len(p.Unit) > shared.MaxProcessText || !strings.HasPrefix(p.Unit, "user@1000.service/") || !strings.HasSuffix(p.Unit, "…") {
		t.Errorf("unit of %d bytes: %.40q...%q", len(p.Unit), p.Unit, p.Unit[max(0, len(p.Unit)-8):])
	}
}
