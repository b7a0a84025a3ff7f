package engine

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate-fw/tollgate/daemon/attribution"
	"github.com/tollgate-fw/tollgate/daemon/config"
	"github.com/tollgate-fw/tollgate/daemon/pending"
	"github.com/tollgate-fw/tollgate/daemon/queue"
	"github.com/tollgate-fw/tollgate/daemon/rules"
	"github.com/tollgate-fw/tollgate/shared"
)

var (
	vAccept = queue.Verdict{Kind: queue.Accept}
	vDrop   = queue.Verdict{Kind: queue.Drop}
)

// vRepeat is a marked verdict: reject, or allow with accept marks.
func vRepeat(mark uint32) queue.Verdict {
	return queue.Verdict{Kind: queue.Repeat, Mark: mark, SetMark: true}
}

// fakeQueue records verdicts by packet id.
type fakeQueue struct {
	mu       sync.Mutex
	verdicts map[uint32][]queue.Verdict
	notify   chan uint32
}

func newFakeQueue() *fakeQueue {
	return &fakeQueue{verdicts: make(map[uint32][]queue.Verdict), notify: make(chan uint32, 10000)}
}

func (f *fakeQueue) Verdict(id uint32, v queue.Verdict) error {
	f.mu.Lock()
	f.verdicts[id] = append(f.verdicts[id], v)
	f.mu.Unlock()
	f.notify <- id
	return nil
}

func (f *fakeQueue) get(id uint32) []queue.Verdict {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]queue.Verdict(nil), f.verdicts[id]...)
}

// wait blocks until id has a verdict or the deadline passes.
func (f *fakeQueue) wait(t *testing.T, id uint32) queue.Verdict {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		if v := f.get(id); len(v) > 0 {
			return v[0]
		}
		select {
		case <-f.notify:
		case <-deadline:
			t.Fatalf("packet %d: no verdict", id)
		}
	}
}

// fakeAttrib answers from a table keyed by local port; a port in block waits
// until its channel is closed.
type fakeAttrib struct {
	procs map[uint16]attribution.Process
	block map[uint16]chan struct{}
}

func (f *fakeAttrib) Lookup(ctx context.Context, q attribution.Query) (attribution.Process, bool, error) {
	if ch, ok := f.block[q.Local.Port()]; ok {
		select {
		case <-ch:
		case <-ctx.Done():
			return attribution.Process{}, false, ctx.Err()
		}
	}
	p, ok := f.procs[q.Local.Port()]
	return p, ok, nil
}

type fakeRecorder struct {
	mu      sync.Mutex
	entries []shared.LogEntry
}

func (f *fakeRecorder) AppendLog(es []shared.LogEntry) error {
	f.mu.Lock()
	f.entries = append(f.entries, es...)
	f.mu.Unlock()
	return nil
}

func (f *fakeRecorder) all() []shared.LogEntry {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]shared.LogEntry(nil), f.entries...)
}

// tcpSYN builds an IPv4 TCP SYN from 10.0.0.1:sport to 10.0.0.2:dport.
func tcpSYN(sport, dport uint16) []byte {
	b := make([]byte, 40)
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:], 40)
	b[8] = 64
	b[9] = 6
	copy(b[12:16], []byte{10, 0, 0, 1})
	copy(b[16:20], []byte{10, 0, 0, 2})
	binary.BigEndian.PutUint16(b[20:], sport)
	binary.BigEndian.PutUint16(b[22:], dport)
	b[32] = 5 << 4
	b[33] = 0x02 // SYN
	return b
}

const (
	curlPort    = 40001 // local port of a connection made by /usr/bin/curl
	wgetPort    = 40002 // ... by /usr/bin/wget
	blockedPort = 40003 // attribution of this one hangs until released
)

type harness struct {
	e    *Engine
	q    *fakeQueue
	rec  *fakeRecorder
	att  *fakeAttrib
	stop func()
	done chan error
}

func newHarness(t *testing.T, opts Options, rs []shared.Rule) *harness {
	t.Helper()
	if opts.DefaultAction == "" {
		opts.DefaultAction = shared.ActionDeny
	}
	if opts.Mode == "" {
		opts.Mode = config.ModeEnforcing
	}
	if opts.WatchdogAge == 0 {
		opts.WatchdogAge = time.Hour
	}
	if opts.RejectMark == 0 {
		opts.RejectMark = 0x100000
	}
	opts.LogFlush = time.Millisecond
	h := &harness{
		q:   newFakeQueue(),
		rec: &fakeRecorder{},
		att: &fakeAttrib{
			procs: map[uint16]attribution.Process{
				curlPort:    {PID: 100, Exe: "/usr/bin/curl", UID: 1000},
				wgetPort:    {PID: 101, Exe: "/usr/bin/wget", UID: 1000},
				blockedPort: {PID: 102, Exe: "/usr/bin/slow", UID: 1000},
			},
			block: map[uint16]chan struct{}{blockedPort: make(chan struct{})},
		},
		done: make(chan error, 1),
	}
	h.e = New(opts, slog.New(slog.NewTextHandler(io.Discard, nil)), h.q, h.att, h.rec)
	h.e.SetRules(rules.NewSet(rs))
	ctx, cancel := context.WithCancel(context.Background())
	go func() { h.done <- h.e.Run(ctx) }()
	var once sync.Once
	h.stop = func() {
		once.Do(func() {
			cancel()
			<-h.done
		})
	}
	t.Cleanup(h.stop)
	return h
}

func (h *harness) send(id uint32, sport, dport uint16) {
	h.e.Handle(queue.Packet{ID: id, Payload: tcpSYN(sport, dport), UID: 1000, GID: 1000, OutDev: 2})
}

func allowCurl443() shared.Rule {
	return shared.Rule{ID: "curl", Name: "curl https", Action: shared.ActionAllow, Lifetime: shared.LifetimeForever,
		Enabled: true, Match: shared.Match{Exe: "/usr/bin/curl", Port: shared.PortRange{Lo: 443, Hi: 443}}}
}

func TestRuleAllowsAndEverythingElseGetsTheDefault(t *testing.T) {
	h := newHarness(t, Options{}, []shared.Rule{allowCurl443()})
	h.send(1, curlPort, 443)
	h.send(2, wgetPort, 443)
	h.send(3, curlPort, 80)
	if v := h.q.wait(t, 1); v != vAccept {
		t.Errorf("curl:443 got %+v, want accept", v)
	}
	if v := h.q.wait(t, 2); v != vDrop {
		t.Errorf("wget:443 got %+v, want drop", v)
	}
	if v := h.q.wait(t, 3); v != vDrop {
		t.Errorf("curl:80 got %+v, want drop", v)
	}
	h.stop()
	entries := h.rec.all()
	if len(entries) != 3 {
		t.Fatalf("log has %d entries, want 3", len(entries))
	}
	for _, le := range entries {
		c := le.Connection
		if c.Attribution != shared.AttributedProcess || c.PID == 0 || c.Direction != shared.DirectionOut ||
			c.RemoteIP != netip.MustParseAddr("10.0.0.2") || c.Proto != shared.ProtoTCP {
			t.Errorf("connection not filled in: %+v", c)
		}
		switch c.Exe {
		case "/usr/bin/curl":
			if c.RemotePort == 443 && (le.Verdict.RuleID != "curl" || le.Verdict.Action != shared.ActionAllow) {
				t.Errorf("curl:443 logged as %+v", le.Verdict)
			}
		}
		if le.Verdict.RuleID == "" && (!strings.Contains(le.Verdict.Reason, "default action deny") || !le.Verdict.Unasked) {
			t.Errorf("default verdict %+v: want its reason and unasked (no agent here)", le.Verdict)
		}
		if le.Verdict.RuleID != "" && le.Verdict.Unasked {
			t.Errorf("a rule's verdict marked unasked: %+v", le.Verdict)
		}
	}
	if hits := h.e.TakeHits(); hits["curl"].Count != 1 {
		t.Errorf("hits = %+v, want curl once", hits)
	}
}

func TestRejectMarksAndRepeatsKeepingTheOldMark(t *testing.T) {
	rej := shared.Rule{ID: "r", Action: shared.ActionReject, Lifetime: shared.LifetimeForever, Enabled: true,
		Match: shared.Match{Exe: "/usr/bin/wget"}}
	h := newHarness(t, Options{}, []shared.Rule{rej})
	h.e.Handle(queue.Packet{ID: 7, Payload: tcpSYN(wgetPort, 80), UID: 1000, OutDev: 2, Mark: 0x1})
	if v := h.q.wait(t, 7); v != vRepeat(0x100001) {
		t.Errorf("got %+v, want repeat with mark 0x100001", v)
	}
}

func TestMonitorModeAllowsButLogsWhatWouldHaveHappened(t *testing.T) {
	h := newHarness(t, Options{Mode: config.ModeMonitor}, nil)
	h.send(1, wgetPort, 443)
	if v := h.q.wait(t, 1); v != vAccept {
		t.Errorf("monitor: got %+v, want accept", v)
	}
	h.stop()
	es := h.rec.all()
	if len(es) != 1 || es[0].Verdict.Action != shared.ActionDeny || !es[0].Verdict.Monitor {
		t.Errorf("monitor log = %+v, want one would-be deny", es)
	}
}

func TestDisabledModeAllowsAndLogsNothing(t *testing.T) {
	h := newHarness(t, Options{Mode: config.ModeDisabled}, nil)
	h.send(1, wgetPort, 443)
	if v := h.q.wait(t, 1); v != vAccept {
		t.Errorf("disabled: got %+v", v)
	}
	h.stop()
	if es := h.rec.all(); len(es) != 0 {
		t.Errorf("disabled mode logged %d entries", len(es))
	}
}

func TestUndecodablePacketGetsTheDefault(t *testing.T) {
	h := newHarness(t, Options{DefaultAction: shared.ActionReject}, nil)
	h.e.Handle(queue.Packet{ID: 9, Payload: []byte{0x45, 1, 2}, Mark: 0x4})
	if v := h.q.wait(t, 9); v != vRepeat(0x100004) {
		t.Errorf("got %+v, want the default (reject)", v)
	}
	if h.e.Stats().Undecodable != 1 {
		t.Error("undecodable not counted")
	}
}

func TestASlowDecisionDelaysNoOther(t *testing.T) {
	h := newHarness(t, Options{}, []shared.Rule{allowCurl443()})
	h.send(1, blockedPort, 443) // its attribution hangs
	for id := uint32(2); id < 50; id++ {
		h.send(id, curlPort, 443)
	}
	for id := uint32(2); id < 50; id++ {
		if v := h.q.wait(t, id); v != vAccept {
			t.Fatalf("packet %d: %+v", id, v)
		}
	}
	if len(h.q.get(1)) != 0 {
		t.Fatal("the held packet got a verdict before its decision finished")
	}
	close(h.att.block[blockedPort])
	if v := h.q.wait(t, 1); v != vDrop {
		t.Errorf("slow packet: %+v", v)
	}
}

func TestWatchdogGivesTheDefaultExactlyOnce(t *testing.T) {
	h := newHarness(t, Options{WatchdogAge: 30 * time.Second}, nil)
	now := time.Unix(1000, 0)
	var mu sync.Mutex
	h.e.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	h.send(1, blockedPort, 443)
	if n := h.e.sweep(); n != 0 {
		t.Fatalf("swept %d fresh packets", n)
	}
	mu.Lock()
	now = now.Add(31 * time.Second)
	mu.Unlock()
	if n := h.e.sweep(); n != 1 {
		t.Fatalf("swept %d, want 1", n)
	}
	if v := h.q.wait(t, 1); v != vDrop {
		t.Errorf("watchdog verdict %+v", v)
	}
	// The decision finishes late: it must not give a second verdict.
	close(h.att.block[blockedPort])
	h.stop()
	if got := h.q.get(1); len(got) != 1 {
		t.Errorf("packet 1 got %d verdicts, want exactly 1", len(got))
	}
	if h.e.Stats().Watchdog != 1 {
		t.Error("watchdog verdict not counted")
	}
}

func TestBacklogFullGivesTheDefaultAtOnce(t *testing.T) {
	q := newFakeQueue()
	e := New(Options{DefaultAction: shared.ActionDeny, Mode: config.ModeEnforcing, Backlog: 1, WatchdogAge: time.Hour},
		slog.New(slog.NewTextHandler(io.Discard, nil)), q, nil, nil)
	// Not running: nothing takes packets from the backlog.
	e.Handle(queue.Packet{ID: 1, Payload: tcpSYN(1, 2)})
	e.Handle(queue.Packet{ID: 2, Payload: tcpSYN(1, 2)})
	if v := q.wait(t, 2); v != vDrop {
		t.Errorf("overflow verdict %+v", v)
	}
	if len(q.get(1)) != 0 {
		t.Error("backlogged packet decided without a worker")
	}
	if e.Stats().Overflow != 1 {
		t.Error("overflow not counted")
	}
}

func TestStopGivesEveryHeldPacketAVerdict(t *testing.T) {
	h := newHarness(t, Options{}, nil)
	for id := uint32(1); id <= 5; id++ {
		h.send(id, blockedPort, 443) // all hang in attribution
	}
	waitHeld := time.Now().Add(5 * time.Second)
	for h.e.Stats().Held != 5 && time.Now().Before(waitHeld) {
		time.Sleep(time.Millisecond)
	}
	h.stop()
	for id := uint32(1); id <= 5; id++ {
		if got := h.q.get(id); len(got) != 1 || got[0] != vDrop {
			t.Errorf("packet %d after stop: %+v", id, got)
		}
	}
	if h.e.Stats().Held != 0 {
		t.Error("packets still held after stop")
	}
}

func TestEveryPacketExactlyOneVerdictUnderLoad(t *testing.T) {
	h := newHarness(t, Options{WatchdogAge: time.Millisecond}, []shared.Rule{allowCurl443()})
	const n = 5000
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += 4 {
				h.send(uint32(i+1), curlPort, 443)
				if i%50 == 0 {
					h.e.sweep() // the watchdog races the workers
				}
			}
		}(w)
	}
	wg.Wait()
	for id := uint32(1); id <= n; id++ {
		h.q.wait(t, id)
	}
	h.stop()
	for id := uint32(1); id <= n; id++ {
		if got := h.q.get(id); len(got) != 1 {
			t.Fatalf("packet %d got %d verdicts", id, len(got))
		}
	}
}

func BenchmarkDecide(b *testing.B) {
	q := &nopQueue{}
	att := &fakeAttrib{procs: map[uint16]attribution.Process{curlPort: {PID: 100, Exe: "/usr/bin/curl", UID: 1000}}}
	e := New(Options{DefaultAction: shared.ActionDeny, Mode: config.ModeEnforcing, WatchdogAge: time.Hour},
		slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn})), q, att, nil)
	e.SetRules(rules.NewSet([]shared.Rule{allowCurl443()}))
	p := queue.Packet{Payload: tcpSYN(curlPort, 443), UID: 1000, OutDev: 2}
	ctx := context.Background()
	c := new(shared.Connection) // a worker's
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		p.ID = uint32(i)
		e.mu.Lock()
		e.held[p.ID] = held{since: time.Now()}
		e.mu.Unlock()
		e.decide(ctx, p, c)
	}
}

type nopQueue struct{}

func (nopQueue) Verdict(uint32, queue.Verdict) error { return nil }

func TestAllowMarksByDirectionWhenAcceptMarksAreSet(t *testing.T) {
	all := shared.Rule{ID: "all", Action: shared.ActionAllow, Lifetime: shared.LifetimeForever, Enabled: true}
	h := newHarness(t, Options{AcceptMarkOut: 0x200000, AcceptMarkIn: 0x400000}, []shared.Rule{all})
	h.e.Handle(queue.Packet{ID: 1, Payload: tcpSYN(curlPort, 443), OutDev: 2, Mark: 0x1})
	h.e.Handle(queue.Packet{ID: 2, Payload: tcpSYN(443, curlPort), InDev: 2, Mark: 0x1})
	if v := h.q.wait(t, 1); v != vRepeat(0x200001) {
		t.Errorf("outbound allow: %+v, want repeat with 0x200001", v)
	}
	if v := h.q.wait(t, 2); v != vRepeat(0x400001) {
		t.Errorf("inbound allow: %+v, want repeat with 0x400001", v)
	}
}

// fakeAsker holds what it is asked about, for users in hold.
type fakeAsker struct {
	mu    sync.Mutex
	hold  map[int64]bool
	asked []pending.Packet
}

func (f *fakeAsker) Ask(p pending.Packet) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.hold[p.Conn.UID] {
		return false
	}
	f.asked = append(f.asked, p)
	return true
}

func (f *fakeAsker) taken() []pending.Packet {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]pending.Packet(nil), f.asked...)
}

func TestUncoveredConnectionIsHeldUntilResolved(t *testing.T) {
	h := newHarness(t, Options{}, []shared.Rule{allowCurl443()})
	ask := &fakeAsker{hold: map[int64]bool{1000: true}}
	h.e.SetAsker(ask)
	h.send(1, wgetPort, 443)                                                              // no rule: asked
	h.send(2, curlPort, 443)                                                              // rule: decided at once, never asked
	h.e.Handle(queue.Packet{ID: 3, Payload: tcpSYN(wgetPort, 443), UID: 4242, OutDev: 2}) // nobody to ask
	if v := h.q.wait(t, 2); v != vAccept {
		t.Errorf("covered connection: %+v", v)
	}
	if v := h.q.wait(t, 3); v != vDrop {
		t.Errorf("connection with nobody to ask: %+v", v)
	}
	waitHeld := time.Now().Add(5 * time.Second)
	for len(ask.taken()) == 0 && time.Now().Before(waitHeld) {
		time.Sleep(time.Millisecond)
	}
	asked := ask.taken()
	if len(asked) != 1 || asked[0].ID != 1 || asked[0].Conn.Exe != "/usr/bin/wget" {
		t.Fatalf("asked %+v", asked)
	}
	if got := h.q.get(1); len(got) != 0 {
		t.Fatalf("held packet got a verdict before the answer: %+v", got)
	}
	h.e.Resolve(asked, shared.Verdict{Action: shared.ActionAllow, RuleID: "answer", Reason: "user allowed"})
	if v := h.q.wait(t, 1); v != vAccept {
		t.Errorf("answered packet: %+v", v)
	}
	// A late second resolution (e.g. after the watchdog) gives no second verdict.
	h.e.Resolve(asked, shared.Verdict{Action: shared.ActionDeny})
	h.stop()
	if got := h.q.get(1); len(got) != 1 {
		t.Errorf("packet 1 got %d verdicts", len(got))
	}
	var logged bool
	for _, le := range h.rec.all() {
		if le.Connection.Exe == "/usr/bin/wget" && le.Verdict.Reason == "user allowed" {
			logged = true
		}
	}
	if !logged {
		t.Error("the answered connection is not in the log")
	}
}

func TestMonitorModeNeverHolds(t *testing.T) {
	h := newHarness(t, Options{Mode: config.ModeMonitor}, nil)
	ask := &fakeAsker{hold: map[int64]bool{1000: true}}
	h.e.SetAsker(ask)
	h.send(1, wgetPort, 443)
	if v := h.q.wait(t, 1); v != vAccept {
		t.Errorf("monitor: %+v", v)
	}
	if len(ask.taken()) != 0 {
		t.Error("monitor mode asked")
	}
}

func TestConnectionIDsStayUniqueAcrossRestarts(t *testing.T) {
	ids := map[uint64]bool{}
	for run := 0; run < 2; run++ {
		h := newHarness(t, Options{}, nil)
		for i := uint32(1); i <= 3; i++ {
			h.send(i, wgetPort, 443)
			h.q.wait(t, i)
		}
		h.stop()
		for _, le := range h.rec.all() {
			if le.Connection.ID == 0 || ids[le.Connection.ID] {
				t.Fatalf("connection id %d zero or seen before (run %d)", le.Connection.ID, run)
			}
			ids[le.Connection.ID] = true
		}
	}
	if len(ids) != 6 {
		t.Errorf("%d distinct ids, want 6", len(ids))
	}
}
