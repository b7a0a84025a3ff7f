package engine

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/tollgate-fw/tollgate/daemon/attribution"
	"github.com/tollgate-fw/tollgate/daemon/config"
	"github.com/tollgate-fw/tollgate/daemon/queue"
	"github.com/tollgate-fw/tollgate/daemon/rules"
	"github.com/tollgate-fw/tollgate/shared"
)

// gatedRecorder records batches, each AppendLog waiting until gate is
// closed.
type gatedRecorder struct {
	gate    chan struct{}
	entered chan struct{} // one send per AppendLog call, before it waits
	mu      sync.Mutex
	batches []int
	ids     map[uint64]bool
}

func newGatedRecorder() *gatedRecorder {
	return &gatedRecorder{gate: make(chan struct{}), entered: make(chan struct{}, 1000), ids: make(map[uint64]bool)}
}

func (r *gatedRecorder) AppendLog(es []shared.LogEntry) error {
	r.entered <- struct{}{}
	<-r.gate
	r.mu.Lock()
	defer r.mu.Unlock()
	r.batches = append(r.batches, len(es))
	for _, e := range es {
		r.ids[e.Connection.ID] = true
	}
	return nil
}

// runLogEngine runs an engine allowing curl's port 443 with rec as its log;
// the returned stop ends Run and waits for it.
func runLogEngine(t *testing.T, flush time.Duration, rec Recorder) (*Engine, *fakeQueue, func()) {
	t.Helper()
	q := newFakeQueue()
	att := &fakeAttrib{procs: map[uint16]attribution.Process{curlPort: {PID: 100, Exe: "/usr/bin/curl", UID: 1000}}}
	e := New(Options{DefaultAction: shared.ActionDeny, Mode: config.ModeEnforcing, WatchdogAge: time.Hour, LogFlush: flush,
		Backlog: 8192}, slog.New(slog.NewTextHandler(io.Discard, nil)), q, att, rec)
	e.SetRules(rules.NewSet([]shared.Rule{allowCurl443()}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			<-done
		})
	}
	t.Cleanup(stop)
	return e, q, stop
}

// A stalled log never holds up a verdict: decisions go on, the entries
// that find the buffers full are dropped and counted, and every other one
// is written once the log moves again.
func TestStalledLogDropsAndCountsButDecisionsGoOn(t *testing.T) {
	rec := newGatedRecorder()
	e, q, stop := runLogEngine(t, time.Hour, rec)
	const n = 3 * logBatch // more than the channel and one batch hold
	for i := 0; i < n; i++ {
		e.Handle(queue.Packet{ID: uint32(i), Payload: tcpSYN(curlPort, 443), UID: 1000, OutDev: 2})
	}
	for i := 0; i < n; i++ {
		if v := q.wait(t, uint32(i)); v.Kind != queue.Accept {
			t.Fatalf("packet %d: verdict %+v", i, v)
		}
	}
	<-rec.entered // the first full batch is being written (and stalls)
	// The channel and the stalled batch hold 2,048: every later entry is
	// dropped (the last ones are recorded just after their verdicts).
	min := uint64(n - logQueue - logBatch)
	deadline := time.Now().Add(5 * time.Second)
	for e.Stats().LogDropped < min {
		if time.Now().After(deadline) {
			t.Fatalf("%d entries dropped with the log stalled, want at least %d", e.Stats().LogDropped, min)
		}
		time.Sleep(100 * time.Microsecond)
	}
	close(rec.gate)
	stop() // every decision is recorded (or dropped) before Run returns
	st := e.Stats()
	if st.Decided != n {
		t.Fatalf("decided %d of %d", st.Decided, n)
	}
	rec.mu.Lock()
	written := len(rec.ids)
	rec.mu.Unlock()
	if uint64(written)+st.LogDropped != n {
		t.Fatalf("%d written + %d dropped, want %d", written, st.LogDropped, n)
	}
}

// Entries reach the recorder in batches of logBatch while they come
// faster than LogFlush, and what is left at stop is written then.
func TestLogIsWrittenInLargeBatches(t *testing.T) {
	rec := newGatedRecorder()
	close(rec.gate)
	e, q, stop := runLogEngine(t, time.Hour, rec)
	const n = 2*logBatch + 10
	// In chunks of 256, each decided and taken by the log writer before
	// the next: the channel never holds more than a chunk and the
	// decisions still being recorded (at most one per worker).
	for from := 0; from < n; from += 256 {
		to := min(from+256, n)
		for i := from; i < to; i++ {
			e.Handle(queue.Packet{ID: uint32(i), Payload: tcpSYN(curlPort, 443), UID: 1000, OutDev: 2})
		}
		for i := from; i < to; i++ {
			q.wait(t, uint32(i))
		}
		deadline := time.Now().Add(5 * time.Second)
		for len(e.logBuf) > 0 {
			if time.Now().After(deadline) {
				t.Fatalf("log writer took no entry for 5 s (%d waiting)", len(e.logBuf))
			}
			time.Sleep(100 * time.Microsecond)
		}
	}
	stop()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if want := []int{logBatch, logBatch, 10}; len(rec.batches) != 3 || rec.batches[0] != want[0] || rec.batches[1] != want[1] || rec.batches[2] != want[2] {
		t.Fatalf("batches %v, want %v", rec.batches, want)
	}
	if st := e.Stats(); st.LogDropped != 0 || len(rec.ids) != n {
		t.Fatalf("%d written, %d dropped, want %d and 0", len(rec.ids), st.LogDropped, n)
	}
}

// With decisions trickling in, the log is written every LogFlush.
func TestLogIsWrittenEveryFlush(t *testing.T) {
	rec := newGatedRecorder()
	close(rec.gate)
	e, q, _ := runLogEngine(t, time.Millisecond, rec)
	e.Handle(queue.Packet{ID: 1, Payload: tcpSYN(curlPort, 443), UID: 1000, OutDev: 2})
	q.wait(t, 1)
	select {
	case <-rec.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("one entry not written within 5 s with LogFlush 1 ms")
	}
}

// orderedRecorder keeps the ids of the entries written, in order.
type orderedRecorder struct {
	mu  sync.Mutex
	ids []uint64
}

func (r *orderedRecorder) AppendLog(es []shared.LogEntry) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range es {
		r.ids = append(r.ids, e.Connection.ID)
	}
	return nil
}

// nextOnVerdict is a queue whose first verdict lets the application make
// its next connection: while that verdict is being sent, packet 2 arrives
// and is decided (by another worker) before the send returns.
type nextOnVerdict struct {
	e     *Engine
	once  sync.Once
	done2 chan struct{}
}

func (q *nextOnVerdict) Verdict(id uint32, v queue.Verdict) error {
	switch id {
	case 1:
		q.once.Do(func() {
			q.e.Handle(queue.Packet{ID: 2, Payload: tcpSYN(curlPort, 443), UID: 1000, OutDev: 2})
			select {
			case <-q.done2:
			case <-time.After(5 * time.Second):
			}
		})
	case 2:
		close(q.done2)
	}
	return nil
}

// A connection is logged before whatever its verdict lets happen: the
// application's next connection, decided by another worker while the
// first verdict is still being sent, comes after it in the log.
func TestLogOrderFollowsCausality(t *testing.T) {
	rec := &orderedRecorder{}
	q := &nextOnVerdict{done2: make(chan struct{})}
	att := &fakeAttrib{procs: map[uint16]attribution.Process{curlPort: {PID: 100, Exe: "/usr/bin/curl", UID: 1000}}}
	e := New(Options{DefaultAction: shared.ActionDeny, Mode: config.ModeEnforcing, WatchdogAge: time.Hour, LogFlush: time.Hour, Workers: 4},
		slog.New(slog.NewTextHandler(io.Discard, nil)), q, att, rec)
	q.e = e
	e.SetRules(rules.NewSet([]shared.Rule{allowCurl443()}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	e.Handle(queue.Packet{ID: 1, Payload: tcpSYN(curlPort, 443), UID: 1000, OutDev: 2})
	select {
	case <-q.done2:
	case <-time.After(5 * time.Second):
		t.Fatal("packet 2 not decided while packet 1's verdict was sent")
	}
	deadline := time.Now().Add(5 * time.Second)
	for e.Stats().Decided < 2 {
		if time.Now().After(deadline) {
			t.Fatal("two decisions not counted")
		}
		time.Sleep(100 * time.Microsecond)
	}
	cancel()
	<-done // the writer flushes what is queued
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.ids) != 2 || rec.ids[0] >= rec.ids[1] {
		t.Fatalf("logged connection ids %v: want the first connection's before the second's", rec.ids)
	}
}
