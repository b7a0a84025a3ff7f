package service

import (
	"log/slog"
	"os"
	"runtime/debug"
	"runtime/metrics"
)

// Memory policy. The rule set is most of the daemon's live heap (about
// 300 bytes a rule) and it is long-lived: with the default GOGC=100 the
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
// went to marking). The limit follows the live heap: it is
// set again after start-up and at every hit flush (tuneMemoryLimit). An
// operator's GOMEMLIMIT in the environment wins, and is left alone.
const (
	memLimitFloor    = 32 << 20
	memLimitHeadroom = 16 << 20
)

// memoryLimitFor returns the soft memory limit for a live heap of live
// bytes and other memory of the runtime of other bytes.
func memoryLimitFor(live, other uint64) int64 {
	return int64(max(memLimitFloor, other+live+max(memLimitHeadroom, live/2)))
}

// tuneMemoryLimit sets the soft memory limit for the current live heap,
// unless GOMEMLIMIT is set.
func tuneMemoryLimit(log *slog.Logger) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	s := []metrics.Sample{
		{Name: "/gc/heap/live:bytes"},
		{Name: "/memory/classes/total:bytes"},
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/unused:bytes"},
		{Name: "/memory/classes/heap/free:bytes"},
		{Name: "/memory/classes/heap/released:bytes"},
	}
	metrics.Read(s)
	var v [6]uint64
	for i := range s {
		if s[i].Value.Kind() != metrics.KindUint64 {
			return
		}
		v[i] = s[i].Value.Uint64()
	}
	live, heap := v[0], v[2]+v[3]+v[4]+v[5]
	var other uint64
	if v[1] > heap {
		other = v[1] - heap // stacks, runtime metadata, profiling buffers
	}
	limit := memoryLimitFor(live, other)
	if old := debug.SetMemoryLimit(limit); old != limit {
		log.Debug("memory limit", "live_bytes", live, "other_bytes", other, "limit_bytes", limit)
	}
}
