package netfilter

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tollgate-fw/tollgate/internal/netns"
	"github.com/tollgate-fw/tollgate/internal/nstest"
	"github.com/tollgate-fw/tollgate/internal/proctest"
)

// Queue numbers used by the integration tests. Nothing reads them: the
// tests see what the kernel does with nobody at the other end.
const (
	itQueue    = 7467
	itDNSQueue = 7468
	itMark     = 0x100000
)

// waitLimit bounds every wait on a condition; it is a deadline for a
// failure message, never a measure.
const waitLimit = 15 * time.Second

// backendCommands are the iptables commands behind each backend.
var backendCommands = map[string][2]string{
	BackendNFT:    {"iptables-nft", "ip6tables-nft"},
	BackendLegacy: {"iptables-legacy", "ip6tables-legacy"},
}

// integration prepares a root test inside the namespace made by TestMain,
// with the legacy xtables lock moved to a private file, so no test ever
// takes (or waits on) the machine's /run/xtables.lock, which `ip netns exec`
// shares with the host.
func integration(t *testing.T) {
	t.Helper()
	nstest.RequireNetns(t)
	t.Setenv("XTABLES_LOCKFILE", filepath.Join(t.TempDir(), "xtables.lock"))
}

// forEachBackend runs f for the nft and the legacy backend, skipping one
// whose commands are not installed.
func forEachBackend(t *testing.T, f func(t *testing.T, backend string, cmd4, cmd6 string)) {
	for _, b := range []string{BackendNFT, BackendLegacy} {
		t.Run(b, func(t *testing.T) {
			cmds := backendCommands[b]
			for _, c := range cmds {
				if _, err := exec.LookPath(c); err != nil {
					t.Skipf("%s not installed", c)
				}
			}
			f(t, b, cmds[0], cmds[1])
		})
	}
}

// ipt runs an iptables command and returns its standard output.
func ipt(t testing.TB, cmd string, args ...string) string {
	t.Helper()
	out, err := exec.Command(cmd, append([]string{"-w", "5"}, args...)...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("%s %s: %v: %s", cmd, strings.Join(args, " "), err, ee.Stderr)
		}
		t.Fatalf("%s %s: %v", cmd, strings.Join(args, " "), err)
	}
	return string(out)
}

// itManager makes a Manager and makes sure its rules go at the end of the
// test, even when it fails.
func itManager(t *testing.T, opts Options) *Manager {
	t.Helper()
	m, err := New(opts, testLogger(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := m.Remove(); err != nil {
			t.Errorf("cleanup Remove: %v", err)
		}
	})
	return m
}

// The rules of the reference configuration (inbound, DNS answers queued,
// fail-closed, loopback not intercepted) as `iptables -S CHAIN` prints them.
var wantRules = map[string]map[string]string{
	"v4": {
		"OUTPUT": "-P OUTPUT ACCEPT\n-A OUTPUT -j TOLLGATE-OUT\n",
		"INPUT":  "-P INPUT ACCEPT\n-A INPUT -j TOLLGATE-IN\n",
		ChainOut: `-N TOLLGATE-OUT
-A TOLLGATE-OUT -p tcp -m mark --mark 0x100000/0x100000 -j REJECT --reject-with tcp-reset
-A TOLLGATE-OUT -m mark --mark 0x100000/0x100000 -j REJECT --reject-with icmp-port-unreachable
-A TOLLGATE-OUT -o lo -j RETURN
-A TOLLGATE-OUT -p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -j NFQUEUE --queue-num 7467
-A TOLLGATE-OUT -m conntrack --ctstate NEW -j NFQUEUE --queue-num 7467
`,
		ChainIn: `-N TOLLGATE-IN
-A TOLLGATE-IN -p tcp -m mark --mark 0x100000/0x100000 -j REJECT --reject-with tcp-reset
-A TOLLGATE-IN -m mark --mark 0x100000/0x100000 -j REJECT --reject-with icmp-port-unreachable
-A TOLLGATE-IN -p udp -m udp --sport 53 -m conntrack ! --ctstate NEW -j NFQUEUE --queue-num 7468 --queue-bypass
-A TOLLGATE-IN -i lo -j RETURN
-A TOLLGATE-IN -p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -j NFQUEUE --queue-num 7467
-A TOLLGATE-IN -m conntrack --ctstate NEW -j NFQUEUE --queue-num 7467
`,
	},
	"v6": {
		"OUTPUT": "-P OUTPUT ACCEPT\n-A OUTPUT -j TOLLGATE-OUT\n",
		"INPUT":  "-P INPUT ACCEPT\n-A INPUT -j TOLLGATE-IN\n",
		ChainOut: `-N TOLLGATE-OUT
-A TOLLGATE-OUT -p tcp -m mark --mark 0x100000/0x100000 -j REJECT --reject-with tcp-reset
-A TOLLGATE-OUT -m mark --mark 0x100000/0x100000 -j REJECT --reject-with icmp6-port-unreachable
-A TOLLGATE-OUT -o lo -j RETURN
-A TOLLGATE-OUT -p ipv6-icmp -m icmp6 ! --icmpv6-type 128 -j RETURN
-A TOLLGATE-OUT -p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -j NFQUEUE --queue-num 7467
-A TOLLGATE-OUT -m conntrack --ctstate NEW -j NFQUEUE --queue-num 7467
`,
		ChainIn: `-N TOLLGATE-IN
-A TOLLGATE-IN -p tcp -m mark --mark 0x100000/0x100000 -j REJECT --reject-with tcp-reset
-A TOLLGATE-IN -m mark --mark 0x100000/0x100000 -j REJECT --reject-with icmp6-port-unreachable
-A TOLLGATE-IN -p udp -m udp --sport 53 -m conntrack ! --ctstate NEW -j NFQUEUE --queue-num 7468 --queue-bypass
-A TOLLGATE-IN -i lo -j RETURN
-A TOLLGATE-IN -p ipv6-icmp -m icmp6 ! --icmpv6-type 128 -j RETURN
-A TOLLGATE-IN -p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -j NFQUEUE --queue-num 7467
-A TOLLGATE-IN -m conntrack --ctstate NEW -j NFQUEUE --queue-num 7467
`,
	},
}

func referenceOptions(backend string) Options {
	dns := uint16(itDNSQueue)
	return Options{QueueNum: itQueue, DNSQueueNum: &dns, Inbound: true, RejectMark: itMark, Backend: backend}
}

// checkReferenceRules compares every chain we touch with wantRules.
func checkReferenceRules(t *testing.T, cmd4, cmd6 string) {
	t.Helper()
	for fam, cmd := range map[string]string{"v4": cmd4, "v6": cmd6} {
		for chain, want := range wantRules[fam] {
			if got := ipt(t, cmd, "-S", chain); got != want {
				t.Errorf("%s -S %s:\n%s\nwant:\n%s", cmd, chain, got, want)
			}
		}
	}
}

func TestIntegrationInstallAndRemove(t *testing.T) {
	integration(t)
	forEachBackend(t, func(t *testing.T, backend, cmd4, cmd6 string) {
		before4, before6 := ipt(t, cmd4, "-S"), ipt(t, cmd6, "-S")
		m := itManager(t, referenceOptions(backend))

		if ok, err := m.Installed(); err != nil || ok {
			t.Fatalf("Installed() before Install = %v, %v", ok, err)
		}
		if err := m.Install(); err != nil {
			t.Fatalf("Install: %v", err)
		}
		checkReferenceRules(t, cmd4, cmd6)
		t.Logf("%s -S after Install:\n%s", cmd4, ipt(t, cmd4, "-S"))
		t.Logf("%s -S after Install:\n%s", cmd6, ipt(t, cmd6, "-S"))
		if ok, err := m.Installed(); err != nil || !ok {
			t.Fatalf("Installed() after Install = %v, %v", ok, err)
		}

		// Again: nothing doubles.
		if err := m.Install(); err != nil {
			t.Fatalf("second Install: %v", err)
		}
		checkReferenceRules(t, cmd4, cmd6)

		// A crashed run with other options, plus duplicate, misplaced and
		// decorated jumps, then a start with the reference options.
		other := itManager(t, Options{QueueNum: 1, FailOpen: true, InterceptLoopback: true, Inbound: true, Backend: backend})
		if err := other.Install(); err != nil {
			t.Fatalf("Install with other options: %v", err)
		}
		for _, cmd := range []string{cmd4, cmd6} {
			ipt(t, cmd, "-A", "OUTPUT", "-j", ChainOut)
			ipt(t, cmd, "-I", "INPUT", "1", "-p", "tcp", "-j", ChainIn)
			ipt(t, cmd, "-A", ChainOut, "-j", "DROP")
		}
		if err := m.Install(); err != nil {
			t.Fatalf("Install over stale chains: %v", err)
		}
		checkReferenceRules(t, cmd4, cmd6)

		// Inbound off and no DNS queue: the stale inbound chain goes.
		outOnly := itManager(t, Options{QueueNum: itQueue, Backend: backend})
		if err := outOnly.Install(); err != nil {
			t.Fatalf("Install outbound only: %v", err)
		}
		for _, cmd := range []string{cmd4, cmd6} {
			if all := ipt(t, cmd, "-S"); strings.Contains(all, ChainIn) || !strings.Contains(all, "-A OUTPUT -j TOLLGATE-OUT\n") {
				t.Errorf("%s -S with inbound off:\n%s", cmd, all)
			}
		}

		for range 2 {
			if err := m.Remove(); err != nil {
				t.Fatalf("Remove: %v", err)
			}
			if got := ipt(t, cmd4, "-S"); got != before4 {
				t.Errorf("%s -S after Remove:\n%s\nwant as before:\n%s", cmd4, got, before4)
			}
			if got := ipt(t, cmd6, "-S"); got != before6 {
				t.Errorf("%s -S after Remove:\n%s\nwant as before:\n%s", cmd6, got, before6)
			}
		}
		if ok, err := m.Installed(); err != nil || ok {
			t.Fatalf("Installed() after Remove = %v, %v", ok, err)
		}
	})
}

// TestIntegrationAutoBackend: "auto" means the system's iptables and
// ip6tables, whatever they point to.
func TestIntegrationAutoBackend(t *testing.T) {
	integration(t)
	m := itManager(t, referenceOptions(BackendAuto))
	if err := m.Install(); err != nil {
		t.Fatalf("Install: %v", err)
	}
	checkReferenceRules(t, "iptables", "ip6tables")
	if !m.IPv6() {
		t.Error("IPv6 not covered although the namespace has IPv6")
	}
}

// holdLock takes the xtables lock file named by XTABLES_LOCKFILE the way
// another iptables would, and returns its inode and the release function.
func holdLock(t *testing.T) (inode uint64, release func()) {
	t.Helper()
	path := os.Getenv("XTABLES_LOCKFILE")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	released := false
	release = func() {
		if !released {
			released = true
			f.Close()
		}
	}
	t.Cleanup(release)
	return st.Ino, release
}

// lockWaiters counts the processes blocked in flock on the inode, from
// /proc/locks ("1: -> FLOCK  ADVISORY  WRITE 8477 fe:00:9977918 0 EOF").
func lockWaiters(t *testing.T, inode uint64) int {
	t.Helper()
	f, err := os.Open("/proc/locks")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 7 || fields[1] != "->" {
			continue
		}
		if strings.HasSuffix(fields[6], ":"+strconv.FormatUint(inode, 10)) {
			n++
		}
	}
	return n
}

// waitFor waits for cond (proctest.WaitFor) with this package's deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	proctest.WaitFor(t, waitLimit, what, cond)
}

// TestIntegrationXtablesLock: with the legacy backend, Install waits for
// another holder of the xtables lock and then succeeds; past LockWait it
// fails with an error instead of hanging. The nft backend takes no lock.
func TestIntegrationXtablesLock(t *testing.T) {
	integration(t)
	if _, err := exec.LookPath("iptables-legacy"); err != nil {
		t.Skip("iptables-legacy not installed")
	}

	t.Run("waits then succeeds", func(t *testing.T) {
		inode, release := holdLock(t)
		m := itManager(t, Options{QueueNum: itQueue, Backend: BackendLegacy, LockWait: waitLimit})
		done := make(chan error, 1)
		go func() { done <- m.Install() }()
		waitFor(t, "iptables-legacy to block on the lock", func() bool { return lockWaiters(t, inode) > 0 })
		select {
		case err := <-done:
			t.Fatalf("Install returned while the lock was held: %v", err)
		default:
		}
		release()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Install after the lock was released: %v", err)
			}
		case <-time.After(waitLimit):
			t.Fatal("Install did not return after the lock was released")
		}
		if ok, err := m.Installed(); err != nil || !ok {
			t.Fatalf("Installed() = %v, %v", ok, err)
		}
	})

	t.Run("gives up after LockWait", func(t *testing.T) {
		_, _ = holdLock(t)
		m, err := New(Options{QueueNum: itQueue, Backend: BackendLegacy, LockWait: time.Second}, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- m.Install() }()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "xtables lock") {
				t.Fatalf("Install with the lock held: %v, want a lock error", err)
			}
			t.Logf("error: %v", err)
		case <-time.After(waitLimit):
			t.Fatal("Install did not give up")
		}
	})

	t.Run("nft takes no lock", func(t *testing.T) {
		if _, err := exec.LookPath("iptables-nft"); err != nil {
			t.Skip("iptables-nft not installed")
		}
		_, _ = holdLock(t)
		m := itManager(t, Options{QueueNum: itQueue, Backend: BackendNFT, LockWait: time.Second})
		if err := m.Install(); err != nil {
			t.Fatalf("Install with the xtables lock held: %v", err)
		}
	})
}

// ---- traffic ----

// Addresses of the link between the test namespace ("here") and a peer.
const (
	here4 = "10.233.0.1"
	peer4 = "10.233.0.2"
	here6 = "fd00:7469::1"
	peer6 = "fd00:7469::2"
)

// newPeer makes a second namespace joined to this one by veth and returns
// its name.
func newPeer(t *testing.T) string {
	t.Helper()
	peer, err := netns.Create("nfpeer")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { netns.Delete(peer) })
	if err := netns.Run("ip", "link", "add", "tgnf0", "type", "veth", "peer", "name", "tgnf1", "netns", peer); err != nil {
		t.Fatal(err)
	}
	// Deleting our end removes both at once; the peer namespace itself may
	// linger in the kernel a little after its name is gone.
	t.Cleanup(func() { netns.Run("ip", "link", "del", "tgnf0") })
	for _, s := range [][]string{
		{"ip", "addr", "add", here4 + "/24", "dev", "tgnf0"},
		{"ip", "addr", "add", here6 + "/64", "dev", "tgnf0", "nodad"},
		{"ip", "link", "set", "tgnf0", "up"},
		{"ip", "-n", peer, "addr", "add", peer4 + "/24", "dev", "tgnf1"},
		{"ip", "-n", peer, "addr", "add", peer6 + "/64", "dev", "tgnf1", "nodad"},
		{"ip", "-n", peer, "link", "set", "tgnf1", "up"},
	} {
		if err := netns.Run(s[0], s[1:]...); err != nil {
			t.Fatal(err)
		}
	}
	return peer
}

// runInNetns runs fn on an OS thread that joined the named namespace;
// sockets made there stay in it. The thread is never given back to the
// runtime (the goroutine ends locked), so nothing else ever runs in that
// namespace by accident. ns "" runs fn here.
func runInNetns(ns string, fn func()) error {
	if ns == "" {
		fn()
		return nil
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		f, err := os.Open("/run/netns/" + ns)
		if err != nil {
			errc <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		fn()
		errc <- nil
	}()
	return <-errc
}

// inNetns is runInNetns for the test goroutine.
func inNetns(t *testing.T, ns string, fn func()) {
	t.Helper()
	if err := runInNetns(ns, fn); err != nil {
		t.Fatal(err)
	}
}

// listenTCP listens in ns on addr and accepts (and closes) connections
// until the test ends.
func listenTCP(t *testing.T, ns, addr string) string {
	t.Helper()
	var ln net.Listener
	var err error
	inNetns(t, ns, func() { ln, err = net.Listen("tcp", addr) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln.Addr().String()
}

func markControl(mark int) func(string, string, syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, mark)
		}); err != nil {
			return err
		}
		return serr
	}
}

// dial connects from ns to addr in the background; the result arrives on
// the returned channel. cancel stops a connect that hangs.
func dial(t *testing.T, ns, network, addr string, mark int) (result <-chan error, cancel func()) {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	t.Cleanup(cancel)
	res := make(chan error, 1)
	d := net.Dialer{}
	if mark != 0 {
		d.Control = markControl(mark)
	}
	go func() {
		if err := runInNetns(ns, func() {
			c, err := d.DialContext(ctx, network, addr)
			if err == nil {
				c.Close()
			}
			res <- err
		}); err != nil {
			res <- err
		}
	}()
	return res, cancel
}

func mustConnect(t *testing.T, ns, addr string) {
	t.Helper()
	res, _ := dial(t, ns, "tcp", addr, 0)
	if err := <-res; err != nil {
		t.Errorf("connect from %q to %s: %v", ns, addr, err)
	}
}

// counter reads the packet counter of the one rule in chain whose text
// (without counters) contains match.
func counter(t *testing.T, cmd, chain, match string) uint64 {
	t.Helper()
	var found []uint64
	for _, line := range strings.Split(ipt(t, cmd, "-v", "-S", chain), "\n") {
		w := strings.Fields(line)
		i := slices.Index(w, "-c")
		if i < 0 || i+2 >= len(w) {
			continue
		}
		n, err := strconv.ParseUint(w[i+1], 10, 64)
		if err != nil {
			t.Fatalf("counter in %q: %v", line, err)
		}
		if strings.Contains(strings.Join(slices.Delete(w, i, i+3), " "), match) {
			found = append(found, n)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s -v -S %s: %d rules match %q", cmd, chain, len(found), match)
	}
	return found[0]
}

// The connection queue's two rules: every TCP SYN, and anything else NEW.
const (
	queueMatch = "--ctstate NEW -j NFQUEUE --queue-num 7467"
	synMatch   = "--tcp-flags FIN,SYN,RST,ACK SYN -j NFQUEUE --queue-num 7467"
)

// queued is what the connection queue's rules of chain counted.
func queued(t *testing.T, cmd, chain string) uint64 {
	t.Helper()
	return counter(t, cmd, chain, queueMatch) + counter(t, cmd, chain, synMatch)
}

// mustBeQueuedAndDropped connects from ns to addr and checks that the
// connection-queue rule of chain counted the SYN and that the connection
// never came up: with nobody reading the queue and no bypass, the kernel
// drops the packet as it is queued.
func mustBeQueuedAndDropped(t *testing.T, cmd, chain, ns, addr string) {
	t.Helper()
	base := queued(t, cmd, chain)
	res, cancel := dial(t, ns, "tcp", addr, 0)
	waitFor(t, fmt.Sprintf("%s %s to queue the SYN to %s", cmd, chain, addr), func() bool {
		return queued(t, cmd, chain) > base
	})
	select {
	case err := <-res:
		t.Fatalf("connect from %q to %s ended (%v) while its SYN was dropped", ns, addr, err)
	default:
	}
	cancel()
	if err := <-res; err == nil {
		t.Fatalf("connect from %q to %s succeeded although nobody read the queue", ns, addr)
	}
}

func TestIntegrationTraffic(t *testing.T) {
	integration(t)
	peer := newPeer(t)
	peerTCP4 := listenTCP(t, peer, net.JoinHostPort(peer4, "0"))
	peerTCP6 := listenTCP(t, peer, net.JoinHostPort(peer6, "0"))
	hereTCP4 := listenTCP(t, "", net.JoinHostPort(here4, "0"))
	hereTCP6 := listenTCP(t, "", net.JoinHostPort(here6, "0"))
	lo4 := listenTCP(t, "", "127.0.0.1:0")
	lo6 := listenTCP(t, "", "[::1]:0")

	forEachBackend(t, func(t *testing.T, backend, cmd4, cmd6 string) {
		install := func(t *testing.T, o Options) {
			t.Helper()
			o.Backend = backend
			m := itManager(t, o)
			if err := m.Install(); err != nil {
				t.Fatalf("Install: %v", err)
			}
		}

		t.Run("fail-closed", func(t *testing.T) {
			install(t, referenceOptions(backend))
			mustBeQueuedAndDropped(t, cmd4, ChainOut, "", peerTCP4)
			mustBeQueuedAndDropped(t, cmd6, ChainOut, "", peerTCP6)
			mustBeQueuedAndDropped(t, cmd4, ChainIn, peer, hereTCP4)
			// The peer resolves our address by neighbour discovery before
			// its SYN can arrive: this SYN reaching the queue shows that NDP
			// passes our chains in both directions.
			mustBeQueuedAndDropped(t, cmd6, ChainIn, peer, hereTCP6)
			// Loopback is not intercepted.
			mustConnect(t, "", lo4)
			mustConnect(t, "", lo6)
		})

		t.Run("fail-closed intercepting loopback", func(t *testing.T) {
			install(t, Options{QueueNum: itQueue, InterceptLoopback: true})
			mustBeQueuedAndDropped(t, cmd4, ChainOut, "", lo4)
			mustBeQueuedAndDropped(t, cmd6, ChainOut, "", lo6)
		})

		t.Run("fail-open", func(t *testing.T) {
			install(t, Options{QueueNum: itQueue, Inbound: true, InterceptLoopback: true, FailOpen: true})
			for _, c := range []struct{ ns, addr string }{
				{"", peerTCP4}, {"", peerTCP6}, {peer, hereTCP4}, {peer, hereTCP6}, {"", lo4}, {"", lo6},
			} {
				mustConnect(t, c.ns, c.addr)
			}
			// The packets did go through the queue rule (and were let
			// through by the bypass), not around it.
			if queued(t, cmd4, ChainOut) == 0 || queued(t, cmd6, ChainIn) == 0 {
				t.Error("fail-open connections did not pass the queue rule")
			}
		})

		t.Run("reject mark", func(t *testing.T) {
			install(t, referenceOptions(backend))
			for _, addr := range []string{peerTCP4, peerTCP6} {
				res, _ := dial(t, "", "tcp", addr, itMark)
				if err := <-res; !errors.Is(err, syscall.ECONNREFUSED) {
					t.Errorf("marked TCP connect to %s: %v, want connection refused (reset)", addr, err)
				}
			}
			for _, host := range []string{peer4, peer6} {
				err := markedUDPExchange(t, net.JoinHostPort(host, "9"))
				if !errors.Is(err, syscall.ECONNREFUSED) {
					t.Errorf("marked UDP to %s: %v, want connection refused (port unreachable)", host, err)
				}
			}
		})

		t.Run("DNS answers", func(t *testing.T) {
			install(t, referenceOptions(backend))
			dnsMatch := "--sport 53 -m conntrack ! --ctstate NEW -j NFQUEUE --queue-num 7468"
			for _, c := range []struct{ cmd, resolver string }{{cmd4, "127.0.0.1:53"}, {cmd6, "[::1]:53"}} {
				base := counter(t, c.cmd, ChainIn, dnsMatch)
				udpEcho(t, "", c.resolver)
				if err := udpExchange(t, c.resolver); err != nil {
					t.Fatalf("query to stub resolver %s: %v", c.resolver, err)
				}
				if counter(t, c.cmd, ChainIn, dnsMatch) <= base {
					t.Errorf("answer from %s passed without going through the DNS queue rule", c.resolver)
				}
			}
			// A new flow from port 53 is a connection, not an answer.
			for _, c := range []struct{ cmd, from, to string }{{cmd4, peer4, here4}, {cmd6, peer6, here6}} {
				baseDNS, baseNew := counter(t, c.cmd, ChainIn, dnsMatch), counter(t, c.cmd, ChainIn, queueMatch)
				var ln *net.UDPConn
				inNetns(t, "", func() { ln = listenUDP(t, net.JoinHostPort(c.to, "0")) })
				var src *net.UDPConn
				inNetns(t, peer, func() { src = listenUDP(t, net.JoinHostPort(c.from, "53")) })
				if _, err := src.WriteTo([]byte("not an answer"), ln.LocalAddr()); err != nil {
					t.Fatal(err)
				}
				waitFor(t, "the packet from port 53 to reach the connection queue", func() bool {
					return counter(t, c.cmd, ChainIn, queueMatch) > baseNew
				})
				if counter(t, c.cmd, ChainIn, dnsMatch) != baseDNS {
					t.Errorf("a new flow from %s port 53 went to the DNS queue", c.from)
				}
				ln.SetReadDeadline(time.Now())
				if n, _, err := ln.ReadFrom(make([]byte, 64)); err == nil {
					t.Errorf("new flow from port 53 delivered (%d bytes) although fail-closed", n)
				}
			}
		})

		t.Run("removed", func(t *testing.T) {
			m := itManager(t, referenceOptions(backend))
			if err := m.Install(); err != nil {
				t.Fatal(err)
			}
			if err := m.Remove(); err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct{ ns, addr string }{{"", peerTCP4}, {"", peerTCP6}, {peer, hereTCP4}, {peer, hereTCP6}} {
				mustConnect(t, c.ns, c.addr)
			}
		})
	})
}

func listenUDP(t *testing.T, addr string) *net.UDPConn {
	t.Helper()
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.ListenUDP("udp", ua)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// udpEcho answers every datagram to addr (in ns) with the same bytes.
func udpEcho(t *testing.T, ns, addr string) {
	t.Helper()
	var c *net.UDPConn
	inNetns(t, ns, func() { c = listenUDP(t, addr) })
	go func() {
		buf := make([]byte, 512)
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			c.WriteTo(buf[:n], from)
		}
	}()
}

// udpExchange sends one datagram to addr and waits for the echo.
func udpExchange(t *testing.T, addr string) error {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	return exchange(c)
}

// markedUDPExchange sends one datagram to addr from a socket carrying the
// reject mark. The REJECT verdict in OUTPUT is synchronous here (no queue
// in between), so the send itself fails with EPERM; the ICMP port
// unreachable it generated then fails the read with ECONNREFUSED, which is
// what an application sees when the daemon rejects through the queue.
func markedUDPExchange(t *testing.T, addr string) error {
	d := net.Dialer{Control: markControl(itMark)}
	c, err := d.Dial("udp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(waitLimit))
	if _, err := c.Write([]byte("q")); !errors.Is(err, syscall.EPERM) {
		return fmt.Errorf("write: %w, want EPERM", err)
	}
	_, err = c.Read(make([]byte, 16))
	return err
}

func exchange(c net.Conn) error {
	c.SetDeadline(time.Now().Add(waitLimit))
	if _, err := c.Write([]byte("q")); err != nil {
		return err
	}
	_, err := c.Read(make([]byte, 16))
	return err
}

// BenchmarkInstall measures one Install over an existing install (the
// daemon's start after a crash, or a reload): every iteration replaces all
// four chains and checks the jumps, through the iptables commands.
func BenchmarkInstall(b *testing.B) {
	nstest.RequireNetns(b)
	b.Setenv("XTABLES_LOCKFILE", filepath.Join(b.TempDir(), "xtables.lock"))
	for _, backend := range []string{BackendNFT, BackendLegacy} {
		b.Run(backend, func(b *testing.B) {
			if _, err := exec.LookPath(backendCommands[backend][0]); err != nil {
				b.Skipf("%s not installed", backendCommands[backend][0])
			}
			m, err := New(referenceOptions(backend), nil)
			if err != nil {
				b.Fatal(err)
			}
			defer m.Remove()
			for b.Loop() {
				if err := m.Install(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
