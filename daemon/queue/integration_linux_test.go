package queue

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tollgate-fw/tollgate/daemon/packet"
	"github.com/tollgate-fw/tollgate/internal/nstest"
	"github.com/tollgate-fw/tollgate/internal/proctest"
)

// wait is the deadline for anything the kernel should do at once. Nothing
// asserts on time: a test that reaches it has failed.
const wait = 10 * time.Second

const (
	rejectBit = 0x100000
	nobody    = 65534
)

// harness is an open queue whose handler hands packets to the test through
// a buffered channel (it never blocks the reader; an overflow fails the test).
type harness struct {
	q        *Queue
	pkts     chan Packet
	overflow atomic.Int64
	log      *logBuffer
}

func openHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	log, buf := newLogger()
	cfg.Logger = log
	h := &harness{pkts: make(chan Packet, 4096), log: buf}
	ctx, cancel := context.WithCancel(context.Background())
	q, err := Open(ctx, cfg, func(p Packet) {
		select {
		case h.pkts <- p:
		default:
			h.overflow.Add(1)
		}
	})
	if err != nil {
		cancel()
		t.Fatalf("Open queue %d: %v", cfg.Num, err)
	}
	h.q = q
	t.Cleanup(func() {
		cancel()
		if err := q.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if n := h.overflow.Load(); n != 0 {
			t.Errorf("test channel overflowed %d times", n)
		}
		if t.Failed() {
			t.Logf("queue log:\n%s", buf)
		}
	})
	if want := FlagUIDGID | FlagGSO; q.Flags()&want != want {
		t.Errorf("Flags() = %v, want at least %v on this kernel", q.Flags(), want)
	}
	return h
}

// next waits for the next queued packet and decodes it.
func (h *harness) next(t *testing.T) (Packet, packet.Packet) {
	t.Helper()
	select {
	case p := <-h.pkts:
		var d packet.Packet
		if err := packet.Decode(p.Payload, &d); err != nil {
			t.Fatalf("decode queued packet %d (%d bytes): %v", p.ID, len(p.Payload), err)
		}
		return p, d
	case <-time.After(wait):
		t.Fatalf("no packet queued within %v", wait)
		return Packet{}, packet.Packet{}
	}
}

// rule appends a rule to OUTPUT with iptables (v4) or ip6tables (v6) and
// deletes it when the test ends. The namespace is a throwaway one.
func rule(t *testing.T, v6 bool, spec ...string) {
	t.Helper()
	cmd := "iptables"
	if v6 {
		cmd = "ip6tables"
	}
	if err := run(cmd, append([]string{"-w", "-A", "OUTPUT"}, spec...)...); err != nil {
		t.Fatalf("install rule: %v", err)
	}
	t.Cleanup(func() {
		if err := run(cmd, append([]string{"-w", "-D", "OUTPUT"}, spec...)...); err != nil {
			t.Errorf("delete rule: %v", err)
		}
	})
}

// run runs a command, returning its output in the error when it fails.
func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// queueRule sends UDP traffic to dport into queue num, for both families.
func queueRule(t *testing.T, dport, num uint16) {
	for _, v6 := range []bool{false, true} {
		rule(t, v6, "-p", "udp", "--dport", fmt.Sprint(dport), "-j", "NFQUEUE", "--queue-num", fmt.Sprint(num))
	}
}

// dialUDPAs opens a UDP socket connected to raddr whose file credentials
// (what NFQUEUE reports) are uid/gid: it is created on a locked thread whose
// fsuid/fsgid are switched for the call.
func dialUDPAs(t *testing.T, uid, gid int, raddr netip.AddrPort) *net.UDPConn {
	t.Helper()
	var (
		c   *net.UDPConn
		err error
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // not unlocked on failure: the thread then dies with the goroutine
		if err = unix.Setfsgid(gid); err != nil {
			return
		}
		if err = unix.Setfsuid(uid); err != nil {
			return
		}
		c, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(raddr))
		if uerr, gerr := unix.Setfsuid(0), unix.Setfsgid(0); uerr == nil && gerr == nil {
			if cur, _ := unix.SetfsuidRetUid(-1); cur == 0 {
				runtime.UnlockOSThread()
			}
		}
	}()
	<-done
	if err != nil {
		t.Fatalf("dial %v as uid %d: %v", raddr, uid, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func listenUDP(t *testing.T, addr netip.AddrPort) *net.UDPConn {
	t.Helper()
	l, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
	if err != nil {
		t.Fatalf("listen %v: %v", addr, err)
	}
	t.Cleanup(func() { l.Close() })
	// Room for every datagram a test sends before reading (hundreds):
	// with the default buffer a reader slowed by a loaded machine lost
	// datagrams in CI, and the test waited for them in vain.
	if err := l.SetReadBuffer(4 << 20); err != nil {
		t.Fatalf("listener buffer: %v", err)
	}
	return l
}

// recvUDP reads the next datagram on l, failing the test at the deadline.
func recvUDP(t *testing.T, l *net.UDPConn) string {
	t.Helper()
	buf := make([]byte, 2048)
	if err := l.SetReadDeadline(time.Now().Add(wait)); err != nil {
		t.Fatal(err)
	}
	n, err := l.Read(buf)
	if err != nil {
		t.Fatalf("receive on %v: %v", l.LocalAddr(), err)
	}
	return string(buf[:n])
}

func send(t *testing.T, c *net.UDPConn, msg string) {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("send %q: %v", msg, err)
	}
}

func loIndex(t *testing.T) uint32 {
	t.Helper()
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	return uint32(lo.Index)
}

// noWarnings fails t when the queue logged a warning or error: a healthy
// queue (and go-nfqueue under it) reads without complaint.
func (h *harness) noWarnings(t *testing.T) {
	t.Helper()
	if out := h.log.String(); strings.Contains(out, "level=WARN") || strings.Contains(out, "level=ERROR") {
		t.Errorf("queue logged warnings:\n%s", out)
	}
}

// waitFor waits for cond (proctest.WaitFor) with this package's deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	proctest.WaitFor(t, wait, what, cond)
}

func TestIntegrationQueue(t *testing.T) {
	nstest.RequireNetns(t)
	t.Run("UDPAttributesDropAccept", testUDPAttributesDropAccept)
	t.Run("HeldPacketDelaysNoOther", testHeldPacketDelaysNoOther)
	t.Run("RepeatWithMark", testRepeatWithMark)
	t.Run("QueueFull", testQueueFull)
	t.Run("CloseReleasesQueue", testCloseReleasesQueue)
}

// A queued UDP datagram carries the sender's uid/gid, the output interface
// and a payload that decodes to the right addresses and ports; Drop loses
// it, Accept delivers it; a verdict on an unknown id is logged and reading
// goes on.
func testUDPAttributesDropAccept(t *testing.T) {
	const num, port = 1, 9
	h := openHarness(t, Config{Num: num})
	queueRule(t, port, num)
	lo := loIndex(t)

	sent := 0
	for _, dst := range []netip.AddrPort{
		netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port),
		netip.AddrPortFrom(netip.IPv6Loopback(), port),
	} {
		t.Run(dst.String(), func(t *testing.T) {
			l := listenUDP(t, dst)
			for _, tc := range []struct {
				uid     int
				verdict VerdictKind
				msg     string
			}{
				{0, Drop, "drop-me from root"},
				{nobody, Drop, "drop-me from nobody"},
				{nobody, Accept, "accept-me from nobody"},
				{0, Accept, "accept-me from root"},
			} {
				c := dialUDPAs(t, tc.uid, tc.uid, dst)
				send(t, c, tc.msg)
				sent++
				p, d := h.next(t)
				if p.UID != int64(tc.uid) || p.GID != int64(tc.uid) {
					t.Errorf("%q: uid/gid = %d/%d, want %d/%d", tc.msg, p.UID, p.GID, tc.uid, tc.uid)
				}
				if p.OutDev != lo || p.InDev != 0 {
					t.Errorf("%q: in/out dev = %d/%d, want 0/%d", tc.msg, p.InDev, p.OutDev, lo)
				}
				if p.Time.IsZero() {
					t.Errorf("%q: no time", tc.msg)
				}
				local := netip.MustParseAddrPort(c.LocalAddr().String())
				wantVersion := uint8(4)
				if dst.Addr().Is6() {
					wantVersion = 6
				}
				if d.Version != wantVersion || d.Proto != packet.ProtoUDP || d.Dst != dst.Addr() ||
					d.DstPort != port || d.SrcPort != local.Port() || d.Src != local.Addr() {
					t.Errorf("%q: decoded %v, want udp %v -> %v", tc.msg, &d, local, dst)
				}
				if got := string(d.Payload(p.Payload)); got != tc.msg {
					t.Errorf("payload %q, want %q", got, tc.msg)
				}
				if err := h.q.Verdict(p.ID, Verdict{Kind: tc.verdict}); err != nil {
					t.Fatal(err)
				}
				if tc.verdict == Accept {
					// Dropped datagrams were sent before: had any got
					// through, it would be read first.
					if got := recvUDP(t, l); got != tc.msg {
						t.Fatalf("listener got %q, want %q (a dropped datagram was delivered?)", got, tc.msg)
					}
				}
			}
		})
	}

	// The kernel answers a verdict on an id it does not hold with an error
	// the reader logs; the reader goes on.
	if err := h.q.Accept(0xfffffff0); err != nil {
		t.Fatalf("verdict on unknown id: %v", err)
	}
	waitFor(t, "kernel error on unknown id logged", func() bool {
		return strings.Contains(h.log.String(), "no such file or directory")
	})
	dst := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
	l := listenUDP(t, dst)
	send(t, dialUDPAs(t, 0, 0, dst), "after the error")
	sent++
	p, _ := h.next(t)
	if err := h.q.Accept(p.ID); err != nil {
		t.Fatal(err)
	}
	if got := recvUDP(t, l); got != "after the error" {
		t.Fatalf("listener got %q", got)
	}

	st, err := ReadStats(num)
	if err != nil {
		t.Fatal(err)
	}
	if st.Num != num || st.PortID == 0 || st.CopyMode != 2 || st.CopyRange == 0 || st.CopyRange > DefaultCopyRange ||
		st.IDSequence < uint32(sent) || st.Waiting != 0 || st.QueueDropped != 0 || st.UserDropped != 0 {
		t.Errorf("stats after %d packets, all decided: %+v", sent, st)
	}
}

// Many packets in flight: some are held while the others are decided from
// other goroutines and delivered; then the held ones are decided, out of
// order. Every payload still holds its own datagram at the end.
func testHeldPacketDelaysNoOther(t *testing.T) {
	const num, port, n = 2, 10, 300
	h := openHarness(t, Config{Num: num})
	queueRule(t, port, num)
	dst := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
	l := listenUDP(t, dst)
	c := dialUDPAs(t, 0, 0, dst)

	held := func(i int) bool { return i%10 == 0 }
	var (
		mu      sync.Mutex
		heldIDs = map[int]uint32{}
		all     []Packet
	)
	// Deciders: verdicts come from these goroutines while the reader reads.
	work := make(chan Packet)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for p := range work {
				var d packet.Packet
				if err := packet.Decode(p.Payload, &d); err != nil {
					t.Errorf("decode: %v", err)
					continue
				}
				var i int
				if _, err := fmt.Sscanf(string(d.Payload(p.Payload)), "dgram %d", &i); err != nil {
					t.Errorf("payload %q: %v", d.Payload(p.Payload), err)
					continue
				}
				mu.Lock()
				all = append(all, p)
				if held(i) {
					heldIDs[i] = p.ID
					mu.Unlock()
					continue
				}
				mu.Unlock()
				if err := h.q.Accept(p.ID); err != nil {
					t.Error(err)
				}
			}
		})
	}
	go func() {
		defer close(work)
		for range n {
			select {
			case p := <-h.pkts:
				work <- p
			case <-time.After(wait):
				t.Errorf("fewer than %d packets queued within %v", n, wait)
				return
			}
		}
	}()
	go func() { // the listener is read meanwhile, so its buffer never fills
		for i := range n {
			if _, err := c.Write([]byte(fmt.Sprintf("dgram %d", i))); err != nil {
				t.Errorf("send %d: %v", i, err)
				return
			}
		}
	}()

	// Every datagram not held arrives while the held ones wait.
	var got []string
	for range n - n/10 {
		msg := recvUDP(t, l)
		var i int
		if _, err := fmt.Sscanf(msg, "dgram %d", &i); err != nil || held(i) {
			t.Fatalf("listener got %q while datagrams ending in 0 are held", msg)
		}
		got = append(got, msg)
	}
	wg.Wait()
	mu.Lock()
	if len(heldIDs) != n/10 {
		t.Fatalf("%d held packets, want %d", len(heldIDs), n/10)
	}
	mu.Unlock()
	st, err := ReadStats(num)
	if err != nil {
		t.Fatal(err)
	}
	if st.Waiting != n/10 {
		t.Errorf("kernel holds %d packets, want %d", st.Waiting, n/10)
	}

	// Decide the held ones from another goroutine, last first.
	go func() {
		for i := n - 10; i >= 0; i -= 10 {
			if err := h.q.Accept(heldIDs[i]); err != nil {
				t.Error(err)
			}
		}
	}()
	var late []string
	for range n / 10 {
		late = append(late, recvUDP(t, l))
	}
	for _, msg := range late {
		var i int
		if _, err := fmt.Sscanf(msg, "dgram %d", &i); err != nil || !held(i) {
			t.Fatalf("after releasing held packets got %q", msg)
		}
	}
	got = append(got, late...)
	slices.Sort(got)
	if got = slices.Compact(got); len(got) != n {
		t.Fatalf("listener got %d distinct datagrams, want %d", len(got), n)
	}

	// Payloads handed to the handler are its own: none was overwritten by
	// later reads.
	for _, p := range all {
		var d packet.Packet
		if err := packet.Decode(p.Payload, &d); err != nil {
			t.Fatalf("packet %d payload no longer decodes: %v", p.ID, err)
		}
		if !strings.HasPrefix(string(d.Payload(p.Payload)), "dgram ") {
			t.Fatalf("packet %d payload changed: %q", p.ID, d.Payload(p.Payload))
		}
	}
	h.noWarnings(t)
}

// Reject is a mark and NF_REPEAT: a rule before the queue rule rejects the
// marked packet and connect fails with ECONNREFUSED. The mark given is the
// whole new mark: repeating with a mark that drops the socket's own bit
// queues the packet again with exactly that mark.
func testRepeatWithMark(t *testing.T) {
	const num, rejectPort, repeatPort = 3, 7, 8
	h := openHarness(t, Config{Num: num})
	for _, v6 := range []bool{false, true} {
		rule(t, v6, "-p", "tcp", "-m", "mark", "--mark", fmt.Sprintf("%#x/%#x", rejectBit, rejectBit), "-j", "REJECT")
		for _, port := range []int{rejectPort, repeatPort} {
			rule(t, v6, "-p", "tcp", "--syn", "--dport", fmt.Sprint(port), "-j", "NFQUEUE", "--queue-num", fmt.Sprint(num))
		}
	}
	const sockMark, newMark = 0x1, 0x200
	var (
		mu    sync.Mutex
		marks = map[uint16][]uint32{} // port -> marks seen on SYNs
	)
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			var p Packet
			select {
			case p = <-h.pkts:
			case <-stop:
				return
			}
			var d packet.Packet
			if err := packet.Decode(p.Payload, &d); err != nil || !d.IsTCPSYN() {
				t.Errorf("queued %v (%v), want a TCP SYN", &d, err)
				h.q.Drop(p.ID)
				continue
			}
			mu.Lock()
			marks[d.DstPort] = append(marks[d.DstPort], p.Mark)
			mu.Unlock()
			var err error
			switch {
			case d.DstPort == rejectPort:
				err = h.q.RepeatWithMark(p.ID, p.Mark|rejectBit)
			case p.Mark == newMark:
				err = h.q.Accept(p.ID)
			default:
				err = h.q.RepeatWithMark(p.ID, newMark)
			}
			if err != nil {
				t.Error(err)
			}
		}
	}()
	dialer := net.Dialer{Timeout: wait, Control: func(network, address string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, sockMark)
		}); err != nil {
			return err
		}
		return serr
	}}

	for _, ip := range []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()} {
		for _, port := range []uint16{rejectPort, repeatPort} {
			l, err := net.Listen("tcp", netip.AddrPortFrom(ip, port).String())
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
		}
		c, err := dialer.Dial("tcp", netip.AddrPortFrom(ip, rejectPort).String())
		if err == nil {
			c.Close()
			t.Fatalf("connect to %v with a listener, rejected by mark: connected", ip)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("connect to %v rejected by mark: %v, want ECONNREFUSED", ip, err)
		}
		c, err = dialer.Dial("tcp", netip.AddrPortFrom(ip, repeatPort).String())
		if err != nil {
			t.Fatalf("connect to %v after repeat and accept: %v", ip, err)
		}
		c.Close()
	}
	close(stop)
	<-stopped
	h.noWarnings(t)
	mu.Lock()
	defer mu.Unlock()
	for _, m := range marks[rejectPort] {
		if m != sockMark {
			t.Errorf("reject port: SYN queued with mark %#x, want the socket's %#x only", m, sockMark)
		}
	}
	// Each repeat-port SYN is seen twice: with the socket's mark, then with
	// exactly the mark set by the verdict (not OR-ed with the old one).
	var first, again int
	for _, m := range marks[repeatPort] {
		switch m {
		case sockMark:
			first++
		case newMark:
			again++
		default:
			t.Errorf("repeat port: SYN queued with mark %#x, want %#x or %#x", m, sockMark, newMark)
		}
	}
	if first < 2 || first != again {
		t.Errorf("repeat port marks = %#x, want each SYN with %#x then %#x, one per family", marks[repeatPort], sockMark, newMark)
	}
	if len(marks[rejectPort]) < 2 {
		t.Errorf("reject port saw %d SYNs, want one per family", len(marks[rejectPort]))
	}
}

// With one packet held and a queue of one: fail-open accepts the next
// packet unseen; fail-closed drops it and the kernel counts it.
func testQueueFull(t *testing.T) {
	for _, failOpen := range []bool{true, false} {
		t.Run(fmt.Sprintf("FailOpen=%v", failOpen), func(t *testing.T) {
			num, port := uint16(4), uint16(11)
			if !failOpen {
				num, port = 5, 12
			}
			h := openHarness(t, Config{Num: num, MaxQueueLen: 1, FailOpen: failOpen})
			if got := h.q.Flags()&FlagFailOpen != 0; got != failOpen {
				t.Fatalf("fail-open flag in effect = %v, want %v", got, failOpen)
			}
			queueRule(t, port, num)
			dst := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
			l := listenUDP(t, dst)
			c := dialUDPAs(t, 0, 0, dst)

			send(t, c, "first")
			first, _ := h.next(t)
			if _, err := c.Write([]byte("second")); err != nil && failOpen {
				t.Fatalf("send second: %v", err)
			} // fail-closed: the kernel may report the drop to the sender
			if failOpen {
				if got := recvUDP(t, l); got != "second" {
					t.Fatalf("listener got %q, want the second datagram accepted unqueued", got)
				}
			} else {
				waitFor(t, "queue-full drop counted", func() bool {
					st, err := ReadStats(num)
					return err == nil && st.QueueDropped == 1
				})
			}
			if err := h.q.Accept(first.ID); err != nil {
				t.Fatal(err)
			}
			if got := recvUDP(t, l); got != "first" {
				t.Fatalf("listener got %q, want the held first datagram", got)
			}
			send(t, c, "third")
			third, _ := h.next(t)
			if err := h.q.Accept(third.ID); err != nil {
				t.Fatal(err)
			}
			if got := recvUDP(t, l); got != "third" {
				t.Fatalf("listener got %q, want third (second was dropped)", got)
			}
			st, err := ReadStats(num)
			if err != nil {
				t.Fatal(err)
			}
			if wantDropped := uint32(map[bool]int{true: 0, false: 1}[failOpen]); st.QueueDropped != wantDropped || st.IDSequence != 2 {
				t.Errorf("stats %+v, want %d dropped and 2 packets queued", st, wantDropped)
			}
		})
	}
}

// Close releases the queue in the kernel, also with a packet held and the
// reader already stopped by its context; verdicts after Close fail with
// ErrClosed.
func testCloseReleasesQueue(t *testing.T) {
	const num, port = 6, 13
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pkts := make(chan Packet, 16)
	q, err := Open(ctx, Config{Num: num}, func(p Packet) { pkts <- p })
	if err != nil {
		t.Fatal(err)
	}
	queueRule(t, port, num)
	if _, err := ReadStats(num); err != nil {
		t.Fatalf("stats of the open queue: %v", err)
	}
	dst := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
	send(t, dialUDPAs(t, 0, 0, dst), "held at close")
	var held Packet
	select {
	case held = <-pkts:
	case <-time.After(wait):
		t.Fatal("packet not queued")
	}
	cancel() // the reader stops; the queue stays bound until Close
	if err := q.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := ReadStats(num); !errors.Is(err, ErrNoQueue) {
		t.Fatalf("stats after Close: %v, want ErrNoQueue", err)
	}
	if err := q.Accept(held.ID); !errors.Is(err, ErrClosed) {
		t.Fatalf("verdict after Close: %v, want ErrClosed", err)
	}
}

// BenchmarkQueueRoundTrip measures one UDP datagram over loopback through
// the queue: sent, queued, read, accepted from the handler, delivered.
// Needs root (it runs in the test namespace); skipped otherwise.
func BenchmarkQueueRoundTrip(b *testing.B) {
	if !nstest.IsRoot() || !nstest.InNetns() {
		b.Skip("needs root: runs in a throwaway network namespace")
	}
	const num, port = 20, 20
	var q *Queue
	q, err := Open(context.Background(), Config{Num: num}, func(p Packet) {
		if err := q.Accept(p.ID); err != nil {
			b.Error(err)
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	for _, v6 := range []bool{false, true} {
		cmd := map[bool]string{false: "iptables", true: "ip6tables"}[v6]
		spec := []string{"OUTPUT", "-p", "udp", "--dport", fmt.Sprint(port), "-j", "NFQUEUE", "--queue-num", fmt.Sprint(num)}
		if err := run(cmd, append([]string{"-w", "-A"}, spec...)...); err != nil {
			b.Fatal(err)
		}
		defer run(cmd, append([]string{"-w", "-D"}, spec...)...)
	}
	dst := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
	l, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(dst))
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dst))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	msg, buf := make([]byte, 64), make([]byte, 2048)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Write(msg); err != nil {
			b.Fatal(err)
		}
		if err := l.SetReadDeadline(time.Now().Add(wait)); err != nil {
			b.Fatal(err)
		}
		if _, err := l.Read(buf); err != nil {
			b.Fatal(err)
		}
	}
}
