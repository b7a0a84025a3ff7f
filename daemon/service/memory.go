package service

import (
	"log/slog"
	"math"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Memory policy. The rule set is most of the daemon's live heap (about
// 165 bytes a rule) and it is long-lived: with the default GOGC=100 the
// heap may grow to twice it before a collection, which at 100k rules is
// tens of MB of RSS spent on garbage. So the daemon sets a soft memory
// limit above what it needs: memLimitFloor, or the live heap and the
// runtime's own memory (stacks, metadata) plus half the live heap (at least
// memLimitHeadroom), whichever is more. Small rule sets stay below the
// floor and collect as with GOGC=100; large ones collect when the headroom
// is used up, which costs about what GOGC=50 would, and never less
// headroom than that, so the limit cannot trap the collector in
// back-to-back cycles (a first try with a quarter, 8 MiB at least, and
// the runtime's memory left out, did: half the daemon's CPU under load
// went to marking). The limit follows the live heap: it is set again
// after start-up and, when a collection ran since, every second
// (memTuner.tune), so a heap that grows is not held to a limit set for a
// smaller one for long. Should the collector still take more than
// gcShareMax of the daemon's CPU over a second, the limit is lifted
// (GOGC alone decides) for liftFor. An operator's GOMEMLIMIT in the
// environment wins, and is left alone.
const (
	memLimitFloor    = 32 << 20
	memLimitHeadroom = 16 << 20
	gcShareMax       = 0.10
	liftFor          = time.Minute
)

// memoryLimitFor returns the soft memory limit for a live heap of live
// bytes and other memory of the runtime of other bytes.
func memoryLimitFor(live, other uint64) int64 {
	return int64(max(memLimitFloor, other+live+max(memLimitHeadroom, live/2)))
}

// memSample is what the tuner reads from the runtime.
type memSample struct {
	live, other    uint64  // live heap; runtime memory besides the heap
	cycles         uint64  // collections so far
	gcCPU, busyCPU float64 // CPU seconds (the runtime's estimate): collector, all but idle
}

// memTuner keeps the soft memory limit (see the memory policy above).
type memTuner struct {
	log      *slog.Logger
	read     func() (memSample, bool)
	set      func(int64) int64 // debug.SetMemoryLimit
	last     memSample
	started  bool
	liftedAt time.Time // zero: not lifted
	disabled bool      // GOMEMLIMIT set
}

func newMemTuner(log *slog.Logger) *memTuner {
	return &memTuner{log: log, read: readMemSample, set: debug.SetMemoryLimit, disabled: os.Getenv("GOMEMLIMIT") != ""}
}

// tune sets the limit for the current live heap, unless nothing was
// collected since the last call (then nothing changed that matters) or
// the limit is lifted.
func (t *memTuner) tune(now time.Time) {
	if t.disabled {
		return
	}
	m, ok := t.read()
	if !ok {
		return
	}
	prev, first := t.last, !t.started
	t.last, t.started = m, true
	if !first && m.cycles == prev.cycles {
		return
	}
	if !first {
		gc, busy := m.gcCPU-prev.gcCPU, m.busyCPU-prev.busyCPU
		if busy > 0 && gc/busy > gcShareMax && t.liftedAt.IsZero() {
			t.liftedAt = now
			t.set(math.MaxInt64)
			t.log.Info("memory limit lifted: the collector took too much CPU", "gc_share", gc/busy, "live_bytes", m.live, "for", liftFor)
			return
		}
	}
	if !t.liftedAt.IsZero() {
		if now.Sub(t.liftedAt) < liftFor {
			return
		}
		t.liftedAt = time.Time{}
	}
	limit := memoryLimitFor(m.live, m.other)
	if old := t.set(limit); old != limit {
		t.log.Debug("memory limit", "live_bytes", m.live, "other_bytes", m.other, "limit_bytes", limit)
	}
}

func readMemSample() (memSample, bool) {
	s := []metrics.Sample{
		{Name: "/gc/heap/live:bytes"},
		{Name: "/memory/classes/total:bytes"},
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/unused:bytes"},
		{Name: "/memory/classes/heap/free:bytes"},
		{Name: "/memory/classes/heap/released:bytes"},
		{Name: "/gc/cycles/total:gc-cycles"},
		{Name: "/cpu/classes/gc/total:cpu-seconds"},
		{Name: "/cpu/classes/total:cpu-seconds"},
		{Name: "/cpu/classes/idle:cpu-seconds"},
		{Name: "/cpu/classes/gc/mark/idle:cpu-seconds"},
	}
	metrics.Read(s)
	var v [7]uint64
	for i := range v {
		if s[i].Value.Kind() != metrics.KindUint64 {
			return memSample{}, false
		}
		v[i] = s[i].Value.Uint64()
	}
	for _, x := range s[7:] {
		if x.Value.Kind() != metrics.KindFloat64 {
			return memSample{}, false
		}
	}
	// The collector's idle-time marking runs on CPUs nothing else wanted:
	// it is no load, and counting it would lift the limit on an idle
	// daemon with many cores.
	m := memSample{live: v[0], cycles: v[6], gcCPU: s[7].Value.Float64() - s[10].Value.Float64(),
		busyCPU: s[8].Value.Float64() - s[9].Value.Float64()}
	if heap := v[2] + v[3] + v[4] + v[5]; v[1] > heap {
		m.other = v[1] - heap // stacks, runtime metadata, profiling buffers
	}
	return m, true
}
