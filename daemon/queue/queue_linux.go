package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	nfqueue "github.com/florianl/go-nfqueue/v2"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// kernelQueue is the part of an NFQUEUE socket a Queue uses. The real one
// wraps go-nfqueue; tests use a fake.
type kernelQueue interface {
	// register binds the queue and starts the library's reader goroutine,
	// which calls fn for each packet and errfn for each read error; either
	// returning non-zero stops it.
	register(ctx context.Context, fn nfqueue.HookFunc, errfn nfqueue.ErrorFunc) error
	// verdict sends one verdict (nfqueue.NfAccept, NfDrop, NfRepeat), with a
	// new mark when setMark.
	verdict(id uint32, verdict int, mark uint32, setMark bool) error
	// close closes the socket and waits for the reader goroutine.
	close() error
}

// dialFunc opens an unbound NFQUEUE socket for cfg.
type dialFunc func(cfg nfqueue.Config, readBuffer int, log *slog.Logger) (kernelQueue, error)

// Queue is a bound NFQUEUE. Its methods are safe for concurrent use.
type Queue struct {
	num    uint16
	log    *slog.Logger
	kq     kernelQueue
	flags  Flag
	cancel context.CancelFunc
	ctx    context.Context // the reader's; done when it must stop

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error

	dead     chan struct{} // closed when the reader stopped on its own
	deadOnce sync.Once
}

// Dead is closed when the reader stopped without being asked to (its
// socket went away): no packet of this queue will be read again, and the
// owner should stop rather than leave connections hanging.
func (q *Queue) Dead() <-chan struct{} { return q.dead }

// Open binds queue cfg.Num in the current network namespace and starts
// reading it. h is called for every packet, one at a time, on the reader
// goroutine: it must not block (hand the packet to another goroutine and
// return); while it runs no other packet is read. The reader never waits on
// a verdict: packets stay queued in the kernel until Verdict is called for
// them, from any goroutine, in any order.
//
// Read errors are logged and reading goes on. The reader stops when ctx is
// done or the queue is closed; Close releases the queue (the kernel drops
// the packets still waiting for a verdict).
//
// Open asks for the UID/GID and GSO flags, and fail-open when cfg.FailOpen.
// A flag the kernel refuses (EOPNOTSUPP) is dropped with a warning, keeping
// the most useful ones: Flags tells what is in effect.
func Open(ctx context.Context, cfg Config, h func(Packet)) (*Queue, error) {
	return open(ctx, cfg, h, dialNfqueue)
}

func open(ctx context.Context, cfg Config, h func(Packet), dial dialFunc) (*Queue, error) {
	if h == nil {
		return nil, errors.New("open queue: nil handler")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("queue", cfg.Num)
	copyRange := cfg.CopyRange
	if copyRange == 0 {
		copyRange = DefaultCopyRange
	}
	readBuffer := cfg.ReadBuffer
	if readBuffer == 0 {
		readBuffer = DefaultReadBuffer
	}
	want := FlagGSO | FlagUIDGID
	if cfg.FailOpen {
		want |= FlagFailOpen
	}

	var refused error
	for _, flags := range flagFallbacks(want) {
		q := &Queue{num: cfg.Num, log: log, flags: flags, dead: make(chan struct{})}
		q.ctx, q.cancel = context.WithCancel(ctx)
		kq, err := dial(nfqueue.Config{
			NfQueue:      cfg.Num,
			MaxQueueLen:  cfg.MaxQueueLen,
			MaxPacketLen: copyRange,
			Copymode:     nfqueue.NfQnlCopyPacket,
			Flags:        uint32(flags),
			AfFamily:     unix.AF_UNSPEC,
			Logger:       libLogger{log: log, quiet: q.stopping},
		}, readBuffer, log)
		if err != nil {
			q.cancel()
			return nil, fmt.Errorf("open queue %d: %w", cfg.Num, err)
		}
		q.kq = kq
		err = kq.register(q.ctx, q.hook(h), q.readError)
		if err == nil {
			if flags != want {
				log.Warn("queue bound without some flags the kernel refused",
					"flags", flags, "refused", want&^flags, "error", refused)
			}
			if want&FlagUIDGID != 0 && flags&FlagUIDGID == 0 {
				log.Warn("kernel gives no socket uid/gid with queued packets: connections are attributed by socket lookup alone")
			}
			if cfg.FailOpen && flags&FlagFailOpen == 0 {
				log.Error("kernel refused fail-open: a full queue drops new connections")
			}
			log.Debug("queue bound", "flags", flags, "copy_range", copyRange, "max_len", cfg.MaxQueueLen)
			return q, nil
		}
		q.closed.Store(true)
		q.cancel()
		if cerr := kq.close(); cerr != nil {
			log.Debug("close refused queue socket", "error", cerr)
		}
		if !errors.Is(err, unix.EOPNOTSUPP) {
			return nil, fmt.Errorf("bind queue %d (flags %s): %w", cfg.Num, flags, err)
		}
		log.Debug("kernel refused queue flags, trying fewer", "flags", flags, "error", err)
		refused = err
	}
	return nil, fmt.Errorf("bind queue %d: kernel refused every flag set: %w", cfg.Num, refused)
}

// Flags returns the queue flags the kernel accepted.
func (q *Queue) Flags() Flag { return q.flags }

// Num returns the queue number.
func (q *Queue) Num() uint16 { return q.num }

// stopping reports whether the reader is being stopped on purpose, so the
// library's complaints about it are not warnings.
func (q *Queue) stopping() bool { return q.closed.Load() || q.ctx.Err() != nil }

func (q *Queue) hook(h func(Packet)) nfqueue.HookFunc {
	return func(a nfqueue.Attribute) int {
		p, ok := packetFromAttribute(a, time.Now)
		if !ok {
			// Without an id there is nothing to answer; the kernel keeps
			// the packet until the queue is released.
			q.log.Warn("queued packet message without packet id")
			return 0
		}
		h(p)
		return 0
	}
}

// packetFromAttribute converts one packet message. ok is false when it has
// no packet id.
func packetFromAttribute(a nfqueue.Attribute, now func() time.Time) (p Packet, ok bool) {
	if a.PacketID == nil {
		return Packet{}, false
	}
	p = Packet{ID: *a.PacketID, UID: -1, GID: -1, Received: now()}
	if a.Payload != nil {
		p.Payload = *a.Payload
	}
	if a.UID != nil {
		p.UID = int64(*a.UID)
	}
	if a.GID != nil {
		p.GID = int64(*a.GID)
	}
	if a.InDev != nil {
		p.InDev = *a.InDev
	}
	if a.OutDev != nil {
		p.OutDev = *a.OutDev
	}
	if a.Mark != nil {
		p.Mark = *a.Mark
	}
	p.Time = p.Received
	if a.Timestamp != nil {
		p.Time = *a.Timestamp
	}
	return p, true
}

// readError decides whether the reader goes on after err: it stops when the
// queue is being stopped or its socket is gone, and logs and goes on
// otherwise (an overrun, or the kernel's answer to a bad verdict, which
// arrives here because verdicts are not acknowledged).
func (q *Queue) readError(err error) int {
	if q.stopping() {
		return 1
	}
	if errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrClosed) || errors.Is(err, unix.EBADF) {
		q.log.Error("queue socket closed under the reader: reading stopped", "error", err)
		q.deadOnce.Do(func() { close(q.dead) })
		return 1
	}
	q.log.Warn("queue read error (a kernel error may answer an earlier verdict); reading goes on", "error", err)
	return 0
}

// Verdict sends the verdict on packet id. It is safe from any goroutine and
// does not wait for the reader. It returns once the kernel took the message;
// the kernel's complaint about an unknown id comes back asynchronously and is
// logged by the reader.
func (q *Queue) Verdict(id uint32, v Verdict) error {
	var kind int
	switch v.Kind {
	case Accept:
		kind = nfqueue.NfAccept
	case Drop:
		kind = nfqueue.NfDrop
	case Repeat:
		kind = nfqueue.NfRepeat
	default:
		return fmt.Errorf("verdict on packet %d: %w: %v", id, ErrBadVerdict, v.Kind)
	}
	if q.closed.Load() {
		return fmt.Errorf("verdict %s on packet %d: %w", v, id, ErrClosed)
	}
	if err := q.kq.verdict(id, kind, v.Mark, v.SetMark); err != nil {
		if q.closed.Load() {
			err = errors.Join(ErrClosed, err)
		}
		return fmt.Errorf("verdict %s on packet %d: %w", v, id, err)
	}
	return nil
}

// Accept lets packet id through.
func (q *Queue) Accept(id uint32) error { return q.Verdict(id, Verdict{Kind: Accept}) }

// Drop discards packet id.
func (q *Queue) Drop(id uint32) error { return q.Verdict(id, Verdict{Kind: Drop}) }

// RepeatWithMark sets packet id's mark to mark (the whole value: pass
// Packet.Mark | bits to keep the old one) and runs it through the chain
// again, where a rule matching the mark can reject it.
func (q *Queue) RepeatWithMark(id uint32, mark uint32) error {
	return q.Verdict(id, Verdict{Kind: Repeat, Mark: mark, SetMark: true})
}

// Close stops the reader and releases the queue; the kernel drops the
// packets still waiting for a verdict. Later verdicts return ErrClosed.
func (q *Queue) Close() error {
	q.closeOnce.Do(func() {
		q.closed.Store(true)
		q.cancel()
		if err := q.kq.close(); err != nil {
			q.closeErr = fmt.Errorf("close queue %d: %w", q.num, err)
		}
	})
	return q.closeErr
}

// ReadStats returns the kernel's counters for queue num in the current
// network namespace, or ErrNoQueue when nobody has it bound.
func ReadStats(num uint16) (Stats, error) {
	f, err := os.Open(StatsPath)
	if err != nil {
		return Stats{}, fmt.Errorf("read queue statistics: %w", err)
	}
	defer f.Close()
	return ParseStats(f, num)
}

// libLogger passes go-nfqueue's messages to slog: warnings, except while the
// queue is being stopped, when the library's complaints about it are noise.
type libLogger struct {
	log   *slog.Logger
	quiet func() bool
}

func (l libLogger) Debugf(format string, args ...any) {
	l.log.Debug(fmt.Sprintf(format, args...), "from", "go-nfqueue")
}

func (l libLogger) Errorf(format string, args ...any) {
	level := slog.LevelWarn
	if l.quiet() {
		level = slog.LevelDebug
	}
	l.log.Log(context.Background(), level, fmt.Sprintf(format, args...), "from", "go-nfqueue")
}

// nfq is the real kernelQueue over go-nfqueue.
type nfq struct{ nf *nfqueue.Nfqueue }

func dialNfqueue(cfg nfqueue.Config, readBuffer int, log *slog.Logger) (kernelQueue, error) {
	nf, err := nfqueue.Open(&cfg)
	if err != nil {
		return nil, fmt.Errorf("open netlink socket: %w", err)
	}
	// Overruns are counted by the kernel (Stats.UserDropped); an ENOBUFS
	// error would only interrupt reading.
	if err := nf.SetOption(netlink.NoENOBUFS, true); err != nil {
		log.Warn("set NETLINK_NO_ENOBUFS on queue socket", "error", err)
	}
	if err := setReadBuffer(nf.Con, readBuffer); err != nil {
		log.Warn("set queue socket receive buffer", "bytes", readBuffer, "error", err)
	}
	return nfq{nf}, nil
}

// setReadBuffer sets the receive buffer, past net.core.rmem_max when the
// process may (SO_RCVBUFFORCE needs CAP_NET_ADMIN, which binding a queue
// needs anyway).
func setReadBuffer(c *netlink.Conn, n int) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n)
	}); err != nil {
		return err
	}
	if serr != nil {
		return c.SetReadBuffer(n)
	}
	return nil
}

func (q nfq) register(ctx context.Context, fn nfqueue.HookFunc, errfn nfqueue.ErrorFunc) error {
	return q.nf.RegisterWithErrorFunc(ctx, fn, errfn)
}

func (q nfq) verdict(id uint32, verdict int, mark uint32, setMark bool) error {
	if setMark {
		return q.nf.SetVerdictWithOption(id, verdict, nfqueue.WithMark(mark))
	}
	return q.nf.SetVerdict(id, verdict)
}

func (q nfq) close() error { return q.nf.Close() }
