package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	nfqueue "github.com/florianl/go-nfqueue/v2"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// fakeKernel stands in for an NFQUEUE socket: it refuses the flags it is told
// to, holds the packets it queued until a verdict, and answers a verdict on
// an unknown id the way the kernel does: with an error read by the reader.
type fakeKernel struct {
	mu       sync.Mutex
	cfg      nfqueue.Config
	refuse   Flag  // flags answered with EOPNOTSUPP
	bindErr  error // any other bind error
	fn       nfqueue.HookFunc
	errfn    nfqueue.ErrorFunc
	ctx      context.Context
	pending  map[uint32]bool
	decided  map[uint32]decision
	closed   bool
	nextID   uint32
	stopped  bool // the reader was told to stop
	readErrs int  // errors handed to the reader
}

type decision struct {
	verdict int
	mark    uint32
	setMark bool
}

// fakeDialer records every socket opened, so tests can see the fallbacks.
type fakeDialer struct {
	mu      sync.Mutex
	refuse  Flag
	bindErr error
	opened  []*fakeKernel
}

func (d *fakeDialer) dial(cfg nfqueue.Config, readBuffer int, log *slog.Logger) (kernelQueue, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	k := &fakeKernel{cfg: cfg, refuse: d.refuse, bindErr: d.bindErr,
		pending: map[uint32]bool{}, decided: map[uint32]decision{}}
	d.opened = append(d.opened, k)
	return k, nil
}

func (d *fakeDialer) last() *fakeKernel {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.opened[len(d.opened)-1]
}

func (k *fakeKernel) register(ctx context.Context, fn nfqueue.HookFunc, errfn nfqueue.ErrorFunc) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if Flag(k.cfg.Flags)&k.refuse != 0 {
		return &netlink.OpError{Op: "receive", Err: unix.EOPNOTSUPP}
	}
	if k.bindErr != nil {
		return k.bindErr
	}
	k.ctx, k.fn, k.errfn = ctx, fn, errfn
	return nil
}

// queue hands a packet to the reader like the library's goroutine would and
// returns its id.
func (k *fakeKernel) queue(t *testing.T, a nfqueue.Attribute) uint32 {
	t.Helper()
	k.mu.Lock()
	k.nextID++
	id := k.nextID
	a.PacketID = &id
	k.pending[id] = true
	fn := k.fn
	k.mu.Unlock()
	if fn(a) != 0 {
		t.Fatalf("hook asked the reader to stop on packet %d", id)
	}
	return id
}

// readError hands err to the reader and returns whether it would go on.
func (k *fakeKernel) readError(err error) bool {
	k.mu.Lock()
	errfn := k.errfn
	k.readErrs++
	k.mu.Unlock()
	goOn := errfn(err) == 0
	if !goOn {
		k.mu.Lock()
		k.stopped = true
		k.mu.Unlock()
	}
	return goOn
}

func (k *fakeKernel) verdict(id uint32, verdict int, mark uint32, setMark bool) error {
	k.mu.Lock()
	if k.closed {
		k.mu.Unlock()
		return &netlink.OpError{Op: "send", Err: net.ErrClosed}
	}
	if !k.pending[id] {
		k.mu.Unlock()
		// The kernel answers asynchronously with ENOENT.
		k.readError(&netlink.OpError{Op: "receive", Err: unix.ENOENT})
		return nil
	}
	delete(k.pending, id)
	k.decided[id] = decision{verdict, mark, setMark}
	k.mu.Unlock()
	return nil
}

func (k *fakeKernel) close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return errors.New("fake: closed twice")
	}
	k.closed = true
	clear(k.pending) // the kernel drops what still waits
	return nil
}

// logBuffer collects log output safely across goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newLogger() (*slog.Logger, *logBuffer) {
	buf := &logBuffer{}
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

func ptr[T any](v T) *T { return &v }

func TestOpenAsksForFlagsAndCopyMode(t *testing.T) {
	log, _ := newLogger()
	d := &fakeDialer{}
	q, err := open(context.Background(), Config{Num: 7, MaxQueueLen: 100, FailOpen: true, Logger: log},
		func(Packet) {}, d.dial)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if len(d.opened) != 1 {
		t.Fatalf("opened %d sockets, want 1", len(d.opened))
	}
	cfg := d.last().cfg
	if cfg.NfQueue != 7 || cfg.MaxQueueLen != 100 || cfg.Copymode != nfqueue.NfQnlCopyPacket ||
		cfg.MaxPacketLen != DefaultCopyRange {
		t.Errorf("config = %+v", cfg)
	}
	want := uint32(nfqueue.NfQaCfgFlagUIDGid | nfqueue.NfQaCfgFlagGSO | nfqueue.NfQaCfgFlagFailOpen)
	if cfg.Flags != want {
		t.Errorf("flags = %#x, want %#x (uid-gid, gso, fail-open as go-nfqueue numbers them)", cfg.Flags, want)
	}
	if q.Flags() != FlagUIDGID|FlagGSO|FlagFailOpen || q.Num() != 7 {
		t.Errorf("Flags() = %v, Num() = %d", q.Flags(), q.Num())
	}

	q2, err := open(context.Background(), Config{Num: 8, CopyRange: 512}, func(Packet) {}, d.dial)
	if err != nil {
		t.Fatal(err)
	}
	defer q2.Close()
	if cfg := d.last().cfg; cfg.Flags&nfqueue.NfQaCfgFlagFailOpen != 0 || cfg.MaxPacketLen != 512 {
		t.Errorf("without FailOpen: config = %+v", cfg)
	}
}

func TestOpenFallsBackWhenFlagsRefused(t *testing.T) {
	tests := []struct {
		name      string
		failOpen  bool
		refuse    Flag
		want      Flag
		sockets   int
		logSays   []string
		logNotSay string
	}{
		{
			name: "gso refused", refuse: FlagGSO, want: FlagUIDGID, sockets: 2,
			logSays: []string{"refused=gso"}, logNotSay: "uid/gid",
		},
		{
			name: "uid-gid refused", refuse: FlagUIDGID, want: FlagGSO, sockets: 3,
			logSays: []string{"refused=uid-gid", "no socket uid/gid"},
		},
		{
			name: "fail-open kept longest", failOpen: true, refuse: FlagUIDGID | FlagGSO, want: FlagFailOpen, sockets: 4,
			logSays: []string{"refused=gso,uid-gid"},
		},
		{
			name: "fail-open refused", failOpen: true, refuse: FlagFailOpen, want: FlagUIDGID | FlagGSO, sockets: 5,
			logSays: []string{"kernel refused fail-open"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log, buf := newLogger()
			d := &fakeDialer{refuse: tt.refuse}
			q, err := open(context.Background(), Config{Num: 1, FailOpen: tt.failOpen, Logger: log}, func(Packet) {}, d.dial)
			if err != nil {
				t.Fatal(err)
			}
			defer q.Close()
			if q.Flags() != tt.want {
				t.Errorf("Flags() = %v, want %v", q.Flags(), tt.want)
			}
			if len(d.opened) != tt.sockets {
				t.Errorf("opened %d sockets, want %d", len(d.opened), tt.sockets)
			}
			for _, k := range d.opened[:len(d.opened)-1] {
				if !k.closed {
					t.Errorf("refused socket (flags %v) left open", Flag(k.cfg.Flags))
				}
			}
			for _, s := range tt.logSays {
				if !strings.Contains(buf.String(), s) {
					t.Errorf("log does not say %q:\n%s", s, buf)
				}
			}
			if tt.logNotSay != "" && strings.Contains(buf.String(), tt.logNotSay) {
				t.Errorf("log says %q:\n%s", tt.logNotSay, buf)
			}
		})
	}
}

func TestOpenFailsOnOtherBindErrors(t *testing.T) {
	d := &fakeDialer{bindErr: &netlink.OpError{Op: "receive", Err: unix.EPERM}}
	_, err := open(context.Background(), Config{Num: 3}, func(Packet) {}, d.dial)
	if !errors.Is(err, unix.EPERM) || !strings.Contains(err.Error(), "bind queue 3") {
		t.Fatalf("open error = %v, want a bind error wrapping EPERM", err)
	}
	if len(d.opened) != 1 || !d.opened[0].closed {
		t.Fatalf("want one socket, closed; got %d", len(d.opened))
	}

	all := &fakeDialer{refuse: FlagUIDGID | FlagGSO | FlagFailOpen}
	// Refusing every flag leaves the empty set, which the fake accepts.
	q, err := open(context.Background(), Config{Num: 3}, func(Packet) {}, all.dial)
	if err != nil {
		t.Fatal(err)
	}
	q.Close()
	if q.Flags() != 0 {
		t.Fatalf("Flags() = %v, want none", q.Flags())
	}

	if _, err := open(context.Background(), Config{}, nil, all.dial); err == nil {
		t.Fatal("open accepted a nil handler")
	}
}

func TestHandlerGetsPackets(t *testing.T) {
	var got []Packet
	d := &fakeDialer{}
	q, err := open(context.Background(), Config{}, func(p Packet) { got = append(got, p) }, d.dial)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	k := d.last()

	ts := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	payload := []byte{0x45, 0, 0, 20}
	before := time.Now()
	k.queue(t, nfqueue.Attribute{Payload: &payload, UID: ptr(uint32(1000)), GID: ptr(uint32(100)),
		OutDev: ptr(uint32(2)), Mark: ptr(uint32(0x42)), Timestamp: &ts})
	k.queue(t, nfqueue.Attribute{InDev: ptr(uint32(3)), UID: ptr(uint32(0)), GID: ptr(uint32(0))})
	k.queue(t, nfqueue.Attribute{})

	want := []Packet{
		{ID: 1, Payload: payload, UID: 1000, GID: 100, OutDev: 2, Mark: 0x42, Time: ts},
		{ID: 2, UID: 0, GID: 0, InDev: 3},
		{ID: 3, UID: -1, GID: -1},
	}
	if len(got) != len(want) {
		t.Fatalf("handler got %d packets, want %d", len(got), len(want))
	}
	after := time.Now()
	for i := range want {
		g, w := got[i], want[i]
		// Received is the reader's clock, kernel timestamp or not.
		if g.Received.Before(before) || g.Received.After(after) {
			t.Errorf("packet %d: Received %v, not between %v and %v", i, g.Received, before, after)
		}
		w.Received = g.Received
		if i > 0 {
			if g.Time.Before(before) {
				t.Errorf("packet %d without kernel timestamp: Time %v before it was read", i, g.Time)
			}
			w.Time = g.Time
		}
		if fmt.Sprint(g) != fmt.Sprint(w) {
			t.Errorf("packet %d = %+v, want %+v", i, g, w)
		}
	}

	// A message without a packet id is not handed on (nothing to answer).
	if _, ok := packetFromAttribute(nfqueue.Attribute{}, time.Now); ok {
		t.Error("packet without id converted")
	}
}

func TestVerdicts(t *testing.T) {
	log, buf := newLogger()
	d := &fakeDialer{}
	ids := make(chan uint32, 8)
	q, err := open(context.Background(), Config{Logger: log}, func(p Packet) { ids <- p.ID }, d.dial)
	if err != nil {
		t.Fatal(err)
	}
	k := d.last()
	for range 5 {
		k.queue(t, nfqueue.Attribute{})
	}
	calls := []struct {
		do   func(id uint32) error
		want decision
	}{
		{q.Accept, decision{verdict: nfqueue.NfAccept}},
		{q.Drop, decision{verdict: nfqueue.NfDrop}},
		{func(id uint32) error { return q.RepeatWithMark(id, 0x100042) }, decision{nfqueue.NfRepeat, 0x100042, true}},
		{func(id uint32) error { return q.Verdict(id, Verdict{Kind: Accept, Mark: 7, SetMark: true}) },
			decision{nfqueue.NfAccept, 7, true}},
	}
	for _, c := range calls {
		id := <-ids
		if err := c.do(id); err != nil {
			t.Fatalf("verdict on %d: %v", id, err)
		}
		if got := k.decided[id]; got != c.want {
			t.Errorf("packet %d decided %+v, want %+v", id, got, c.want)
		}
	}

	last := <-ids
	if err := q.Verdict(last, Verdict{}); !errors.Is(err, ErrBadVerdict) {
		t.Errorf("zero verdict error = %v, want ErrBadVerdict", err)
	}
	if err := q.Verdict(last, Verdict{Kind: 9}); !errors.Is(err, ErrBadVerdict) {
		t.Errorf("kind 9 error = %v, want ErrBadVerdict", err)
	}
	if !k.pending[last] {
		t.Error("an invalid verdict reached the kernel")
	}

	// A verdict on an id the kernel does not hold: sent, and the kernel's
	// error is logged by the reader, which reads on.
	if err := q.Accept(999); err != nil {
		t.Fatal(err)
	}
	if k.stopped || !strings.Contains(buf.String(), "no such file or directory") {
		t.Errorf("unknown-id error not logged or reader stopped (stopped=%v):\n%s", k.stopped, buf)
	}

	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if err := q.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
	if err := q.Accept(last); !errors.Is(err, ErrClosed) {
		t.Errorf("verdict after Close = %v, want ErrClosed", err)
	}
}

func TestVerdictsFromManyGoroutines(t *testing.T) {
	d := &fakeDialer{}
	q, err := open(context.Background(), Config{}, func(Packet) {}, d.dial)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	k := d.last()
	const n = 200
	for range n {
		k.queue(t, nfqueue.Attribute{})
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for id := uint32(g + 1); id <= n; id += 8 {
				if err := q.RepeatWithMark(id, id); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if len(k.pending) != 0 || len(k.decided) != n {
		t.Fatalf("pending %d, decided %d, want 0 and %d", len(k.pending), len(k.decided), n)
	}
	for id, dec := range k.decided {
		if dec.mark != id || dec.verdict != nfqueue.NfRepeat {
			t.Fatalf("packet %d decided %+v", id, dec)
		}
	}
}

func TestReaderErrors(t *testing.T) {
	log, buf := newLogger()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d := &fakeDialer{}
	q, err := open(ctx, Config{Logger: log}, func(Packet) {}, d.dial)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	k := d.last()

	if !k.readError(&netlink.OpError{Op: "receive", Err: unix.ENOBUFS}) {
		t.Error("reader stops on ENOBUFS, want it to read on")
	}
	select {
	case <-q.Dead():
		t.Error("queue dead after an ENOBUFS")
	default:
	}
	if !strings.Contains(buf.String(), "level=WARN") || !strings.Contains(buf.String(), "no buffer space") {
		t.Errorf("ENOBUFS not logged as a warning:\n%s", buf)
	}
	if k.readError(&netlink.OpError{Op: "receive", Err: net.ErrClosed}) {
		t.Error("reader goes on reading a closed socket")
	}
	select {
	case <-q.Dead():
	default:
		t.Error("the reader stopped on its own but Dead is not closed")
	}

	// The library complains through its logger while stopping: not a warning.
	lib := libLogger{log: log, quiet: q.stopping}
	lib.Errorf("before stop %d", 1)
	cancel()
	if k.readError(&netlink.OpError{Op: "receive", Err: unix.EAGAIN}) {
		t.Error("reader goes on after its context is done")
	}
	lib.Errorf("Stop receiving nfqueue messages: %v", ctx.Err())
	out := buf.String()
	if !strings.Contains(out, `level=WARN msg="before stop 1"`) {
		t.Errorf("library error before stop not a warning:\n%s", out)
	}
	if !strings.Contains(out, `level=DEBUG msg="Stop receiving`) {
		t.Errorf("library error while stopping not at debug level:\n%s", out)
	}
}
