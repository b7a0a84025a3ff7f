// Package attribution finds the process and user behind a connection.
//
// It owns the way from a packet's 5-tuple to a process: an exact sock_diag
// lookup gives the socket's inode and owner; an inode→pid index, filled by
// reading /proc/PID/fd and checked with one readlink per hit, gives the
// process (a new socket of a recent holder is looked for first at the fds
// next to where its last one was found, so a process holding thousands of
// sockets is not read whole per connection); process facts (executable, its sha256, command line, parent,
// user, cgroup / systemd unit, Flatpak or snap app) are read from /proc and
// cached by (pid, start time). Where the kernel offers it (the initial
// network namespace) the proc connector's exec, exit and id-change events
// keep the caches exact without re-reading; elsewhere each cached fact is
// re-checked on use.
//
// It never guesses: when the socket or its holder cannot be found, the
// connection is attributed to its uid alone and Lookup says so. Nor does
// it repeat a process's claims as facts: an executable path is given only
// when the daemon's own mount namespace has the running image at that path
// (else it is only "claimed"), and a systemd unit below a delegated unit
// (user@UID.service, a container) is named with the units above it, so a
// user's unit never reads as a system unit.
//
// Known limit: a socket several processes hold (an inherited or passed
// fd) is attributed to the first holder found (see Lookup). It must not
// dump whole socket tables per connection, decide verdicts, change
// netfilter, or keep facts of a pid past the life of that process (except
// briefly, so a process that exits right after sending is still named).
package attribution

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/user"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tollgate-fw/tollgate/shared"
	"golang.org/x/sys/unix"
)

// IP protocol numbers a Query may carry.
const (
	protoICMP    = 1
	protoTCP     = 6
	protoUDP     = 17
	protoICMPv6  = 58
	protoUDPLite = 136
)

// Query describes one new connection as the packet shows it.
type Query struct {
	Proto   uint8 // IP protocol: 6 tcp, 17 udp, 136 udplite, 1 icmp, 58 icmpv6
	Inbound bool  // the packet came in (the local side is its destination)
	// Local and Remote are this machine's and the peer's ends. For ICMP
	// echo, Local.Port() is the echo identifier (ping sockets use it as
	// their port) and Remote.Port() is 0.
	Local, Remote netip.AddrPort
	UID, GID      int64  // socket owner from the queue (NFQUEUE UID/GID); -1 unknown
	IfIndex       uint32 // packet's interface index, 0 unknown; needed for sockets bound to a device
	// Sent is a time by which the packet had surely been sent (when the
	// queue reader took it; a reading of time.Now, with its monotonic
	// part), zero when unknown. A socket seen held after it needs no
	// second look (see holder).
	Sent time.Time
}

// Process is what Lookup learned. When found is false only the uid fields,
// User and Inode may be set.
type Process struct {
	PID      int
	PIDStart uint64 // start time, clock ticks since boot: (PID, PIDStart) names one process
	PPID     int
	UID, GID int64 // the process's real ids; for a uid-only answer, the socket's owner
	SockUID  int64 // socket owner as sock_diag reports it; -1 unknown
	// Exe is the executable's path, verified: the file at this path in
	// the daemon's own mount namespace is the process's running image
	// (same device and inode). It is "" when that could not be verified;
	// then ExeClaimed holds the path the process's own view gave. See
	// Lookup.
	Exe string
	// ExeClaimed is the path /proc/PID/exe names (without " (deleted)")
	// when it could not be verified; "" when Exe is set. It may be a lie
	// and must never match a rule's exe; it is there to be shown.
	ExeClaimed string
	// ExeSHA256 is the sha256 of the running image itself (read through
	// /proc/PID/exe), so it holds whether or not the path was verified;
	// lower-case hex, "" when the file could not be read.
	ExeSHA256 string
	Cmdline   string // arguments joined by spaces
	Cgroup    string // cgroup v2 path (or v1 name=systemd)
	// Unit is the systemd unit the cgroup names: "sshd.service", or for
	// units nested in a delegated unit (a user's manager, a container)
	// every unit from the outermost in, joined by '/':
	// "user@1000.service/app-firefox-1234.scope". See cgroupUnit.
	Unit  string
	App   string // sandboxed app: "flatpak:org.mozilla.firefox", "snap:firefox"; "" otherwise. Claimed by the user inside user@UID.service (see cgroupUnit)
	User  string // name of UID
	Inode uint64 // socket inode; 0 when no socket was found
}

// Options tune an Attributor. The zero value is the production setting.
type Options struct {
	// ProcRoot is where procfs is mounted; default /proc.
	ProcRoot string
	// NoProcEvents disables the proc connector.
	NoProcEvents bool
	// ProcEventsNetns opens the proc connector socket in the network
	// namespace at this path (e.g. /proc/1/ns/net) when the daemon runs in
	// another one: the kernel offers the connector in the initial network
	// namespace only, and process events do not depend on it.
	ProcEventsNetns string
	// IndexSize bounds the inode→pid index (per generation); default
	// 16384: the index holds the 16,384 to 32,768 sockets seen or used
	// last, which at the benchmark's 7,000 new sockets a second is the
	// last 2-4 s of churn, and at a desktop's rate everything it holds.
	// Full, it takes some 2 MB.
	IndexSize int
	// ExitGrace is how long facts of a process that held a socket stay
	// usable after it exits; default 5s.
	ExitGrace time.Duration
	// NoInitialScan skips reading all of /proc/*/fd at start.
	NoInitialScan bool

	// Test hooks: replace the kernel.
	sockets socketTable
	events  eventSource
	// statOwn stats a path in the daemon's own mount namespace (to
	// verify executables); default unix.Stat.
	statOwn func(path string, st *unix.Stat_t) error
}

// ErrClosed is returned by an Attributor after Close.
var ErrClosed = errors.New("attributor closed")

// errBadFlow means a query that has no socket to look up.
var errBadFlow = errors.New("not a flow sock_diag can look up")

// socketTable finds the socket of a flow (sock_diag in production).
type socketTable interface {
	// find returns the socket a flow belongs to: for TCP the connection
	// local→remote, or with listen the listener that takes connections to
	// local; for UDP the socket a datagram remote→local reaches. It
	// returns errNoSocket when there is none.
	find(proto uint8, local, remote netip.AddrPort, ifindex uint32, listen bool) (sockInfo, error)
	close() error
}

// eventSource delivers process events (the proc connector in production).
type eventSource interface {
	// drain delivers every queued event without blocking; lost says the
	// kernel dropped some.
	drain(fn func(procEvent)) (lost bool, err error)
	// wait blocks until events are queued; ErrClosed after interrupt.
	wait() error
	interrupt()
	close() error
}

// Stats are counters since New.
type Stats struct {
	Lookups      uint64 // Lookup calls
	Found        uint64 // answered with a process
	NoSocket     uint64 // no socket for the flow (or no inode: TIME_WAIT...)
	IndexHits    uint64 // holder found through the inode→pid index
	Scans        uint64 // searches through /proc/*/fd
	ScannedProcs uint64 // processes whose fds were read during searches
	FDLinks      uint64 // /proc/PID/fd/N links read (searches and index checks)
	FactsCached  uint64 // facts answered from the cache
	Rechecks     uint64 // cached facts re-checked by reading /proc (not vouched for by the proc connector)
	ExitedHolder uint64 // answered with facts of a holder that had just exited
	Vouched      uint64 // holders found through a bound /proc/PID with parent and facts vouched for by proc events: no stat read
	SeenAfter    uint64 // index hits taken without reading the fd again: a read after the packet was sent saw it (see Query.Sent)
	ProcEvents   bool   // the proc connector is in use
	EventsLost   uint64 // times the kernel dropped proc events
}

// Attributor answers Lookups. It is safe for concurrent use.
type Attributor struct {
	log    *slog.Logger
	opts   Options
	proc   *procFS
	socks  socketTable
	ev     eventSource // nil without the proc connector
	hashes *hashCache

	evMu     sync.Mutex    // serializes draining and applying events
	evDrains atomic.Uint64 // drains begun (see syncSince)
	evDone   uint64        // the number of the last drain completed; under evMu

	mu        sync.Mutex
	index     *genCache[uint64, indexEntry]
	facts     *genCache[int, *procFacts]
	lastEv    map[int]uint64 // pid → sequence number of its last event
	evSeq     uint64         // events applied so far
	evFloor   uint64         // lastEv holds every event after this one
	mru       []mruEntry     // recent holders, newest first
	execs     []int          // recently exec'd pids, newest first
	users     map[int64]userEntry
	closed    bool
	prefetchQ chan int

	stop chan struct{}
	wg   sync.WaitGroup

	nLookups, nFound, nNoSocket, nIndexHits, nScans, nScanned, nCached, nRechecks, nExited, nLost, nVouched, nSeenAfter atomic.Uint64
}

// indexEntry says which process held a socket inode when last seen. It
// holds no pointer and takes 24 bytes (with the key, a map slot is 32, was
// 56 with a time.Time and two ints), so the index's maps are neither
// scanned by the collector nor large.
type indexEntry struct {
	pid   int32 // Linux pids are below 2^22
	fd    int32
	start uint64 // the holder's start time
	seen  int64  // monoNanos of the read that saw it
}

// newIndexEntry makes an entry; false when pid or fd does not fit (never
// from a real /proc: such an entry is not kept).
func newIndexEntry(pid, fd int, start uint64, seen int64) (indexEntry, bool) {
	if pid != int(int32(pid)) || fd != int(int32(fd)) {
		return indexEntry{}, false
	}
	return indexEntry{pid: int32(pid), fd: int32(fd), start: start, seen: seen}, true
}

// putIndex records that pid held inode at fd; a.mu held.
func (a *Attributor) putIndex(inode uint64, pid, fd int, start uint64, seen int64) {
	if e, ok := newIndexEntry(pid, fd, start, seen); ok {
		a.index.put(inode, e)
	}
}

// monoBase anchors monoNanos.
var monoBase = time.Now()

// monoNanos is t on the monotonic clock, as nanoseconds since monoBase
// (for a t read from time.Now; a time without a monotonic reading counts
// on the wall clock, as time.Time's own comparisons do).
func monoNanos(t time.Time) int64 { return int64(t.Sub(monoBase)) }

// monoNow is monoNanos(time.Now()).
func monoNow() int64 { return int64(time.Since(monoBase)) }

// mruEntry is a recent holder: pid, the socket owner it was found for,
// and the fd where a search last found one of its sockets (-1: none), where
// the next search of its fds starts.
type mruEntry struct {
	pid int
	uid uint32
	fd  int
	dir *pidDir // its /proc/PID, opened once it was found twice; nil: none
}

type userEntry struct {
	name string
	at   time.Time
}

// procFacts are the facts of one process (pid, start).
type procFacts struct {
	p        Process // without socket fields
	exe      exeID
	hashed   bool
	trusted  bool // the proc connector vouches for it: no exec or id change since it was read
	exitedAt time.Time
	// ppidSeq is the event sequence number before PPID was read (ppidOK:
	// known, with the proc connector): with no event for the parent since,
	// the parent has not exited, so the process was not re-parented.
	ppidSeq uint64
	ppidOK  bool
}

const (
	maxMRU       = 16
	maxExecs     = 32
	maxLastEv    = 16384
	userTTL      = 10 * time.Minute
	maxFacts     = 4096
	maxHashes    = 1024
	prefetchSize = 256
)

// New makes an Attributor. It opens sock_diag and tries the proc connector,
// logging when that is unavailable (attribution stays correct without it).
func New(ctx context.Context, log *slog.Logger, opts Options) (*Attributor, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.ProcRoot == "" {
		opts.ProcRoot = "/proc"
	}
	if opts.IndexSize <= 0 {
		opts.IndexSize = 16384
	}
	if opts.ExitGrace <= 0 {
		opts.ExitGrace = 5 * time.Second
	}
	a := &Attributor{
		log:       log,
		opts:      opts,
		proc:      newProcFS(opts.ProcRoot, opts.statOwn),
		hashes:    newHashCache(maxHashes),
		index:     newGenCache[uint64, indexEntry](opts.IndexSize),
		facts:     newGenCache[int, *procFacts](maxFacts),
		lastEv:    make(map[int]uint64),
		users:     make(map[int64]userEntry),
		prefetchQ: make(chan int, prefetchSize),
		stop:      make(chan struct{}),
	}
	a.socks = opts.sockets
	if a.socks == nil {
		t, err := newSocketTable()
		if err != nil {
			return nil, fmt.Errorf("open socket table: %w", err)
		}
		a.socks = t
	}
	a.ev = opts.events
	if a.ev == nil && !opts.NoProcEvents {
		ev, err := newEventSource(opts.ProcEventsNetns)
		if err != nil {
			log.Info("proc connector unavailable: cached process facts are re-checked on each lookup", "err", err)
		} else {
			a.ev = ev
		}
	}
	if a.ev != nil {
		log.Info("proc connector in use: process exec/exit events keep attribution current", "netns", opts.ProcEventsNetns)
		a.wg.Add(2)
		go a.eventLoop()
		go a.prefetchLoop()
	}
	if !opts.NoInitialScan {
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			n, err := a.indexAll(ctx)
			if err != nil {
				log.Debug("initial socket index incomplete", "err", err)
			}
			log.Debug("initial socket index", "sockets", n)
		}()
	}
	return a, nil
}

// Close stops event processing and releases kernel sockets.
func (a *Attributor) Close() error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil
	}
	a.closed = true
	a.mu.Unlock()
	close(a.stop)
	if a.ev != nil {
		a.ev.interrupt()
	}
	a.wg.Wait()
	a.mu.Lock()
	for i := range a.mru {
		if a.mru[i].dir != nil {
			a.mru[i].dir.close()
			a.mru[i].dir = nil
		}
	}
	a.mu.Unlock()
	var errs []error
	if a.ev != nil {
		errs = append(errs, a.ev.close())
	}
	errs = append(errs, a.socks.close())
	return errors.Join(errs...)
}

// Stats returns the counters.
func (a *Attributor) Stats() Stats {
	return Stats{
		Lookups: a.nLookups.Load(), Found: a.nFound.Load(), NoSocket: a.nNoSocket.Load(),
		IndexHits: a.nIndexHits.Load(), Scans: a.nScans.Load(), ScannedProcs: a.nScanned.Load(),
		FDLinks: a.proc.fdLinks.Load(), FactsCached: a.nCached.Load(), Rechecks: a.nRechecks.Load(),
		ExitedHolder: a.nExited.Load(), Vouched: a.nVouched.Load(), SeenAfter: a.nSeenAfter.Load(), ProcEvents: a.ev != nil, EventsLost: a.nLost.Load(),
	}
}

// Alive reports whether the process (pid, start) still runs: a lifetime=
// process rule ends when it returns false. A reused pid is not alive.
func (a *Attributor) Alive(pid int, start uint64) bool {
	if pid <= 0 {
		return false
	}
	st, err := a.proc.stat(pid)
	return err == nil && !st.exited() && st.Start == start
}

// Lookup finds the process behind a connection. found=false means the
// connection is attributed to its uid alone (Process.UID, from the query or
// else from the socket); the error, if any, says why the search failed and
// the uid-only answer still holds.
//
// The executable's path is only given as Exe when it is verified: the
// link /proc/PID/exe shows the path as the process's own mount namespace
// sees it, and a process in a namespace of its own (any user, where
// unprivileged user namespaces exist) can bind-mount any file over
// /usr/bin/curl and run it. So the path is stat'ed in the daemon's mount
// namespace and must be the running image (device and inode); when it is
// not, or the link ends in " (deleted)" (the file was replaced, e.g. by a
// package upgrade, or removed), Exe is "" and the path goes to
// ExeClaimed. ExeSHA256 is always the running image's. The check is made
// when the facts are read; facts the proc connector vouches for are not
// re-checked until the process execs (the image cannot change without an
// exec, only the file now at its path).
//
// Known limit: a socket held by several processes (an fd inherited over
// fork or passed over a unix socket) is attributed to the first holder
// found: the one the index last saw it in, else the first in scan order
// (recent exec, recent holders of the socket's uid, then processes of
// that uid newest first, then root's, then the rest). Which of them sent
// the packet cannot be told from /proc.
func (a *Attributor) Lookup(ctx context.Context, q Query) (Process, bool, error) {
	a.nLookups.Add(1)
	ticket := a.evTicket() // the packet was queued before this
	res := Process{UID: q.UID, GID: q.GID, SockUID: -1}
	a.mu.Lock()
	closed := a.closed
	a.mu.Unlock()
	if closed {
		return a.uidOnly(res), false, ErrClosed
	}
	sock, err := a.findSocket(q)
	if err != nil {
		a.nNoSocket.Add(1)
		if errors.Is(err, errNoSocket) || errors.Is(err, errBadFlow) {
			err = nil
		}
		return a.uidOnly(res), false, err
	}
	res.Inode = sock.Inode
	res.SockUID = int64(sock.UID)
	if res.UID < 0 {
		res.UID = int64(sock.UID)
	}
	if sock.Inode == 0 {
		a.nNoSocket.Add(1)
		return a.uidOnly(res), false, nil
	}
	pid, st, hint, err := a.holder(ctx, sock.Inode, sock.UID, q.Sent)
	if err != nil && !isGone(err) {
		return a.uidOnly(res), false, err
	}
	// Every event queued before the packet is applied before facts are
	// used (an exec before the connect is never answered with facts from
	// before it); the holder search may have drained since already.
	a.syncSince(ticket)
	var f *procFacts
	if pid > 0 {
		f, err = a.factsOf(pid, st)
		if err != nil {
			// Gone between finding and reading: facts read earlier
			// (exec prefetch, a previous lookup) may still name it.
			f = a.cachedFacts(pid, st.Start)
		}
	} else if hint.pid > 0 && hint.start != 0 && monoNow()-hint.seen <= int64(a.opts.ExitGrace) {
		// Nobody holds the socket now, but hint.pid did moments ago and
		// has exited: its facts name the sender.
		if f = a.cachedFacts(int(hint.pid), hint.start); f != nil && a.Alive(int(hint.pid), hint.start) {
			f = nil // alive yet not holding it: it passed the socket on
		}
		if f != nil {
			a.nExited.Add(1)
		}
	}
	if f == nil {
		return a.uidOnly(res), false, nil
	}
	p := f.p
	p.SockUID, p.Inode = res.SockUID, res.Inode
	a.nFound.Add(1)
	return p, true, nil
}

// uidOnly completes a uid-only answer.
func (a *Attributor) uidOnly(p Process) Process {
	p.PID, p.PIDStart, p.PPID = 0, 0, 0
	if p.UID >= 0 {
		p.User = a.userName(p.UID)
	}
	return p
}

// findSocket asks the socket table (or, for ICMP echo, the ping socket
// table) for the flow's socket.
func (a *Attributor) findSocket(q Query) (sockInfo, error) {
	if !q.Local.IsValid() || !q.Remote.IsValid() {
		return sockInfo{}, errBadFlow
	}
	switch q.Proto {
	case protoTCP:
		return a.socks.find(q.Proto, q.Local, q.Remote, q.IfIndex, q.Inbound)
	case protoUDP, protoUDPLite:
		return a.socks.find(q.Proto, q.Local, q.Remote, q.IfIndex, false)
	case protoICMP, protoICMPv6:
		if q.Inbound {
			// Echo requests are answered by the kernel, not a socket.
			return sockInfo{}, errBadFlow
		}
		return a.pingSocket(q)
	}
	return sockInfo{}, errBadFlow
}

// pingSocket finds the ping socket (SOCK_DGRAM, IPPROTO_ICMP) whose echo
// identifier is the query's: sock_diag does not cover ping sockets, but
// /proc/net/icmp{,6} lists them (a short table). Raw sockets cannot be told
// apart by identifier and are not searched.
func (a *Attributor) pingSocket(q Query) (sockInfo, error) {
	name := "icmp"
	fam := uint8(afInet)
	if q.Proto == protoICMPv6 || !q.Local.Addr().Unmap().Is4() {
		name, fam = "icmp6", afInet6
	}
	b, err := os.ReadFile(a.opts.ProcRoot + "/net/" + name)
	if err != nil {
		if isGone(err) {
			return sockInfo{}, errNoSocket
		}
		return sockInfo{}, fmt.Errorf("read ping sockets: %w", err)
	}
	var found []sockInfo
	err = parseProcNet(b, func(e procNetEntry) {
		s := sockInfo{Family: fam, State: e.State, Local: e.Local, Remote: e.Remote, UID: e.UID, Inode: e.Inode}
		if s.matchesFlow(q.Local, netip.AddrPortFrom(q.Remote.Addr(), 0), false) {
			found = append(found, s)
		}
	})
	if err != nil {
		return sockInfo{}, fmt.Errorf("read ping sockets: %w", err)
	}
	if len(found) != 1 {
		return sockInfo{}, errNoSocket // none, or ambiguous: never guess
	}
	return found[0], nil
}

// holder finds the live process holding socket inode. When none holds it,
// hint is the last known holder from the index (for the exit grace).
//
// An index entry that a read of the fd made after sent (when the packet
// had surely been sent) needs no second read when it is of the bound
// directory of the recent holder and the proc connector vouches that this
// process still runs the same image: a read now would show no more than
// that the process held the socket after the packet was sent. (Had the
// socket been passed on since, to a process that sends on it again, that
// packet is another one, with a later sent.)
func (a *Attributor) holder(ctx context.Context, inode uint64, uid uint32, sent time.Time) (int, statInfo, indexEntry, error) {
	a.mu.Lock()
	e, ok := a.index.get(inode)
	var d *pidDir
	pid, fd := int(e.pid), int(e.fd)
	if ok && len(a.mru) > 0 && a.mru[0].pid == pid && a.mru[0].dir != nil && a.mru[0].dir.start == e.start {
		d = a.mru[0].dir
	}
	a.mu.Unlock()
	if d != nil && !sent.IsZero() && e.seen >= monoNanos(sent) {
		if st, ok := a.dirVouched(d, true); ok {
			a.nIndexHits.Add(1)
			a.nSeenAfter.Add(1)
			a.mu.Lock()
			a.touchMRU(pid, uid, -1, st.Start)
			a.mu.Unlock()
			return pid, st, e, nil
		}
	}
	read := monoNow() // before the fd is read: entries say when it was seen at the latest
	if d != nil {
		// Seen by an earlier probe of the process's bound directory.
		if got, held := d.probe(a.proc, fd); held && got == inode {
			if st, ok := a.dirStat(d); ok {
				a.indexHit(inode, pid, fd, uid, st.Start, read)
				return pid, st, e, nil
			}
		}
	}
	if ok && a.proc.fdHolds(pid, fd, inode) {
		st, err := a.proc.stat(pid)
		if err == nil && !st.exited() {
			a.indexHit(inode, pid, fd, uid, st.Start, read)
			return pid, st, e, nil
		}
	}
	spid, sfd, st, err := a.scan(ctx, inode, uid)
	if spid > 0 {
		a.mu.Lock()
		seen := a.touchMRU(spid, uid, sfd, st.Start)
		a.mu.Unlock()
		if seen {
			a.bindDir(spid, st.Start)
		}
	}
	return spid, st, e, err
}

// indexHit records that fd of process (pid, start) was found holding inode
// as the index said, read at seen: counted, the entry refreshed, the
// process made the most recent of uid's.
func (a *Attributor) indexHit(inode uint64, pid, fd int, uid uint32, start uint64, seen int64) {
	a.nIndexHits.Add(1)
	a.mu.Lock()
	a.putIndex(inode, pid, fd, start, seen)
	a.touchMRU(pid, uid, -1, start)
	a.mu.Unlock()
}

// bindDir opens /proc/PID of the recent holder (pid, start) for probing its
// fds through (see pidDir), unless it has one.
func (a *Attributor) bindDir(pid int, start uint64) {
	a.mu.Lock()
	need := len(a.mru) > 0 && a.mru[0].pid == pid && a.mru[0].dir == nil
	a.mu.Unlock()
	if !need {
		return
	}
	d, err := a.proc.openPidDir(pid, start)
	if err != nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for i := range a.mru {
		if a.mru[i].pid == pid && a.mru[i].dir == nil && !a.closed {
			a.mru[i].dir = d
			return
		}
	}
	d.close()
}

// probeDir looks for socket inode through m's bound /proc/PID directory,
// at the fds probeOrder names (the oldest-read first, and those next to
// where m's last new socket was found). A hit is the same process m.dir
// was opened for (its stat: see dirStat).
func (a *Attributor) probeDir(m mruEntry, inode uint64) (statInfo, int, bool) {
	a.nScanned.Add(1)
	d := m.dir
	found := -1
	now := monoNow() // before the reads: entries say when it was seen at the latest
	const most = maxOldest + 2*probeSpan + 2
	var seen [most]uint64
	var seenFD [most]int
	var order [most]int
	n := 0
	for _, fd := range d.probeOrder(order[:0], inode, m.fd) {
		got, ok := d.probe(a.proc, fd)
		if !ok {
			continue
		}
		seen[n], seenFD[n] = got, fd
		n++
		if got == inode {
			found = fd
			break
		}
	}
	a.mu.Lock()
	for i := 0; i < n; i++ {
		a.putIndex(seen[i], d.pid, seenFD[i], d.start, now)
	}
	a.mu.Unlock()
	if found < 0 {
		return statInfo{}, -1, false
	}
	st, ok := a.dirStat(d)
	return st, found, ok
}

// dirStat returns the stat of the process d is bound to, which was just
// seen holding a socket: from its facts when the proc connector vouches
// for them and for its parent (see dirVouched), else from one read
// through d.
func (a *Attributor) dirStat(d *pidDir) (statInfo, bool) {
	if st, ok := a.dirVouched(d, false); ok {
		return st, true
	}
	var seq uint64
	a.mu.Lock()
	seq = a.evSeq
	a.mu.Unlock()
	st, err := d.stat()
	if err != nil || st.exited() || st.Start != d.start {
		return statInfo{}, false
	}
	if a.ev != nil {
		a.mu.Lock()
		if f, ok := a.facts.get(d.pid); ok && f.p.PIDStart == st.Start && f.trusted && (!f.ppidOK || f.ppidSeq < seq || f.p.PPID != st.PPID) {
			g := *f
			g.p.PPID, g.ppidSeq, g.ppidOK = st.PPID, seq, true
			a.facts.put(d.pid, &g)
		}
		a.mu.Unlock()
	}
	return st, true
}

// touchMRU moves the process (pid, start) to the front of the recent
// holders; fd is where a search found its socket (-1: found otherwise, keep
// the fd known). It reports whether the process was a recent holder
// already. A bound directory of another process with that pid, or of an
// entry pushed out, is closed. a.mu is held.
func (a *Attributor) touchMRU(pid int, uid uint32, fd int, start uint64) bool {
	for i, m := range a.mru {
		if m.pid == pid {
			if fd < 0 {
				fd = m.fd
			}
			if m.dir != nil && m.dir.start != start {
				m.dir.close()
				m.dir = nil
			}
			copy(a.mru[1:i+1], a.mru[:i])
			a.mru[0] = mruEntry{pid, uid, fd, m.dir}
			return true
		}
	}
	if len(a.mru) < maxMRU {
		a.mru = append(a.mru, mruEntry{})
	} else if last := a.mru[len(a.mru)-1]; last.dir != nil {
		last.dir.close()
	}
	copy(a.mru[1:], a.mru[:len(a.mru)-1])
	a.mru[0] = mruEntry{pid, uid, fd, nil}
	return false
}

// scan searches /proc/*/fd for the holder of inode, recording the sockets
// it reads in the index, and returns it with the fd that holds the socket.
// It tries likely holders first: recent holders of the same uid, at the
// fds next to where their last socket was found only (a busy client's new
// socket is almost always there: this costs a few fd links); then recently
// exec'd processes and those recent holders whole; then processes owned by
// the uid, newest first, then root's (non-dumpable processes show as
// root's), then the rest. A recent holder's fds are read starting where
// its last new socket was found (see procFS.findSocket).
func (a *Attributor) scan(ctx context.Context, inode uint64, uid uint32) (int, int, statInfo, error) {
	a.nScans.Add(1)
	a.mu.Lock()
	var near [maxMRU]mruEntry
	nNear := 0
	for _, m := range a.mru {
		if m.uid == uid && m.fd >= 0 {
			near[nNear] = m
			nNear++
		}
	}
	hints := make([]int, 0, len(a.execs)+len(a.mru))
	hints = append(hints, a.execs...)
	for _, m := range a.mru {
		if m.uid == uid {
			hints = append(hints, m.pid)
		}
	}
	mru := slices.Clone(a.mru)
	a.mu.Unlock()
	for _, m := range near[:nNear] {
		if m.dir != nil {
			if st, fd, ok := a.probeDir(m, inode); ok {
				return m.pid, fd, st, nil
			}
			continue
		}
		if st, fd, ok := a.indexProcess(m.pid, inode, m.fd, true); ok {
			return m.pid, fd, st, nil
		}
	}
	tried := make(map[int]bool, 64)
	foundFD := -1
	try := func(pid int) (statInfo, bool) {
		if tried[pid] {
			return statInfo{}, false
		}
		tried[pid] = true
		hint := -1
		for _, m := range mru {
			if m.pid == pid {
				hint = m.fd
				break
			}
		}
		st, fd, found := a.indexProcess(pid, inode, hint, false)
		foundFD = fd
		return st, found
	}
	for _, pid := range hints {
		if st, ok := try(pid); ok {
			return pid, foundFD, st, nil
		}
	}
	pids, err := a.proc.pids()
	if err != nil {
		return 0, -1, statInfo{}, err
	}
	var rootOwned, others []int
	for _, pid := range pids {
		if tried[pid] {
			continue
		}
		if err := ctx.Err(); err != nil {
			return 0, -1, statInfo{}, fmt.Errorf("search socket holder: %w", err)
		}
		owner, err := a.proc.owner(pid)
		if err != nil {
			continue
		}
		switch {
		case owner == uid:
			if st, ok := try(pid); ok {
				return pid, foundFD, st, nil
			}
		case owner == 0:
			rootOwned = append(rootOwned, pid)
		default:
			others = append(others, pid)
		}
	}
	for _, list := range [][]int{rootOwned, others} {
		for _, pid := range list {
			if err := ctx.Err(); err != nil {
				return 0, -1, statInfo{}, fmt.Errorf("search socket holder: %w", err)
			}
			if st, ok := try(pid); ok {
				return pid, foundFD, st, nil
			}
		}
	}
	return 0, -1, statInfo{}, nil
}

// indexProcess reads the sockets of pid into the index and reports whether
// it holds want (then with its stat and the fd that holds it). For want 0
// it reads them all; else it stops at want, reading the fds nearest to
// hint first (see procFS.findSocket), so that a process holding thousands
// of sockets is not read whole for each new one; with probeOnly it reads
// only the fds near hint. Only the holder's stat is
// read (a procfs read costs as much as several fd links): other entries
// are recorded without a start time, which a later hit fills in.
func (a *Attributor) indexProcess(pid int, want uint64, hint int, probeOnly bool) (statInfo, int, bool) {
	a.nScanned.Add(1)
	now := monoNow()
	var batch []indexEntry
	var inodes []uint64
	add := func(inode uint64, fd int) {
		if e, ok := newIndexEntry(pid, fd, 0, now); ok {
			batch = append(batch, e)
			inodes = append(inodes, inode)
		}
	}
	fd := -1
	if want == 0 {
		_ = a.proc.sockets(pid, func(inode uint64, fd int) bool {
			add(inode, fd)
			return true
		})
	} else {
		fd, _ = a.proc.findSocket(pid, want, hint, probeOnly, add)
	}
	var st statInfo
	if fd >= 0 {
		var err error
		if st, err = a.proc.stat(pid); err != nil || st.exited() {
			return statInfo{}, -1, false
		}
		for i := range batch {
			batch[i].start = st.Start
		}
	}
	if len(batch) > 0 {
		a.mu.Lock()
		for i, e := range batch {
			a.index.put(inodes[i], e)
		}
		a.mu.Unlock()
	}
	return st, fd, fd >= 0
}

// indexAll reads every process's sockets into the index.
func (a *Attributor) indexAll(ctx context.Context) (int, error) {
	pids, err := a.proc.pids()
	if err != nil {
		return 0, err
	}
	for _, pid := range pids {
		select {
		case <-a.stop:
			return a.indexLen(), ErrClosed
		default:
		}
		if err := ctx.Err(); err != nil {
			return a.indexLen(), err
		}
		a.indexProcess(pid, 0, -1, false)
	}
	return a.indexLen(), nil
}

func (a *Attributor) indexLen() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.index.len()
}

// cachedFacts returns the cached facts of (pid, start), or nil.
func (a *Attributor) cachedFacts(pid int, start uint64) *procFacts {
	a.mu.Lock()
	defer a.mu.Unlock()
	if f, ok := a.facts.get(pid); ok && f.p.PIDStart == start {
		return f
	}
	return nil
}

// factsOf returns the facts of the live process pid with stat st: from the
// cache when the proc connector vouches for them or a re-check of the
// executable, command line and ids shows no exec or id change; read afresh
// otherwise.
func (a *Attributor) factsOf(pid int, st statInfo) (*procFacts, error) {
	a.mu.Lock()
	f, ok := a.facts.get(pid)
	seq := a.evSeq
	a.mu.Unlock()
	if ok && f.p.PIDStart == st.Start && f.hashed {
		if f.trusted {
			a.nCached.Add(1)
			return a.withPPID(f, st), nil
		}
		a.nRechecks.Add(1)
		var id identity
		var cmd [512]byte
		id.cmdline = cmd[:0]
		if err := a.readIdentity(pid, f, &id); err != nil {
			return nil, err
		}
		if id.same(&f.p, f.exe) {
			a.nCached.Add(1)
			if a.ev != nil {
				a.mu.Lock()
				if cur, ok := a.facts.get(pid); ok && cur == f && !a.eventSinceLocked(pid, seq) {
					g := *f
					g.trusted = true
					a.facts.put(pid, &g)
				}
				a.mu.Unlock()
			}
			return a.withPPID(f, st), nil
		}
	}
	return a.gather(pid, st)
}

// withPPID returns f with the parent from a fresh stat (a process is
// re-parented when its parent exits, without any event we follow).
func (a *Attributor) withPPID(f *procFacts, st statInfo) *procFacts {
	if f.p.PPID == st.PPID {
		return f
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	g := *f
	g.p.PPID = st.PPID
	g.ppidOK = false // read without an event sequence number: re-read next time
	if cur, ok := a.facts.get(f.p.PID); ok && cur == f {
		a.facts.put(f.p.PID, &g)
	}
	return &g
}

// identity is what re-checking a cached process reads.
type identity struct {
	exe        string // verified path, or ""
	exeClaimed string // the link's path when it is not verified, or ""
	cmdline    []byte // arguments joined by spaces (see joinCmdline)
	exeID      exeID
	uid, gid   int64
}

// same reports whether nothing an exec or id change would alter differs.
func (id *identity) same(p *Process, eid exeID) bool {
	return id.exe == p.Exe && id.exeClaimed == p.ExeClaimed && id.exeID == eid &&
		string(id.cmdline) == p.Cmdline && id.uid == p.UID && id.gid == p.GID
}

// readIdentity reads the executable (path, whether the path is verified,
// and file identity), command line and real ids of pid into id, reusing
// its cmdline buffer. With prev (the facts cached for the process), a link
// naming the same path as before to the same running image keeps prev's
// verification instead of stat'ing the path again: as with facts the proc
// connector vouches for, the image cannot change without an exec, only the
// file now at its path.
func (a *Attributor) readIdentity(pid int, prev *procFacts, id *identity) error {
	link, err := a.proc.exeLink(pid)
	if err != nil {
		return fmt.Errorf("read exe of pid %d: %w", pid, err)
	}
	var est unix.Stat_t
	if err := unix.Stat(a.proc.path(pid, "exe"), &est); err != nil {
		return fmt.Errorf("stat exe of pid %d: %w", pid, err)
	}
	id.exeID = exeIDOf(&est)
	if prev != nil && prev.hashed && prev.exe == id.exeID && (link == prev.p.Exe || link == prev.p.ExeClaimed) {
		id.exe, id.exeClaimed = prev.p.Exe, prev.p.ExeClaimed
	} else {
		exe, verified := a.proc.verifyExe(link, &est)
		id.exe, id.exeClaimed = exe, ""
		if !verified {
			id.exe, id.exeClaimed = "", exe
		}
	}
	// Not much more than what is kept is read: a process may make its
	// arguments megabytes long. (Twice the bound: empty arguments take a
	// byte each in the file and none joined.)
	const readMax = 2 * shared.MaxProcessText
	var buf [readMax]byte // the cmdline, then status
	raw, err := readPrefix(a.proc.path(pid, "cmdline"), buf[:0], readMax)
	if err != nil {
		return fmt.Errorf("read cmdline of pid %d: %w", pid, err)
	}
	id.cmdline = boundText(joinCmdline(id.cmdline[:0], raw), len(raw) == readMax)
	status, err := readSmall(a.proc.path(pid, "status"), buf[:0])
	if err != nil {
		return fmt.Errorf("read status of pid %d: %w", pid, err)
	}
	if id.uid, _, err = parseStatusIDs(status, "Uid"); err != nil {
		return fmt.Errorf("read status of pid %d: %w", pid, err)
	}
	if id.gid, _, err = parseStatusIDs(status, "Gid"); err != nil {
		return fmt.Errorf("read status of pid %d: %w", pid, err)
	}
	return nil
}

// gather reads the facts of pid afresh and caches them.
func (a *Attributor) gather(pid int, st statInfo) (*procFacts, error) {
	a.mu.Lock()
	seq := a.evSeq
	a.mu.Unlock()

	// Open the executable first: the open file stays readable after the
	// process exits, and it is the running image even when the path was
	// replaced or lies in another mount namespace (Flatpak, containers).
	exeFile, exeErr := os.Open(a.proc.path(pid, "exe"))
	if exeFile != nil {
		defer exeFile.Close()
	}
	var id identity
	if err := a.readIdentity(pid, nil, &id); err != nil {
		return nil, err
	}
	var cgroup string
	var buf [1024]byte
	if b, err := readSmall(a.proc.path(pid, "cgroup"), buf[:0]); err == nil {
		cgroup = parseCgroup(b)
	}
	// The process must still be the one we found: same start, not exited.
	st2, err := a.proc.stat(pid)
	if err != nil || st2.Start != st.Start || st2.exited() {
		if err == nil {
			err = fmt.Errorf("pid %d: %w", pid, os.ErrNotExist)
		}
		return nil, err
	}
	f := &procFacts{ppidSeq: seq, ppidOK: a.ev != nil, p: Process{
		PID: pid, PIDStart: st.Start, PPID: st2.PPID,
		UID: id.uid, GID: id.gid, Exe: id.exe, ExeClaimed: id.exeClaimed, Cmdline: string(id.cmdline), Cgroup: cgroup,
	}}
	f.p.Unit, f.p.App = cgroupUnit(cgroup)
	if len(f.p.Unit) > shared.MaxProcessText {
		f.p.Unit = string(boundText([]byte(f.p.Unit), false))
	}
	f.p.User = a.userName(id.uid)
	if exeErr == nil {
		sum, eid, err := a.hashes.sum(exeFile)
		switch {
		case err != nil:
			a.log.Debug("hash executable", "pid", pid, "exe", id.exe, "claimed", id.exeClaimed, "err", err)
		case eid != id.exeID:
			// The image changed between opening and checking it (an
			// exec, or a write): the sum may not be of the file the path
			// was verified against. Leave it out; the next lookup reads
			// afresh.
			a.log.Debug("executable changed while read", "pid", pid)
		default:
			f.p.ExeSHA256, f.exe, f.hashed = sum, eid, true
		}
	} else if !isGone(exeErr) {
		a.log.Debug("open executable", "pid", pid, "err", exeErr)
	}

	a.mu.Lock()
	defer a.mu.Unlock()
	f.trusted = a.ev != nil && !a.eventSinceLocked(pid, seq)
	if cur, ok := a.facts.get(pid); !ok || cur.p.PIDStart != st.Start || f.trusted || !cur.trusted {
		a.facts.put(pid, f)
	}
	return f, nil
}

// dirVouched returns the stat of the process d is bound to from its facts,
// when the proc connector vouches for them (no exec or id change since
// they were read) and for its parent (no exit of the parent since PPID was
// read: no re-parenting), after applying every event queued so far. With
// live it also requires that no exit of the process was seen.
func (a *Attributor) dirVouched(d *pidDir, live bool) (statInfo, bool) {
	if a.ev == nil {
		return statInfo{}, false
	}
	a.syncEvents() // a parent's exit before the fd was read is applied
	a.mu.Lock()
	defer a.mu.Unlock()
	f, ok := a.facts.get(d.pid)
	if !ok || f.p.PIDStart != d.start || !f.trusted || !f.hashed || !f.ppidOK ||
		(f.p.PPID > 0 && a.eventSinceLocked(f.p.PPID, f.ppidSeq)) || (live && !f.exitedAt.IsZero()) {
		return statInfo{}, false
	}
	a.nVouched.Add(1)
	return statInfo{State: 'R', PPID: f.p.PPID, Start: d.start}, true
}

// eventSinceLocked reports whether an event for pid may have been applied
// after event sequence number seq. a.mu is held.
func (a *Attributor) eventSinceLocked(pid int, seq uint64) bool {
	if seq < a.evFloor {
		return true
	}
	return a.lastEv[pid] > seq
}

// userName returns the name of uid ("" if it has none), cached.
func (a *Attributor) userName(uid int64) string {
	a.mu.Lock()
	u, ok := a.users[uid]
	a.mu.Unlock()
	if ok && time.Since(u.at) < userTTL {
		return u.name
	}
	name := ""
	if usr, err := user.LookupId(strconv.FormatInt(uid, 10)); err == nil {
		name = usr.Username
	}
	a.mu.Lock()
	if len(a.users) > 4096 {
		clear(a.users)
	}
	a.users[uid] = userEntry{name: name, at: time.Now()}
	a.mu.Unlock()
	return name
}

// syncEvents applies every process event the kernel has queued, so that a
// process that exec'd before its packet was queued is never answered with
// facts from before the exec.
func (a *Attributor) syncEvents() { a.syncSince(a.evTicket()) }

// evTicket names this moment for syncSince.
func (a *Attributor) evTicket() uint64 { return a.evDrains.Load() }

// syncSince applies every process event the kernel had queued when ticket
// was taken: it drains the proc connector unless a drain begun after that
// has completed (concurrent lookups share drains; each costs a system
// call even when nothing is queued).
func (a *Attributor) syncSince(ticket uint64) {
	if a.ev == nil {
		return
	}
	a.evMu.Lock()
	defer a.evMu.Unlock()
	if a.evDone > ticket {
		return // drain number evDone began after the ticket was taken
	}
	n := a.evDrains.Add(1)
	lost, err := a.ev.drain(a.applyEvent)
	a.evDone = n
	if lost {
		a.eventsLost()
	}
	if err != nil && !errors.Is(err, ErrClosed) {
		a.log.Warn("read proc events", "err", err)
		a.eventsLost()
	}
}

// applyEvent updates the caches for one process event.
func (a *Attributor) applyEvent(ev procEvent) {
	if ev.PID <= 0 {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	switch ev.What {
	case procEventExec, procEventUID, procEventGID:
		a.bumpLocked(ev.PID)
		a.facts.delete(ev.PID)
		if ev.What == procEventExec {
			a.execs = append(a.execs, 0)
			copy(a.execs[1:], a.execs)
			a.execs[0] = ev.PID
			if len(a.execs) > maxExecs {
				a.execs = a.execs[:maxExecs]
			}
			select {
			case a.prefetchQ <- ev.PID:
			default: // busy: the lookup will read the facts itself
			}
		}
	case procEventExit:
		if ev.TID != ev.PID {
			return // a thread ended, not the process
		}
		a.bumpLocked(ev.PID)
		if f, ok := a.facts.get(ev.PID); ok && f.exitedAt.IsZero() {
			g := *f
			g.exitedAt = time.Now()
			a.facts.put(ev.PID, &g)
		}
		for i, p := range a.execs {
			if p == ev.PID {
				a.execs = append(a.execs[:i], a.execs[i+1:]...)
				break
			}
		}
	}
}

// bumpLocked records an event for pid. a.mu is held.
func (a *Attributor) bumpLocked(pid int) {
	a.evSeq++
	if len(a.lastEv) >= maxLastEv {
		clear(a.lastEv)
		a.evFloor = a.evSeq
	}
	a.lastEv[pid] = a.evSeq
}

// eventsLost distrusts every cached fact after the kernel dropped events.
func (a *Attributor) eventsLost() {
	a.nLost.Add(1)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.evSeq++
	clear(a.lastEv)
	a.evFloor = a.evSeq
	var trusted []*procFacts
	a.facts.each(func(_ int, f *procFacts) {
		if f.trusted {
			trusted = append(trusted, f)
		}
	})
	for _, f := range trusted {
		g := *f
		g.trusted = false
		a.facts.put(f.p.PID, &g)
	}
}

// eventLoop applies process events as they come.
func (a *Attributor) eventLoop() {
	defer a.wg.Done()
	for {
		err := a.ev.wait()
		if errors.Is(err, ErrClosed) {
			return
		}
		if err != nil {
			a.log.Warn("proc events stopped", "err", err)
			return
		}
		a.syncEvents()
	}
}

// prefetchLoop reads the facts of newly exec'd processes, so a process that
// connects and exits at once is still named.
func (a *Attributor) prefetchLoop() {
	defer a.wg.Done()
	for {
		select {
		case <-a.stop:
			return
		case pid := <-a.prefetchQ:
			st, err := a.proc.stat(pid)
			if err != nil || st.exited() {
				continue
			}
			if _, err := a.gather(pid, st); err != nil && !isGone(err) {
				a.log.Debug("prefetch process facts", "pid", pid, "err", err)
			}
		}
	}
}
