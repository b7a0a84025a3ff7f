package attribution

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tollgate-fw/tollgate/internal/nstest"
)

// modes runs f without and, where the kernel offers it from here, with the
// proc connector.
func modes(t *testing.T, f func(t *testing.T, o Options)) {
	t.Run("no-events", func(t *testing.T) { f(t, Options{NoProcEvents: true}) })
	t.Run("events", func(t *testing.T) {
		ns := initialNetnsPath(t)
		if ns == "" && nstest.InNetns() {
			t.Skip("no ancestor in another network namespace to open the proc connector in")
		}
		f(t, Options{ProcEventsNetns: ns})
	})
}

func newAttributor(t *testing.T, o Options) *Attributor {
	t.Helper()
	a, err := New(context.Background(), testLogger(t), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := a.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	wantEvents := o.ProcEventsNetns != "" || (!o.NoProcEvents && !nstest.InNetns())
	if wantEvents && !a.Stats().ProcEvents {
		t.Fatal("proc connector not in use")
	}
	return a
}

// tcpServer listens on addr and accepts (and keeps) connections.
func tcpServer(t testing.TB, addr string) netip.AddrPort {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	return netip.MustParseAddrPort(l.Addr().String())
}

func lookup(t *testing.T, a *Attributor, q Query) (Process, bool) {
	t.Helper()
	p, found, err := a.Lookup(context.Background(), q)
	if err != nil {
		t.Fatalf("Lookup(%+v): %v", q, err)
	}
	return p, found
}

// checkChild verifies that p is the helper c running bin.
func checkChild(t *testing.T, a *Attributor, p Process, c *child, bin, sum, cmdline string) {
	t.Helper()
	if p.PID != c.cmd.Process.Pid {
		t.Fatalf("pid %d, want the helper's %d (%+v)", p.PID, c.cmd.Process.Pid, p)
	}
	if p.Exe != bin || p.ExeSHA256 != sum || p.Cmdline != cmdline {
		t.Errorf("exe %q sha256 %s cmdline %q; want %q %s %q", p.Exe, p.ExeSHA256, p.Cmdline, bin, sum, cmdline)
	}
	if p.PPID != os.Getpid() {
		t.Errorf("ppid %d, want %d", p.PPID, os.Getpid())
	}
	if !a.Alive(p.PID, p.PIDStart) || a.Alive(p.PID, p.PIDStart+1) {
		t.Errorf("Alive(%d, %d) wrong", p.PID, p.PIDStart)
	}
	self, err := os.ReadFile("/proc/self/cgroup")
	if err == nil && parseCgroup(self) != p.Cgroup {
		t.Errorf("cgroup %q, want the test's %q", p.Cgroup, parseCgroup(self))
	}
	if p.Inode == 0 {
		t.Error("no socket inode")
	}
}

func TestIntegrationTCPOutbound(t *testing.T) {
	nstest.RequireRoot(t)
	bin, sum := helperBin(t, "tg-helper")
	modes(t, func(t *testing.T, o Options) {
		a := newAttributor(t, o)
		for _, host := range []string{"127.0.0.1", "[::1]"} {
			srv := tcpServer(t, host+":0")
			c, line := startHelper(t, bin, "tcp-connect", nil, srv.String())
			local, remote := addrs(t, line)
			p, found := lookup(t, a, Query{Proto: protoTCP, Local: local, Remote: remote, UID: -1, GID: -1})
			if !found {
				t.Fatalf("%s: not found: %+v", host, p)
			}
			checkChild(t, a, p, c, bin, sum, bin+" tcp-connect "+srv.String())
			if p.UID != 0 || p.User != "root" || p.SockUID != 0 {
				t.Errorf("uid %d user %q sockuid %d, want root", p.UID, p.User, p.SockUID)
			}
			pid, start := p.PID, p.PIDStart
			c.stop(t)
			if a.Alive(pid, start) {
				t.Errorf("Alive after the helper ended")
			}
		}
	})
}

// TestIntegrationTCPSynSent is the case the daemon meets: the SYN is held
// and the process is blocked in connect().
func TestIntegrationTCPSynSent(t *testing.T) {
	nstest.RequireNetns(t)
	// A veth link whose peer has no address: nobody answers ARP for
	// 10.77.0.2, so the SYN is never answered.
	if err := run("ip", "link", "add", "tgattr0", "type", "veth", "peer", "name", "tgattr1"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = run("ip", "link", "del", "tgattr0") })
	for _, args := range [][]string{{"addr", "add", "10.77.0.1/24", "dev", "tgattr0"}, {"link", "set", "tgattr0", "up"}, {"link", "set", "tgattr1", "up"}} {
		if err := run("ip", args...); err != nil {
			t.Fatal(err)
		}
	}
	bin, sum := helperBin(t, "tg-syn")
	a := newAttributor(t, Options{NoProcEvents: true})
	remote := netip.MustParseAddrPort("10.77.0.2:443")
	c, line := startHelper(t, bin, "tcp-syn", nil, "10.77.0.1", remote.String())
	local, _ := addrs(t, line)
	q := Query{Proto: protoTCP, Local: local, Remote: remote, UID: 0, GID: 0}
	// The helper printed its address before calling connect: wait until
	// the socket is in the connection table.
	deadline := time.Now().Add(20 * time.Second)
	for {
		p, found := lookup(t, a, q)
		if found {
			checkChild(t, a, p, c, bin, sum, bin+" tcp-syn 10.77.0.1 "+remote.String())
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("socket in SYN_SENT never found")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestIntegrationUDPOutbound(t *testing.T) {
	nstest.RequireRoot(t)
	bin, sum := helperBin(t, "tg-udp")
	modes(t, func(t *testing.T, o Options) {
		a := newAttributor(t, o)
		for _, host := range []string{"127.0.0.1", "::1"} {
			rcv, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(host)})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { rcv.Close() })
			dst := netip.MustParseAddrPort(rcv.LocalAddr().String())
			for _, mode := range []string{"udp-send", "udp-connect"} {
				c, _ := startHelper(t, bin, mode, nil, dst.String())
				// The datagram's source is the flow's local end.
				src := recvFrom(t, rcv)
				p, found := lookup(t, a, Query{Proto: protoUDP, Local: src, Remote: dst, UID: 0, GID: 0})
				if !found {
					t.Fatalf("%s %s: not found: %+v", mode, host, p)
				}
				checkChild(t, a, p, c, bin, sum, bin+" "+mode+" "+dst.String())
				// The same socket to another peer: found for the unconnected
				// one only.
				other := netip.AddrPortFrom(dst.Addr(), 9)
				_, found = lookup(t, a, Query{Proto: protoUDP, Local: src, Remote: other, UID: 0})
				if found != (mode == "udp-send") {
					t.Errorf("%s %s: flow to another peer found=%v", mode, host, found)
				}
				c.stop(t)
			}
		}
	})
}

func recvFrom(t *testing.T, c *net.UDPConn) netip.AddrPort {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(20 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	_, src, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("receive the helper's datagram: %v", err)
	}
	return netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
}

func TestIntegrationInbound(t *testing.T) {
	nstest.RequireRoot(t)
	bin, sum := helperBin(t, "tg-server")
	a := newAttributor(t, Options{NoProcEvents: true})
	peer := netip.MustParseAddrPort("127.0.0.1:45678")

	// A dual-stack wildcard listener takes IPv4 and IPv6 connections.
	c, line := startHelper(t, bin, "tcp-listen", nil, "[::]:0")
	l, _ := addrs(t, line)
	for _, local := range []netip.AddrPort{
		netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), l.Port()),
		netip.AddrPortFrom(netip.MustParseAddr("::1"), l.Port()),
	} {
		rem := peer
		if local.Addr().Is6() {
			rem = netip.MustParseAddrPort("[::1]:45678")
		}
		p, found := lookup(t, a, Query{Proto: protoTCP, Inbound: true, Local: local, Remote: rem, UID: -1, GID: -1})
		if !found {
			t.Fatalf("inbound to %v: not found", local)
		}
		checkChild(t, a, p, c, bin, sum, bin+" tcp-listen [::]:0")
	}
	// A listener bound to 127.0.0.1 does not take connections to 127.0.0.2.
	c2, line := startHelper(t, bin, "tcp-listen", nil, "127.0.0.1:0")
	l2, _ := addrs(t, line)
	if p, found := lookup(t, a, Query{Proto: protoTCP, Inbound: true, Local: l2, Remote: peer, UID: -1}); !found || p.PID != c2.cmd.Process.Pid {
		t.Errorf("inbound to bound listener: %+v found=%v", p, found)
	}
	other := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), l2.Port())
	if p, found := lookup(t, a, Query{Proto: protoTCP, Inbound: true, Local: other, Remote: peer, UID: -1}); found {
		t.Errorf("inbound to %v found %+v, want nobody", other, p)
	}
	// UDP: the bound socket.
	c3, line := startHelper(t, bin, "udp-listen", nil, "127.0.0.1:0")
	l3, _ := addrs(t, line)
	p, found := lookup(t, a, Query{Proto: protoUDP, Inbound: true, Local: l3, Remote: peer, UID: -1})
	if !found {
		t.Fatal("inbound UDP: not found")
	}
	checkChild(t, a, p, c3, bin, sum, bin+" udp-listen 127.0.0.1:0")
}

func TestIntegrationUserNobody(t *testing.T) {
	nstest.RequireRoot(t)
	bin, sum := helperBin(t, "tg-nobody")
	srv := tcpServer(t, "127.0.0.1:0")
	a := newAttributor(t, Options{NoProcEvents: true})
	c, line := startHelper(t, bin, "tcp-connect", &syscall.Credential{Uid: 65534, Gid: 65534}, srv.String())
	local, remote := addrs(t, line)
	p, found := lookup(t, a, Query{Proto: protoTCP, Local: local, Remote: remote, UID: -1, GID: -1})
	if !found {
		t.Fatalf("not found: %+v", p)
	}
	checkChild(t, a, p, c, bin, sum, bin+" tcp-connect "+srv.String())
	if p.UID != 65534 || p.GID != 65534 || p.SockUID != 65534 || p.User != "nobody" {
		t.Errorf("uid %d gid %d sockuid %d user %q, want nobody (65534)", p.UID, p.GID, p.SockUID, p.User)
	}
}

// TestIntegrationShortLivedUDP sends one datagram from a process that exits
// at once and looks it up as soon as it arrives. Whether the process is
// still there is a race, so this measures how often it is named; what it
// asserts is that a named process is always the right one.
func TestIntegrationShortLivedUDP(t *testing.T) {
	nstest.RequireRoot(t)
	bin, sum := helperBin(t, "tg-shortlived")
	modes(t, func(t *testing.T, o Options) {
		a := newAttributor(t, o)
		rcv, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		defer rcv.Close()
		dst := netip.MustParseAddrPort(rcv.LocalAddr().String())
		runs := 40
		if testing.Short() {
			runs = 10
		}
		named, socketSeen := 0, 0
		for i := 0; i < runs; i++ {
			cmd := helperCmd(bin, "udp-send-exit", dst.String())
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			src := recvFrom(t, rcv)
			p, found, err := a.Lookup(context.Background(), Query{Proto: protoUDP, Local: src, Remote: dst, UID: 0, GID: 0})
			if err != nil {
				t.Fatal(err)
			}
			pid := cmd.Process.Pid
			if err := cmd.Wait(); err != nil {
				t.Fatalf("helper: %v", err)
			}
			if p.Inode != 0 {
				socketSeen++
			}
			if found {
				named++
				if p.PID != pid || p.Exe != bin || p.ExeSHA256 != sum {
					t.Fatalf("run %d: named %+v, want pid %d %s", i, p, pid, bin)
				}
			}
		}
		t.Logf("process exiting right after its datagram: socket found %d/%d, process named %d/%d (stats %+v)", socketSeen, runs, named, runs, a.Stats())
	})
}

func TestIntegrationExecKeepsSocket(t *testing.T) {
	nstest.RequireRoot(t)
	bin, sum := helperBin(t, "tg-before")
	bin2, sum2 := helperBin(t, "tg-after")
	srv := tcpServer(t, "127.0.0.1:0")
	modes(t, func(t *testing.T, o Options) {
		a := newAttributor(t, o)
		c, line := startHelper(t, bin, "exec-hold", nil, srv.String(), bin2)
		local, remote := addrs(t, line)
		q := Query{Proto: protoTCP, Local: local, Remote: remote, UID: 0, GID: 0}
		p, found := lookup(t, a, q)
		if !found {
			t.Fatal("before exec: not found")
		}
		checkChild(t, a, p, c, bin, sum, bin+" exec-hold "+srv.String()+" "+bin2)
		if _, err := c.stdin.Write([]byte("go\n")); err != nil {
			t.Fatal(err)
		}
		if got := c.readLine(t); got != "held" {
			t.Fatalf("after exec the helper said %q", got)
		}
		p2, found := lookup(t, a, q)
		if !found {
			t.Fatal("after exec: not found")
		}
		if p2.PID != p.PID || p2.PIDStart != p.PIDStart {
			t.Errorf("after exec: pid %d start %d, want the same process %d %d", p2.PID, p2.PIDStart, p.PID, p.PIDStart)
		}
		if p2.Exe != bin2 || p2.ExeSHA256 != sum2 || p2.Cmdline != bin2+" held after-exec" {
			t.Errorf("after exec: exe %q sha %s cmdline %q, want %q %s", p2.Exe, p2.ExeSHA256, p2.Cmdline, bin2, sum2)
		}
	})
}

func TestIntegrationPing(t *testing.T) {
	nstest.RequireNetns(t)
	const knob = "/proc/sys/net/ipv4/ping_group_range" // per network namespace
	old, err := os.ReadFile(knob)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(knob, []byte("0 2147483647"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.WriteFile(knob, old, 0o644) })
	bin, sum := helperBin(t, "tg-ping")
	a := newAttributor(t, Options{NoProcEvents: true})
	c, line := startHelper(t, bin, "ping", nil, "127.0.0.1")
	id := strings.TrimSpace(line)
	q := Query{Proto: protoICMP, Local: netip.MustParseAddrPort("127.0.0.1:" + id), Remote: netip.MustParseAddrPort("127.0.0.1:0"), UID: 0, GID: 0}
	p, found := lookup(t, a, q)
	if !found {
		t.Fatalf("ping socket with id %s: not found", id)
	}
	checkChild(t, a, p, c, bin, sum, bin+" ping 127.0.0.1")
}

func TestIntegrationUnknownFlow(t *testing.T) {
	nstest.RequireRoot(t)
	a := newAttributor(t, Options{})
	for _, q := range []Query{
		{Proto: protoTCP, Local: netip.MustParseAddrPort("127.0.0.1:1"), Remote: netip.MustParseAddrPort("127.0.0.1:2"), UID: 65534, GID: 65534},
		{Proto: protoTCP, Inbound: true, Local: netip.MustParseAddrPort("127.0.0.1:1"), Remote: netip.MustParseAddrPort("127.0.0.1:2"), UID: 65534},
		{Proto: protoUDP, Local: netip.MustParseAddrPort("[::1]:1"), Remote: netip.MustParseAddrPort("[::1]:2"), UID: 65534},
		{Proto: protoUDPLite, Local: netip.MustParseAddrPort("127.0.0.1:1"), Remote: netip.MustParseAddrPort("127.0.0.1:2"), UID: 65534},
		{Proto: protoICMP, Local: netip.MustParseAddrPort("127.0.0.1:4242"), Remote: netip.MustParseAddrPort("127.0.0.1:0"), UID: 65534},
	} {
		p, found := lookup(t, a, q)
		if found || p.PID != 0 || p.UID != 65534 || p.User != "nobody" {
			t.Errorf("Lookup(%+v) = %+v found=%v, want uid-only nobody", q, p, found)
		}
	}
	// Mixed families are no flow.
	if _, found, err := a.Lookup(context.Background(), Query{Proto: protoTCP, Local: netip.MustParseAddrPort("127.0.0.1:1"), Remote: netip.MustParseAddrPort("[::1]:2"), UID: 0}); found || err != nil {
		t.Errorf("mixed families: found=%v err=%v", found, err)
	}
}

func TestIntegrationProcEventsRefusedInNetns(t *testing.T) {
	nstest.RequireNetns(t)
	_, err := openProcConnector("")
	if !errors.Is(err, errNoConnector) {
		t.Fatalf("proc connector inside a test namespace: %v, want errNoConnector", err)
	}
	// New still works, without it.
	a := newAttributor(t, Options{NoProcEvents: true})
	a2, err := New(context.Background(), testLogger(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer a2.Close()
	if a2.Stats().ProcEvents || a.Stats().ProcEvents {
		t.Error("ProcEvents reported inside a test namespace")
	}
}

// TestIntegrationExeFromOwnMountNamespace: a process in a mount namespace
// of its own binds another program over a path and execs that path. The
// exe link shows the path; the daemon's view of it is another file. Exe
// must stay empty (no exe rule can match), the path goes to ExeClaimed,
// and the sha256 is the running image's.
func TestIntegrationExeFromOwnMountNamespace(t *testing.T) {
	nstest.RequireRoot(t)
	claimed, claimedSum := helperBin(t, "tg-claimed")
	img, imgSum := helperBin(t, "tg-image")
	// Make the image's bytes differ from the claimed file's (an ELF runs
	// with bytes appended).
	f, err := os.OpenFile(img, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteString("not the claimed program")
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	imgSum = hex.EncodeToString(sum[:])
	if imgSum == claimedSum {
		t.Fatal("image and claimed program have the same sha256")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	modes(t, func(t *testing.T, o Options) {
		a := newAttributor(t, o)
		srv := tcpServer(t, "127.0.0.1:0")
		c, line := startHelperAttr(t, self, "bind-exec", &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS}, img, claimed, srv.String())
		local, remote := addrs(t, line)
		// What the namespace shows from outside: the claimed path.
		if l, err := os.Readlink("/proc/" + strconv.Itoa(c.cmd.Process.Pid) + "/exe"); err != nil || l != claimed {
			t.Fatalf("exe link %q (%v), want the claimed %q", l, err, claimed)
		}
		p, found := lookup(t, a, Query{Proto: protoTCP, Local: local, Remote: remote, UID: -1, GID: -1})
		if !found {
			t.Fatalf("not found: %+v", p)
		}
		if p.PID != c.cmd.Process.Pid {
			t.Fatalf("pid %d, want the helper's %d", p.PID, c.cmd.Process.Pid)
		}
		if p.Exe != "" || p.ExeClaimed != claimed || p.ExeSHA256 != imgSum {
			t.Errorf("exe %q claimed %q sha256 %s; want \"\", %q, the image's %s (the claimed file's is %s)",
				p.Exe, p.ExeClaimed, p.ExeSHA256, claimed, imgSum, claimedSum)
		}
		if want := claimed + " tcp-connect " + srv.String(); p.Cmdline != want {
			t.Errorf("cmdline %q, want %q", p.Cmdline, want)
		}
		// Nothing leaked into our namespace: the path is still the
		// claimed file here.
		b, err := os.ReadFile(claimed)
		if err != nil {
			t.Fatal(err)
		}
		if s := sha256.Sum256(b); hex.EncodeToString(s[:]) != claimedSum {
			t.Error("the bind mount is visible outside the helper's namespace")
		}
	})
}
